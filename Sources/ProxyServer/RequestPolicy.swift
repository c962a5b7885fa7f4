import ProxyHTTP1

/// Requests the proxy answers itself instead of forwarding, the same for HTTP/1 and HTTP/2 clients.
enum RequestPolicy {
    /// The status to answer with, or nil to forward:
    /// - CONNECT: 501 (a reverse proxy opens no tunnels to arbitrary hosts; RFC 8441 extended CONNECT is handled by
    ///   the HTTP/2 session before this, as the Upgrade it becomes);
    /// - TRACE: 405 (it would reflect the client's headers, cookies included, back to scripts: XST);
    /// - an `:authority` with userinfo (`user@host`, deprecated by RFC 9110 §4.2.4): 400, as nginx does, rather
    ///   than copying it into Host. (HTTP/1 absolute-form targets with userinfo are refused by the parser.)
    static func reject(method: HTTPMethod, authority: ArraySlice<UInt8>?) -> Int? {
        if method == .connect { return 501 }
        if method == .trace { return 405 }
        if let a = authority, a.contains(0x40) { return 400 }
        return nil
    }
}
