extension HTTP1Writer {
    /// Appends the head of an origin response as forwarded to the client:
    /// - status line `HTTP/1.1 <status> <reason>` (the origin's reason, or the standard one when it sent none);
    /// - the origin's fields in order, minus hop-by-hop fields (including those named in Connection), minus
    ///   Content-Length/Transfer-Encoding, minus `stripped`;
    /// - framing for `framing` (usually `head.clientFraming(clientVersion:)`): for `.bodiless` the origin's
    ///   Content-Length is kept on responses that may carry one (HEAD responses, 304), never on 1xx/204;
    /// - `Via: <via>`;
    /// - `Connection: close` when `closeConnection` or `framing == .closeDelimited`; otherwise
    ///   `Connection: keep-alive` for an HTTP/1.0 client (whose default is close).
    ///
    /// For a forwarded 1xx interim head pass `.bodiless` and `closeConnection: false`. A 101 Switching Protocols
    /// head ends with `Connection: upgrade` and the origin's `Upgrade` instead (the connection becomes a tunnel).
    public static func appendResponseHead(
        _ head: ResponseHead,
        framing: OutboundFraming,
        closeConnection: Bool,
        clientVersion: HTTPVersion,
        via: StaticString = "1.1 edgeproxy",
        stripped: HeaderNameList = HeaderNameList(),
        to out: inout [UInt8]
    ) {
        let bound = 2 * fieldsBound(head.headers) + framingBound + via.utf8CodeUnitCount + 128
        out.appendWriting(bound: bound) { out in
            writeResponseHead(
                head,
                framing: framing,
                closeConnection: closeConnection,
                clientVersion: clientVersion,
                via: via,
                stripped: stripped,
                to: &out
            )
        }
    }

    private static func writeResponseHead(
        _ head: ResponseHead,
        framing: OutboundFraming,
        closeConnection: Bool,
        clientVersion: HTTPVersion,
        via: StaticString,
        stripped: HeaderNameList,
        to out: inout ByteCursor
    ) {
        let fields = head.headers.fields
        head.headers.bytes.withUnsafeBufferPointer { buf in
            let p = buf.baseAddress!
            out.put("HTTP/1.1 ")
            out.putDecimal(head.status)
            out.put(ASCII.sp)
            if head.reasonEnd > head.reasonStart {
                out.put(p + head.reasonStart, head.reasonEnd - head.reasonStart)
            } else {
                out.put(reasonPhrase(head.status))
            }
            out.putCRLF()
            let checkConnection = connectionNamesFields(p, fields)
            let checkStripped = stripped.count > 0
            for f in fields {
                let np = p + Int(f.nameStart)
                let nl = Int(f.nameEnd - f.nameStart)
                if isHopByHopOrFraming(np, nl) { continue }
                if checkStripped && stripped.contains(np, nl) { continue }
                if checkConnection && isNamedByConnection(p, fields, np, nl) { continue }
                appendField(p, f, to: &out)
            }
        }
        if framing == .bodiless {
            let mayCarryLength = head.status >= 200 && head.status != 204
            if mayCarryLength, let n = head.contentLength { appendFraming(.contentLength(n), to: &out) }
        } else {
            appendFraming(framing, to: &out)
        }
        if via.utf8CodeUnitCount > 0 {
            out.put("Via: ")
            out.put(via)
            out.putCRLF()
        }
        if head.status == 101, let i = head.headers.firstIndex(of: "upgrade") {
            appendUpgrade(head.headers.value(at: i), to: &out)
        } else if closeConnection || framing == .closeDelimited {
            out.put("Connection: close\r\n")
        } else if clientVersion == .http1_0 {
            out.put("Connection: keep-alive\r\n")
        }
        out.putCRLF()
    }
}
