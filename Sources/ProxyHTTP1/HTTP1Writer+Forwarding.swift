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
        to out: inout [UInt8]
    ) {
        if ctx.appendXForwardedFor {
            out.appendStatic("X-Forwarded-For: ")
            if mergeXFF { appendMergedValues(p, fields, "x-forwarded-for", to: &out) }
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
            if mergeForwarded { appendMergedValues(p, fields, "forwarded", to: &out) }
            appendForwardedElement(ctx, host: host, to: &out)
            out.appendCRLF()
        }
        if !ctx.via.isEmpty {
            out.appendStatic("Via: ")
            out.append(contentsOf: ctx.via)
            out.appendCRLF()
        }
        out.append(contentsOf: ctx.extraHeaderLines)
        out.appendCRLF()
    }

    /// Appends the non-empty values of every field named `name` (skipped ones too), each followed by ", ".
    private static func appendMergedValues(
        _ p: UnsafePointer<UInt8>,
        _ fields: [HeaderField],
        _ name: StaticString,
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
    /// authority characters by the parser (or HTTP/2 field validation), so no quote or backslash needs escaping.
    private static func appendForwardedElement(
        _ ctx: ForwardingContext,
        host: UnsafeBufferPointer<UInt8>,
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
        if !host.isEmpty {
            out.appendStatic(";host=")
            let token = host.allSatisfy { ASCII.isToken($0) }
            if !token { out.append(0x22) }
            out.append(contentsOf: host)
            if !token { out.append(0x22) }
        }
    }
}
