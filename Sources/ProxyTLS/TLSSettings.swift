import ProxyCore

/// Everything ProxyTLS needs to build its contexts; the server fills it from the configuration.
public struct TLSSettings: Sendable {
    /// A certificate chain file (leaf first) and its private key file, both PEM.
    public struct CertificateFiles: Sendable, Equatable {
        public var chainPath: String
        public var keyPath: String
        /// Where its OCSP staple comes from.
        public var ocsp: OCSPSource
        public init(chainPath: String, keyPath: String, ocsp: OCSPSource = .auto) {
            self.chainPath = chainPath
            self.keyPath = keyPath
            self.ocsp = ocsp
        }
    }

    /// Certificates; empty means "generate a self-signed ECDSA P-256 certificate in memory".
    public var certificates: [CertificateFiles] = []
    /// Protocol versions as OpenSSL constants (TLS1_VERSION ... TLS1_3_VERSION).
    public var minVersion: Int32 = 0x0303
    public var maxVersion: Int32 = 0x0304
    /// OpenSSL cipher string for TLS ≤ 1.2, and the TLS 1.3 suites.
    public var ciphers: String =
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
        + "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
    public var ciphersuites: String = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
    public var groups: String = "X25519:P-256:P-384"
    /// ALPN protocols in server preference order.
    public var alpn: [String] = ["http/1.1"]
    /// A client offering ALPN with no protocol in `alpn` gets a fatal `no_application_protocol` alert (true) or a
    /// handshake without ALPN (false). Ignored when `alpn` is empty.
    public var alpnStrict: Bool = true
    /// Session tickets on/off for the whole listener (policies can switch them off per connection).
    public var ticketsEnabled: Bool = true
    /// Ticket lifetime hint and session timeout, seconds.
    public var ticketLifetimeSeconds: Int = 18 * 3600
    /// Tickets to issue after a full TLS 1.3 handshake and on resumption.
    public var tls13TicketCount: Int = 1
    /// Stale-ticket action when no policy decides otherwise.
    public var defaultStaleAction: StaleTicketAction = .renewInline

    /// The process-wide session cache for session-ID resumption (`[sessions] cache`); nil: no session IDs cached.
    /// One object for the process, handed to every context set a reload builds, so entries survive reloads.
    public var sessionCache: SessionCache? = nil

    /// The process-wide OCSP stapler (one object across reloads, like `sessionCache`); nil: no stapling at all.
    public var stapler: OCSPStapler? = nil

    public init() {}
}
