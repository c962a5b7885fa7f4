extension HTTP1Writer {
    /// Appends the head of `head` as forwarded to the origin:
    /// - request line with the client's method and target, version HTTP/1.1;
    /// - the client's fields in order, minus hop-by-hop fields (Connection, Keep-Alive, Proxy-Connection, TE,
    ///   Trailer, Transfer-Encoding, Upgrade, and every field named in Connection), minus Content-Length, minus
    ///   `forwarding.stripped`; Host is kept (or `defaultHost` added for an HTTP/1.0 client without one);
    /// - framing for `framing` (usually `head.outboundFraming`: the same length, or re-chunked);
    /// - X-Forwarded-For (existing values merged into one line, then the client), X-Forwarded-Proto (replaced),
    ///   Forwarded (merged, then `for=...;proto=...;host=...`), Via, then `forwarding.extraHeaderLines`.
    ///
    /// Upgrade is dropped like the other hop-by-hop fields; a caller that supports WebSocket re-adds
    /// `Connection: upgrade` and `Upgrade` through `extraHeaderLines` of a per-request context.
    public static func appendRequestHead(
        _ head: RequestHead,
        framing: OutboundFraming,
        forwarding ctx: ForwardingContext,
        to out: inout [UInt8]
    ) {
        let fields = head.headers.fields
        head.headers.bytes.withUnsafeBufferPointer { buf in
            let p = buf.baseAddress!
            out.append(contentsOf: UnsafeBufferPointer(start: p, count: head.methodEnd))
            out.append(ASCII.sp)
            out.append(
                contentsOf: UnsafeBufferPointer(start: p + head.targetStart, count: head.targetEnd - head.targetStart)
            )
            out.appendStatic(" HTTP/1.1\r\n")

            let checkConnection = head.connectionNamesOthers
            let checkStripped = ctx.stripped.count > 0
            var xffCount = 0
            var forwardedCount = 0
            for f in fields {
                let np = p + Int(f.nameStart)
                let nl = Int(f.nameEnd - f.nameStart)
                if isHopByHopOrFraming(np, nl) { continue }
                if checkStripped && ctx.stripped.contains(np, nl) { continue }
                if checkConnection && isNamedByConnection(p, fields, np, nl) { continue }
                if let r = rewrittenField(np, nl, ctx) {
                    if r == .xForwardedFor { xffCount += 1 } else if r == .forwarded { forwardedCount += 1 }
                    continue
                }
                appendField(p, f, to: &out)
            }
            if head.hostIndex < 0 {
                out.appendStatic("Host: ")
                out.append(contentsOf: ctx.defaultHost)
                out.appendCRLF()
            }
            appendFraming(framing == .closeDelimited ? .bodiless : framing, to: &out)

            let host: UnsafeBufferPointer<UInt8> =
                head.hostIndex >= 0
                ? UnsafeBufferPointer(
                    start: p + Int(fields[head.hostIndex].valueStart),
                    count: Int(fields[head.hostIndex].valueEnd - fields[head.hostIndex].valueStart)
                )
                : UnsafeBufferPointer(start: nil, count: 0)
            appendForwardingTail(
                ctx,
                p,
                fields,
                mergeXFF: xffCount > 0,
                mergeForwarded: forwardedCount > 0,
                host: host,
                to: &out
            )
        }
    }
}
