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
                if nl == 15 && ASCII.equalsIgnoringCase(np, nl, "x-forwarded-for") && ctx.appendXForwardedFor {
                    xffCount += 1
                    continue
                }
                if nl == 17 && ASCII.equalsIgnoringCase(np, nl, "x-forwarded-proto") && ctx.setXForwardedProto {
                    continue
                }
                if nl == 9 && ASCII.equalsIgnoringCase(np, nl, "forwarded") && ctx.appendForwarded {
                    forwardedCount += 1
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

            if ctx.appendXForwardedFor {
                out.appendStatic("X-Forwarded-For: ")
                if xffCount > 0 { appendMergedValues(p, fields, "x-forwarded-for", ctx, to: &out) }
                if ctx.clientAddress.isEmpty {
                    out.appendStatic("unknown")
                } else {
                    out.append(contentsOf: ctx.clientAddress)
                }
                out.appendCRLF()
            }
            if ctx.setXForwardedProto {
                out.appendStatic("X-Forwarded-Proto: ")
                out.append(contentsOf: ctx.proto)
                out.appendCRLF()
            }
            if ctx.appendForwarded {
                out.appendStatic("Forwarded: ")
                if forwardedCount > 0 { appendMergedValues(p, fields, "forwarded", ctx, to: &out) }
                appendForwardedElement(ctx, host: head.hostIndex >= 0 ? fields[head.hostIndex] : nil, p, to: &out)
                out.appendCRLF()
            }
            if !ctx.via.isEmpty {
                out.appendStatic("Via: ")
                out.append(contentsOf: ctx.via)
                out.appendCRLF()
            }
        }
        out.append(contentsOf: ctx.extraHeaderLines)
        out.appendCRLF()
    }

    /// Appends the non-empty values of every field named `name` (skipped ones too), each followed by ", ".
    private static func appendMergedValues(
        _ p: UnsafePointer<UInt8>,
        _ fields: [HeaderField],
        _ name: StaticString,
        _ ctx: ForwardingContext,
        to out: inout [UInt8]
    ) {
        for f in fields {
            let np = p + Int(f.nameStart)
            let nl = Int(f.nameEnd - f.nameStart)
            guard ASCII.equalsIgnoringCase(np, nl, name), f.valueEnd > f.valueStart else { continue }
            out.append(
                contentsOf: UnsafeBufferPointer(start: p + Int(f.valueStart), count: Int(f.valueEnd - f.valueStart))
            )
            out.append(ASCII.comma)
            out.append(ASCII.sp)
        }
    }

    /// RFC 7239 forwarded-element: `for=192.0.2.1;proto=https;host=example.com`. IPv6 nodes are bracketed and
    /// quoted; a host holding a non-token byte (":" before a port) is quoted. Host bytes were restricted to
    /// authority characters by the parser, so no quote or backslash needs escaping.
    private static func appendForwardedElement(
        _ ctx: ForwardingContext,
        host: HeaderField?,
        _ p: UnsafePointer<UInt8>,
        to out: inout [UInt8]
    ) {
        out.appendStatic("for=")
        if ctx.clientAddress.isEmpty {
            out.appendStatic("unknown")
        } else if ctx.clientAddress.contains(ASCII.colon) {
            out.appendStatic("\"[")
            out.append(contentsOf: ctx.clientAddress)
            out.appendStatic("]\"")
        } else {
            out.append(contentsOf: ctx.clientAddress)
        }
        out.appendStatic(";proto=")
        out.append(contentsOf: ctx.proto)
        if let h = host, h.valueEnd > h.valueStart {
            out.appendStatic(";host=")
            let hp = p + Int(h.valueStart)
            let hn = Int(h.valueEnd - h.valueStart)
            var token = true
            for i in 0..<hn where !ASCII.isToken(hp[i]) { token = false }
            if !token { out.append(0x22) }
            out.append(contentsOf: UnsafeBufferPointer(start: hp, count: hn))
            if !token { out.append(0x22) }
        }
    }
}
