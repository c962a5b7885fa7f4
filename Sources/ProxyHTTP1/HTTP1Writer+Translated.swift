extension HTTP1Writer {
    /// Appends an HTTP/1.1 request head toward the origin for a request that arrived as HTTP/2 (or any protocol
    /// whose request line comes as separate pseudo-fields):
    /// - request line `method SP target SP HTTP/1.1`;
    /// - `Host: authority` (when `authority` is empty: the client's `host` field, else `forwarding.defaultHost`);
    /// - the fields of `headers` in order, minus hop-by-hop and framing fields, minus `host` when `authority` was
    ///   used, minus `forwarding.stripped`; every `cookie` field merged into one line joined by "; " (RFC 9113
    ///   §8.2.3: HTTP/2 clients may split cookies, HTTP/1.1 origins expect one field);
    /// - framing for `framing`, then X-Forwarded-For, X-Forwarded-Proto, Forwarded and Via as in
    ///   `appendRequestHead(_:framing:forwarding:to:)`, then `forwarding.extraHeaderLines`.
    ///
    /// The caller has validated the bytes (HTTP/2 field rules: lowercase token names, no CR/LF/NUL in values).
    public static func appendTranslatedRequestHead(
        method: ArraySlice<UInt8>,
        target: ArraySlice<UInt8>,
        authority: ArraySlice<UInt8>,
        headers: HTTPHeaders,
        framing: OutboundFraming,
        forwarding ctx: ForwardingContext,
        to out: inout [UInt8]
    ) {
        out.append(contentsOf: method)
        out.append(ASCII.sp)
        out.append(contentsOf: target)
        out.appendStatic(" HTTP/1.1\r\n")
        let fields = headers.fields
        var hostValue: ArraySlice<UInt8> = authority
        headers.bytes.withUnsafeBufferPointer { buf in
            let p = buf.baseAddress ?? UnsafePointer(bitPattern: 1)!
            let checkStripped = ctx.stripped.count > 0
            var xffCount = 0
            var forwardedCount = 0
            var cookieCount = 0
            var hostSeen = false
            for f in fields {
                let np = p + Int(f.nameStart)
                let nl = Int(f.nameEnd - f.nameStart)
                if isHopByHopOrFraming(np, nl) { continue }
                if nl == 4 && ASCII.equalsIgnoringCase(np, nl, "host") {
                    if authority.isEmpty && !hostSeen {
                        hostSeen = true
                        hostValue = headers.bytes[Int(f.valueStart)..<Int(f.valueEnd)]
                    }
                    continue
                }
                if checkStripped && ctx.stripped.contains(np, nl) { continue }
                if nl == 6 && ASCII.equalsIgnoringCase(np, nl, "cookie") {
                    cookieCount += 1
                    continue
                }
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
            out.appendStatic("Host: ")
            out.append(contentsOf: hostValue.isEmpty ? ctx.defaultHost[...] : hostValue)
            out.appendCRLF()
            if cookieCount > 0 {
                out.appendStatic("Cookie: ")
                var first = true
                for f in fields where f.nameEnd - f.nameStart == 6 {
                    guard ASCII.equalsIgnoringCase(p + Int(f.nameStart), 6, "cookie") else { continue }
                    if !first {
                        out.append(ASCII.semicolon)
                        out.append(ASCII.sp)
                    }
                    first = false
                    out.append(
                        contentsOf: UnsafeBufferPointer(
                            start: p + Int(f.valueStart),
                            count: Int(f.valueEnd - f.valueStart)
                        )
                    )
                }
                out.appendCRLF()
            }
            appendFraming(framing == .closeDelimited ? .bodiless : framing, to: &out)
            if ctx.appendXForwardedFor {
                out.appendStatic("X-Forwarded-For: ")
                if xffCount > 0 { appendValues(p, fields, "x-forwarded-for", to: &out) }
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
                if forwardedCount > 0 { appendValues(p, fields, "forwarded", to: &out) }
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
                if !hostValue.isEmpty {
                    out.appendStatic(";host=")
                    // Quote unless every byte is a token byte; HTTP/2 validation already excluded '"' and '\'.
                    let token = hostValue.allSatisfy { ASCII.isToken($0) }
                    if !token { out.append(0x22) }
                    out.append(contentsOf: hostValue)
                    if !token { out.append(0x22) }
                }
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

    /// Appends the non-empty values of every field named `name`, each followed by ", ".
    private static func appendValues(
        _ p: UnsafePointer<UInt8>,
        _ fields: [HeaderField],
        _ name: StaticString,
        to out: inout [UInt8]
    ) {
        for f in fields {
            guard ASCII.equalsIgnoringCase(p + Int(f.nameStart), Int(f.nameEnd - f.nameStart), name),
                f.valueEnd > f.valueStart
            else { continue }
            out.append(
                contentsOf: UnsafeBufferPointer(start: p + Int(f.valueStart), count: Int(f.valueEnd - f.valueStart))
            )
            out.append(ASCII.comma)
            out.append(ASCII.sp)
        }
    }
}
