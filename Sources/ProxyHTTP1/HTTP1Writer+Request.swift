extension HTTP1Writer {
    /// Appends the head of `head` as forwarded to the origin:
    /// - request line with the client's method and target (an absolute-form target becomes origin-form, its
    ///   authority the Host field, RFC 9112 §3.2.2), version HTTP/1.1;
    /// - the client's fields in order, minus hop-by-hop fields (Connection, Keep-Alive, Proxy-Connection, TE,
    ///   Trailer, Transfer-Encoding, Upgrade, and every field named in Connection except Host), minus
    ///   Content-Length, minus `forwarding.stripped`; Host is kept (or `defaultHost` added for an HTTP/1.0 client
    ///   without one);
    /// - framing for `framing` (usually `head.outboundFraming`: the same length, or re-chunked);
    /// - X-Forwarded-For (existing values merged into one line, then the client), X-Forwarded-Proto (replaced),
    ///   Forwarded (merged, then `for=...;proto=...;host=...`), Via, then `forwarding.extraHeaderLines`.
    ///
    /// Upgrade is dropped like the other hop-by-hop fields; with `upgrade` (the protocol list
    /// `ProtocolUpgrade.requested` allowed) the proxy's own `Connection: upgrade` and `Upgrade: <upgrade>` follow
    /// the framing.
    public static func appendRequestHead(
        _ head: RequestHead,
        framing: OutboundFraming,
        forwarding ctx: ForwardingContext,
        upgrade: ArraySlice<UInt8>? = nil,
        to out: inout [UInt8]
    ) {
        let fields = head.headers.fields
        head.headers.bytes.withUnsafeBufferPointer { buf in
            let p = buf.baseAddress!
            out.append(contentsOf: UnsafeBufferPointer(start: p, count: head.methodEnd))
            out.append(ASCII.sp)
            let absolute = head.isAbsoluteForm
            if absolute {
                // RFC 9112 §3.2.2: origin-form toward the origin, Host from the URI's authority.
                if head.originFormStart == head.targetEnd || p[head.originFormStart] != 0x2F { out.append(0x2F) }
                out.append(
                    contentsOf: UnsafeBufferPointer(
                        start: p + head.originFormStart,
                        count: head.targetEnd - head.originFormStart
                    )
                )
            } else {
                out.append(
                    contentsOf: UnsafeBufferPointer(
                        start: p + head.targetStart,
                        count: head.targetEnd - head.targetStart
                    )
                )
            }
            out.appendStatic(" HTTP/1.1\r\n")
            if absolute {
                out.appendStatic("Host: ")
                out.append(
                    contentsOf: UnsafeBufferPointer(
                        start: p + head.authorityStart,
                        count: head.authorityEnd - head.authorityStart
                    )
                )
                out.appendCRLF()
            }

            let checkConnection = head.connectionNamesOthers
            let checkStripped = ctx.stripped.count > 0
            var xffCount = 0
            var forwardedCount = 0
            for f in fields {
                let np = p + Int(f.nameStart)
                let nl = Int(f.nameEnd - f.nameStart)
                if isHopByHopOrFraming(np, nl) { continue }
                if absolute && nl == 4 && ASCII.equalsIgnoringCase(np, 4, "host") { continue }
                if checkStripped && ctx.stripped.contains(np, nl) { continue }
                // Host is never hop-by-hop, whatever Connection claims (`Connection: Host` stripped it once,
                // leaving the origin an HTTP/1.1 request without Host): that token is ignored.
                if checkConnection && !(nl == 4 && ASCII.equalsIgnoringCase(np, 4, "host"))
                    && isNamedByConnection(p, fields, np, nl)
                {
                    continue
                }
                if let r = rewrittenField(np, nl, ctx) {
                    if r == .xForwardedFor { xffCount += 1 } else if r == .forwarded { forwardedCount += 1 }
                    continue
                }
                appendField(p, f, to: &out)
            }
            if head.hostIndex < 0 && !absolute {
                out.appendStatic("Host: ")
                out.append(contentsOf: ctx.defaultHost)
                out.appendCRLF()
            }
            appendFraming(framing == .closeDelimited ? .bodiless : framing, to: &out)
            if let upgrade { appendUpgrade(upgrade, to: &out) }

            let host: UnsafeBufferPointer<UInt8> =
                absolute
                ? UnsafeBufferPointer(start: p + head.authorityStart, count: head.authorityEnd - head.authorityStart)
                : head.hostIndex >= 0
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

    /// `Connection: upgrade` and `Upgrade: <protocols>` toward the origin (request) or the client (101).
    static func appendUpgrade(_ protocols: ArraySlice<UInt8>, to out: inout [UInt8]) {
        out.appendStatic("Connection: upgrade\r\nUpgrade: ")
        out.append(contentsOf: protocols)
        out.appendCRLF()
    }
}
