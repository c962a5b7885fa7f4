extension HTTP1Writer {
    /// Appends the chunk-size line announcing `count` (> 0) data bytes: `<hex>\r\n`. Send the data next, then
    /// `appendChunkEnd`. A zero count would end the body: use `appendLastChunk` for that.
    public static func appendChunkHeader(_ count: Int, to out: inout [UInt8]) {
        precondition(count > 0, "a zero-size chunk ends the body; use appendLastChunk")
        out.appendHex(count)
        out.appendCRLF()
    }

    /// Appends the CRLF that follows a chunk's data.
    public static func appendChunkEnd(to out: inout [UInt8]) {
        out.appendCRLF()
    }

    /// Appends a whole chunk: header, `data`, CRLF. Nothing for empty data.
    public static func appendChunk(_ data: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        if data.isEmpty { return }
        appendChunkHeader(data.count, to: &out)
        out.append(contentsOf: data)
        out.appendCRLF()
    }

    /// Appends the last chunk (`0\r\n`), the trailer fields if any, and the final CRLF. Trailer fields that must not
    /// appear in a trailer section or are hop-by-hop (framing, Host, Connection and friends) are dropped.
    public static func appendLastChunk(trailers: HTTPHeaders? = nil, to out: inout [UInt8]) {
        out.appendStatic("0\r\n")
        if let trailers, trailers.count > 0 {
            out.appendWriting(bound: fieldsBound(trailers)) { out in
                trailers.bytes.withUnsafeBufferPointer { buf in
                    let p = buf.baseAddress!
                    for f in trailers.fields {
                        let np = p + Int(f.nameStart)
                        let nl = Int(f.nameEnd - f.nameStart)
                        if isHopByHopOrFraming(np, nl) || ASCII.equalsIgnoringCase(np, nl, "host") { continue }
                        appendField(p, f, to: &out)
                    }
                }
            }
        }
        out.appendCRLF()
    }
}
