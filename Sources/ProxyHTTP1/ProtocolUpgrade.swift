/// Protocol upgrades through the proxy (RFC 9110 §7.8 `Upgrade`, RFC 8441 extended CONNECT): which requests ask
/// for one, and what is forwarded. Pure decisions, shared by the HTTP/1 and HTTP/2 sessions.
///
/// `Upgrade` is hop-by-hop: the proxy never copies the client's field. When a request asks for an upgrade the
/// route allows, the proxy sends its own `Connection: upgrade` and `Upgrade: <the client's protocols>` to the
/// origin (what nginx does with `proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade"`,
/// but only for requests that asked: nginx's recipe would also mark plain requests). Otherwise Upgrade is
/// stripped like every other hop-by-hop field and the origin sees a plain request (nginx's default, without
/// those two directives).
public enum ProtocolUpgrade {
    /// The protocol list of the `Upgrade` field when `head` asks for an upgrade that may be forwarded, else nil:
    /// - HTTP/1.1 (RFC 9110 §7.8: an Upgrade received in an HTTP/1.0 request is ignored);
    /// - a `Connection` field lists `upgrade` (otherwise the field is not meant for this hop);
    /// - exactly one non-empty `Upgrade` field whose elements are tokens (`name` or `name/version`);
    /// - no request body (the bytes after the head belong to the new protocol once the origin switched);
    /// - no `h2c` element: cleartext HTTP/2 (RFC 7540 §3.2) is not for TLS connections, and forwarding it would
    ///   let a client speak HTTP/2 to the origin past the proxy's routing and checks ("h2c smuggling").
    public static func requested(_ head: RequestHead) -> ArraySlice<UInt8>? {
        guard head.version == .http1_1, !head.hasBody, head.method != .connect else { return nil }
        let h = head.headers
        guard let i = h.firstIndex(of: "upgrade"), h.nextIndex(of: "upgrade", from: i + 1) == nil else { return nil }
        guard connectionListsUpgrade(h) else { return nil }
        let value = h.value(at: i)
        return isForwardableProtocolList(value) ? value : nil
    }

    /// Whether some `Connection` field lists the `upgrade` token.
    static func connectionListsUpgrade(_ h: HTTPHeaders) -> Bool {
        var next = h.firstIndex(of: "connection")
        while let i = next {
            let f = h.fields[i]
            let found = h.bytes.withUnsafeBufferPointer { buf in
                let p = buf.baseAddress!
                return !ASCII.forEachListElement(p, Int(f.valueStart), Int(f.valueEnd)) { s, e in
                    !ASCII.equalsIgnoringCase(p + s, e - s, "upgrade")
                }
            }
            if found { return true }
            next = h.nextIndex(of: "connection", from: i + 1)
        }
        return false
    }

    /// A non-empty list of `protocol-name ["/" protocol-version]` tokens (RFC 9110 §7.8) without `h2c`.
    public static func isForwardableProtocolList(_ value: ArraySlice<UInt8>) -> Bool {
        value.withUnsafeBufferPointer { buf -> Bool in
            guard let p = buf.baseAddress, buf.count > 0 else { return false }
            var elements = 0
            let ok = ASCII.forEachListElement(p, 0, buf.count) { s, e in
                elements += 1
                return isProtocol(UnsafeBufferPointer(start: p + s, count: e - s))
            }
            return ok && elements > 0
        }
    }

    /// Whether an HTTP/2 `:protocol` value (RFC 8441 §4) can become an HTTP/1.1 `Upgrade` toward the origin.
    public static func isForwardableH2Protocol(_ value: ArraySlice<UInt8>) -> Bool {
        value.withUnsafeBufferPointer { buf in
            guard let p = buf.baseAddress, buf.count > 0 else { return false }
            return isProtocol(UnsafeBufferPointer(start: p, count: buf.count))
        }
    }

    /// Whether the protocol (from `Upgrade` or `:protocol`) is WebSocket, which over HTTP/1.1 needs a
    /// `Sec-WebSocket-Key` (RFC 6455 §4.1) that an RFC 8441 client does not send.
    public static func isWebSocket(_ value: ArraySlice<UInt8>) -> Bool {
        value.withUnsafeBufferPointer { buf in
            guard let p = buf.baseAddress else { return false }
            return ASCII.equalsIgnoringCase(p, buf.count, "websocket")
        }
    }

    private static func isProtocol(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        var slash = -1
        for (i, c) in b.enumerated() {
            if c == 0x2F {
                guard slash < 0, i > 0, i < b.count - 1 else { return false }
                slash = i
            } else if !ASCII.isToken(c) {
                return false
            }
        }
        let name = slash < 0 ? b.count : slash
        if name == 3, let p = b.baseAddress, ASCII.equalsIgnoringCase(p, 3, "h2c") { return false }
        return !b.isEmpty
    }

    /// The standard base64 alphabet (RFC 4648 §4).
    private static let base64: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// `Sec-WebSocket-Key: <base64 of 16 random bytes>\r\n` for an RFC 8441 WebSocket translated to HTTP/1.1
    /// (RFC 6455 §4.1: a nonce; the origin's Sec-WebSocket-Accept is not passed on, RFC 8441 §5).
    public static func webSocketKeyField<G: RandomNumberGenerator>(using rng: inout G) -> [UInt8] {
        var raw = [UInt8](repeating: 0, count: 18)  // 16 bytes, padded to a multiple of 3
        for i in 0..<16 { raw[i] = UInt8.random(in: 0...255, using: &rng) }
        var out = Array("Sec-WebSocket-Key: ".utf8)
        for g in stride(from: 0, to: 18, by: 3) {
            let v = UInt32(raw[g]) << 16 | UInt32(raw[g + 1]) << 8 | UInt32(raw[g + 2])
            out.append(base64[Int(v >> 18 & 63)])
            out.append(base64[Int(v >> 12 & 63)])
            out.append(base64[Int(v >> 6 & 63)])
            out.append(base64[Int(v & 63)])
        }
        // 16 bytes encode to 22 characters and "==".
        out[out.count - 2] = 0x3D
        out[out.count - 1] = 0x3D
        out.append(contentsOf: [13, 10])
        return out
    }
}
