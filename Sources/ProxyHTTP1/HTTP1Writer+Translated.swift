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
    /// With `upgrade` (an RFC 8441 extended CONNECT's `:protocol`), `Connection: upgrade`, `Upgrade: <upgrade>` and
    /// `upgradeFields` (complete field lines, e.g. a generated `Sec-WebSocket-Key`) follow the framing; the caller
    /// passes `GET` as `method`.
    ///
    /// The caller has validated the bytes (HTTP/2 field rules: lowercase token names, no CR/LF/NUL in values).
    public static func appendTranslatedRequestHead(
        method: ArraySlice<UInt8>,
        target: ArraySlice<UInt8>,
        authority: ArraySlice<UInt8>,
        headers: HTTPHeaders,
        framing: OutboundFraming,
        forwarding ctx: borrowing ForwardingContext,
        upgrade: ArraySlice<UInt8>? = nil,
        upgradeFields: [UInt8] = [],
        to out: inout [UInt8]
    ) {
        let fb = fieldsBound(headers)
        let hostBound = Swift.max(authority.count, fb, ctx.defaultHost.count)
        let bound =
            method.count + target.count + 16 + hostBound + 8 + fb + framingBound + (upgrade?.count ?? 0) + 32
            + upgradeFields.count + forwardingTailBound(ctx, fieldsBound: fb, hostCount: hostBound)
        out.appendWriting(bound: bound) { out in
            writeTranslatedRequestHead(
                method: method,
                target: target,
                authority: authority,
                headers: headers,
                framing: framing,
                forwarding: ctx,
                upgrade: upgrade,
                upgradeFields: upgradeFields,
                to: &out
            )
        }
    }

    private static func writeTranslatedRequestHead(
        method: ArraySlice<UInt8>,
        target: ArraySlice<UInt8>,
        authority: ArraySlice<UInt8>,
        headers: HTTPHeaders,
        framing: OutboundFraming,
        forwarding ctx: borrowing ForwardingContext,
        upgrade: ArraySlice<UInt8>?,
        upgradeFields: [UInt8],
        to out: inout ByteCursor
    ) {
        out.put(method)
        out.put(ASCII.sp)
        out.put(target)
        out.put(" HTTP/1.1\r\n")
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
                if let r = rewrittenField(np, nl, ctx) {
                    if r == .xForwardedFor { xffCount += 1 } else if r == .forwarded { forwardedCount += 1 }
                    continue
                }
                appendField(p, f, to: &out)
            }
            out.put("Host: ")
            out.put(hostValue.isEmpty ? ctx.defaultHost[...] : hostValue)
            out.putCRLF()
            if cookieCount > 0 {
                out.put("Cookie: ")
                var first = true
                for f in fields where f.nameEnd - f.nameStart == 6 {
                    guard ASCII.equalsIgnoringCase(p + Int(f.nameStart), 6, "cookie") else { continue }
                    if !first { out.put(ASCII.semicolon, ASCII.sp) }
                    first = false
                    out.put(p + Int(f.valueStart), Int(f.valueEnd - f.valueStart))
                }
                out.putCRLF()
            }
            appendFraming(framing == .closeDelimited ? .bodiless : framing, to: &out)
            if let upgrade {
                appendUpgrade(upgrade, to: &out)
                out.put(upgradeFields)
            }
            hostValue.withUnsafeBufferPointer { host in
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

}
