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
        let fb = fieldsBound(head.headers)
        let authority = head.isAbsoluteForm ? head.authorityEnd - head.authorityStart : 0
        let bound =
            fb + 16 + 2 * authority + ctx.defaultHost.count + framingBound + (upgrade?.count ?? 0) + 64
            + forwardingTailBound(ctx, fieldsBound: fb, hostCount: fb)
        out.appendWriting(bound: bound) { out in
            writeRequestHead(head, framing: framing, forwarding: ctx, upgrade: upgrade, to: &out)
        }
    }

    private static func writeRequestHead(
        _ head: RequestHead,
        framing: OutboundFraming,
        forwarding ctx: ForwardingContext,
        upgrade: ArraySlice<UInt8>?,
        to out: inout ByteCursor
    ) {
        let fields = head.headers.fields
        head.headers.bytes.withUnsafeBufferPointer { buf in
            let p = buf.baseAddress!
            out.put(p, head.methodEnd)
            out.put(ASCII.sp)
            let absolute = head.isAbsoluteForm
            if absolute {
                // RFC 9112 §3.2.2: origin-form toward the origin, Host from the URI's authority.
                if head.originFormStart == head.targetEnd || p[head.originFormStart] != 0x2F { out.put(0x2F) }
                out.put(p + head.originFormStart, head.targetEnd - head.originFormStart)
            } else {
                out.put(p + head.targetStart, head.targetEnd - head.targetStart)
            }
            out.put(" HTTP/1.1\r\n")
            if absolute {
                out.put("Host: ")
                out.put(p + head.authorityStart, head.authorityEnd - head.authorityStart)
                out.putCRLF()
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
                out.put("Host: ")
                out.put(ctx.defaultHost)
                out.putCRLF()
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
    static func appendUpgrade(_ protocols: ArraySlice<UInt8>, to out: inout ByteCursor) {
        out.put("Connection: upgrade\r\nUpgrade: ")
        out.put(protocols)
        out.putCRLF()
    }
}
