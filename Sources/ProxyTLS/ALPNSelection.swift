/// The server's answer to a client's ALPN offer (RFC 7301 §3.2), decided from the offered list and the configured
/// protocols by a pure function; the OpenSSL ALPN callback only maps it to `SSL_TLSEXT_ERR_*`.
public enum ALPNSelection: Equatable, Sendable {
    /// Select the protocol name at `offset` (after its length byte) with `length` bytes, inside the client's list.
    case select(offset: Int, length: Int)
    /// Go on without ALPN (no extension in the ServerHello): ALPN is off here, or the lenient mode is configured.
    case noOverlap
    /// Fatal `no_application_protocol` alert: the client offered ALPN and none of its protocols is served.
    case reject

    /// Chooses the first of `preferences` (server order) that the client offers.
    ///
    /// - Parameters:
    ///   - offered: the client's ProtocolNameList contents (length-prefixed names, without the list's own 2-byte
    ///     length), as OpenSSL hands it to the callback after validating it.
    ///   - preferences: the configured protocol names' bytes in server preference order (converted once, when the
    ///     contexts are built); empty means ALPN is off (the offer is ignored, never rejected).
    ///   - strict: true → `reject` when nothing matches (RFC 7301 §3.2: the server "SHALL" send the alert, as nginx
    ///     ≥ 1.21.4 does); false → `noOverlap` (the client continues without ALPN and speaks HTTP/1.1).
    public static func choose(
        offered: UnsafeRawBufferPointer,
        preferences: [[UInt8]],
        strict: Bool
    ) -> ALPNSelection {
        if preferences.isEmpty { return .noOverlap }
        let n = offered.count
        for proto in preferences {
            var i = 0
            while i < n {
                let l = Int(offered[i])
                // A list OpenSSL let through is well formed; stop at anything else rather than read past it.
                if l == 0 || i + 1 + l > n { break }
                if l == proto.count
                    && proto.elementsEqual(UnsafeRawBufferPointer(rebasing: offered[(i + 1)..<(i + 1 + l)]))
                {
                    return .select(offset: i + 1, length: l)
                }
                i += 1 + l
            }
        }
        return strict ? .reject : .noOverlap
    }
}
