extension HTTP1Writer {
    /// Inbound fields the proxy writes itself: merged into its own line (X-Forwarded-For, Forwarded) or replaced
    /// (X-Forwarded-Proto), each only when `ctx` enables it.
    enum RewrittenField {
        case xForwardedFor
        case xForwardedProto
        case forwarded
    }

    /// Which rewritten field `np[0..<nl]` names, if the context rewrites it; nil for a field forwarded as is.
    @inline(__always)
    static func rewrittenField(_ np: UnsafePointer<UInt8>, _ nl: Int, _ ctx: ForwardingContext) -> RewrittenField? {
        if nl == 15 && ctx.appendXForwardedFor && ASCII.equalsIgnoringCase(np, nl, "x-forwarded-for") {
            return .xForwardedFor
        }
        if nl == 17 && ctx.setXForwardedProto && ASCII.equalsIgnoringCase(np, nl, "x-forwarded-proto") {
            return .xForwardedProto
        }
        if nl == 9 && ctx.appendForwarded && ASCII.equalsIgnoringCase(np, nl, "forwarded") { return .forwarded }
        return nil
    }

    /// Room for what `appendForwardingTail` writes with `ctx` for a head whose fields take `fieldsBound` (the
    /// merged X-Forwarded-For and Forwarded values come from those fields) and whose host is `hostCount` bytes.
    static func forwardingTailBound(_ ctx: ForwardingContext, fieldsBound: Int, hostCount: Int) -> Int {
        2 * fieldsBound + 3 * ctx.clientAddress.count + 2 * ctx.proto.count + ctx.via.count
            + ctx.extraHeaderLines.count + hostCount + 160
    }

    /// The proxy's own fields at the end of a request head toward the origin, shared by the HTTP/1.1 and the
    /// translated (HTTP/2) request writers: X-Forwarded-For (the client's values merged into one line when
    /// `mergeXFF`, then the client address), X-Forwarded-Proto, Forwarded (merged when `mergeForwarded`, then this
    /// hop's element), Via, `ctx.extraHeaderLines`, and the blank line that ends the head.
    /// `fields`/`p` are the inbound fields and their bytes; `host` is the Host value for `Forwarded: host=`.
    static func appendForwardingTail(
        _ ctx: ForwardingContext,
        _ p: UnsafePointer<UInt8>,
        _ fields: [HeaderField],
        mergeXFF: Bool,
        mergeForwarded: Bool,
        host: UnsafeBufferPointer<UInt8>,
        to out: inout ByteCursor
    ) {
        if ctx.appendXForwardedFor {
            out.put("X-Forwarded-For: ")
            if mergeXFF { appendMergedValues(p, fields, "x-forwarded-for", to: &out) }
            if ctx.clientAddress.isEmpty {
                out.put("unknown")
            } else {
                out.put(ctx.clientAddress)
            }
            out.putCRLF()
        }
        if ctx.setXForwardedProto {
            out.put("X-Forwarded-Proto: ")
            out.put(ctx.proto)
            out.putCRLF()
        }
        if ctx.appendForwarded {
            out.put("Forwarded: ")
            if mergeForwarded { appendMergedValues(p, fields, "forwarded", to: &out) }
            appendForwardedElement(ctx, host: host, to: &out)
            out.putCRLF()
        }
        if !ctx.via.isEmpty {
            out.put("Via: ")
            out.put(ctx.via)
            out.putCRLF()
        }
        out.put(ctx.extraHeaderLines)
        out.putCRLF()
    }

    /// Appends the non-empty values of every field named `name` (skipped ones too), each followed by ", ".
    private static func appendMergedValues(
        _ p: UnsafePointer<UInt8>,
        _ fields: [HeaderField],
        _ name: StaticString,
        to out: inout ByteCursor
    ) {
        for f in fields {
            let np = p + Int(f.nameStart)
            let nl = Int(f.nameEnd - f.nameStart)
            guard ASCII.equalsIgnoringCase(np, nl, name), f.valueEnd > f.valueStart else { continue }
            out.put(p + Int(f.valueStart), Int(f.valueEnd - f.valueStart))
            out.put(ASCII.comma, ASCII.sp)
        }
    }

    /// RFC 7239 forwarded-element: `for=192.0.2.1;proto=https;host=example.com`. IPv6 nodes are bracketed and
    /// quoted; a host holding a non-token byte (":" before a port) is quoted. Host bytes were restricted to
    /// authority characters by the parser (or HTTP/2 field validation), so no quote or backslash needs escaping.
    private static func appendForwardedElement(
        _ ctx: ForwardingContext,
        host: UnsafeBufferPointer<UInt8>,
        to out: inout ByteCursor
    ) {
        out.put("for=")
        if ctx.clientAddress.isEmpty {
            out.put("unknown")
        } else if ctx.clientAddress.contains(ASCII.colon) {
            out.put("\"[")
            out.put(ctx.clientAddress)
            out.put("]\"")
        } else {
            out.put(ctx.clientAddress)
        }
        out.put(";proto=")
        out.put(ctx.proto)
        if !host.isEmpty {
            out.put(";host=")
            let token = host.allSatisfy { ASCII.isToken($0) }
            if !token { out.put(0x22) }
            out.put(host)
            if !token { out.put(0x22) }
        }
    }
}
