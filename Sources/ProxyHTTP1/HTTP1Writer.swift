/// Serializers for heads and bodies. Every function *appends* to a caller-owned `[UInt8]` that the caller clears
/// (`removeAll(keepingCapacity: true)`) and reuses, so once the buffer has grown to its working size nothing is
/// allocated per request. Field names and values are copied byte for byte from the parsed head. Heads are written
/// through a `ByteCursor` into room reserved for an upper bound of their size (`Array.appendWriting`).
public enum HTTP1Writer {
    /// Hop-by-hop fields (RFC 9110 §7.6.1) plus the legacy Proxy-Connection and Keep-Alive: never forwarded.
    /// Transfer-Encoding and Content-Length are also dropped here because framing is re-emitted from
    /// `OutboundFraming`.
    @inline(__always)
    static func isHopByHopOrFraming(_ p: UnsafePointer<UInt8>, _ n: Int) -> Bool {
        switch n {
        case 2: return ASCII.equalsIgnoringCase(p, n, "te")
        case 7: return ASCII.equalsIgnoringCase(p, n, "trailer") || ASCII.equalsIgnoringCase(p, n, "upgrade")
        case 10: return ASCII.equalsIgnoringCase(p, n, "connection") || ASCII.equalsIgnoringCase(p, n, "keep-alive")
        case 14: return ASCII.equalsIgnoringCase(p, n, "content-length")
        case 16: return ASCII.equalsIgnoringCase(p, n, "proxy-connection")
        case 17: return ASCII.equalsIgnoringCase(p, n, "transfer-encoding")
        default: return false
        }
    }

    /// Whether any Connection field lists a token other than close/keep-alive, i.e. names more hop-by-hop fields.
    static func connectionNamesFields(_ p: UnsafePointer<UInt8>, _ fields: [HeaderField]) -> Bool {
        var found = false
        for f in fields where f.nameEnd - f.nameStart == 10 {
            let ns = Int(f.nameStart)
            guard ASCII.equalsIgnoringCase(p + ns, 10, "connection") else { continue }
            _ = ASCII.forEachListElement(p, Int(f.valueStart), Int(f.valueEnd)) { s, e in
                if !ASCII.equalsIgnoringCase(p + s, e - s, "close")
                    && !ASCII.equalsIgnoringCase(p + s, e - s, "keep-alive")
                {
                    found = true
                }
                return !found
            }
            if found { return true }
        }
        return false
    }

    /// Whether the field name `p[0..<n]` is a token of some Connection field.
    static func isNamedByConnection(
        _ p: UnsafePointer<UInt8>,
        _ fields: [HeaderField],
        _ name: UnsafePointer<UInt8>,
        _ n: Int
    ) -> Bool {
        for f in fields where f.nameEnd - f.nameStart == 10 {
            guard ASCII.equalsIgnoringCase(p + Int(f.nameStart), 10, "connection") else { continue }
            let all = ASCII.forEachListElement(p, Int(f.valueStart), Int(f.valueEnd)) { s, e in
                !ASCII.equalsIgnoringCase(p + s, e - s, name, n)
            }
            if !all { return true }
        }
        return false
    }

    /// Writes `name: value\r\n`. When the received line is already in that shape (colon right after the name,
    /// no trailing whitespace, CRLF ending) it is copied in one piece; otherwise it is rebuilt normalized.
    @inline(__always)
    static func appendField(_ p: UnsafePointer<UInt8>, _ f: HeaderField, to out: inout ByteCursor) {
        let ve = Int(f.valueEnd)
        if p[Int(f.nameEnd)] == ASCII.colon && p[ve] == ASCII.cr {
            // The scanner guarantees the CR is followed by LF.
            out.put(p + Int(f.nameStart), ve + 2 - Int(f.nameStart))
            return
        }
        out.put(p + Int(f.nameStart), Int(f.nameEnd - f.nameStart))
        out.put(ASCII.colon, ASCII.sp)
        out.put(p + Int(f.valueStart), Int(f.valueEnd - f.valueStart))
        out.putCRLF()
    }

    /// Room for `headers`' field lines written by `appendField`: their bytes plus a separator and a CRLF each.
    @inline(__always)
    static func fieldsBound(_ headers: HTTPHeaders) -> Int { headers.bytes.count + 4 * headers.fields.count }

    static func appendFraming(_ framing: OutboundFraming, to out: inout ByteCursor) {
        switch framing {
        case .bodiless, .closeDelimited:
            break
        case .contentLength(let n):
            out.put("Content-Length: ")
            out.putDecimal(n)
            out.putCRLF()
        case .chunked:
            out.put("Transfer-Encoding: chunked\r\n")
        }
    }

    /// Room for what `appendFraming` writes.
    static let framingBound = 48
}
