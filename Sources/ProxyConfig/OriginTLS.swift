/// `[upstreams.NAME.tls]`: how the pool's `https://` servers are connected to (the client side of TLS toward
/// origins). One client context is built from it per pool, at load and at reload.
public struct OriginTLS: Sendable, Equatable {
    /// `verify`: check the origin's certificate chain and host name. `false` exists for tests only and is logged at
    /// warning level at every load.
    public var verify = true
    /// `ca_file`: PEM file of the certificate authorities trusted for origins, instead of the system store.
    public var caFile: String? = nil
    /// `sni`: the server name sent in SNI and checked against the certificate, instead of each server's host name
    /// (which is sent only when it is a DNS name: IP literals send no SNI and are checked as addresses).
    public var sni: String? = nil
    /// `client_cert` / `client_key`: PEM certificate (chain) and key presented when an origin asks (mutual TLS).
    public var clientCert: String? = nil
    public var clientKey: String? = nil
    /// `min_version`: the lowest protocol version offered, `"TLSv1.2"` (default) or `"TLSv1.3"`.
    public var minVersion = Version.tls12

    public init() {}

    /// A protocol version toward origins.
    public enum Version: String, Sendable, CaseIterable {
        case tls12 = "TLSv1.2"
        case tls13 = "TLSv1.3"
    }
}
