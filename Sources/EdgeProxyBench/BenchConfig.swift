import ProxyEventLoop

/// How connections treat session tickets.
enum BenchMode: String, CaseIterable, Sendable {
    /// Never present a ticket: every connection is a full handshake.
    case full
    /// Every connection presents the ticket its slot received last (the first one of a slot is full).
    case resumed
    /// A share (`resumeRatio`) of connections presents the slot's last ticket; the rest are full.
    case mix
}

/// Protocol versions offered.
enum TLSChoice: String, CaseIterable, Sendable {
    case v12 = "1.2"
    case v13 = "1.3"
    case any
}

/// What the ClientHello looks like, as far as OpenSSL lets a client shape it. `nil` keeps OpenSSL's default.
///
/// What OpenSSL 3.0 cannot change (so no shape here can be byte-identical to SChannel): extension ORDER (fixed by
/// OpenSSL's table), the TLS_EMPTY_RENEGOTIATION_INFO_SCSV cipher (always sent on an initial handshake, where
/// SChannel sends the renegotiation_info extension instead), ec_point_formats (always [0,1,2] where SChannel sends
/// [0]), and GREASE (never sent — which matches SChannel). See bench/README.md.
struct HelloShape: Sendable {
    var name: String
    /// TLS 1.2 cipher list, in wire order (OpenSSL cipher string).
    var ciphers: String?
    /// TLS 1.3 cipher suites, in wire order.
    var ciphersuites: String?
    /// supported_groups in wire order; key_share goes to the first one.
    var groups: String?
    /// signature_algorithms in wire order.
    var sigalgs: String?
    /// ALPN protocols; empty means no ALPN extension.
    var alpn: [String] = ["http/1.1"]
    /// Send status_request (OCSP), as SChannel does.
    var statusRequest = false
    /// Leave out encrypt_then_mac (SChannel never sends it).
    var noEncryptThenMac = false
    /// Leave out session_ticket (SChannel on Windows 7/8): a resumption then presents the session ID.
    var noTicket = false
    /// OpenSSL security level for this client (0 lets SHA-1 signature schemes into the hello, as SChannel lists).
    var securityLevel: Int32?
    /// Highest version this shape offers, capped by the run's choice (Windows 10 SChannel stops at TLS 1.2).
    var maxVersion: TLSChoice?

    static let openssl = HelloShape(name: "default")

    /// Windows 10 SChannel as far as OpenSSL goes: its cipher order (TLS 1.2 suites of Windows 10 1607+; TLS 1.3
    /// suites of Windows 11), x25519/P-256/P-384, its signature schemes in its order, status_request, no
    /// encrypt_then_mac, no ALPN (WinHTTP/.NET/PowerShell send none), no GREASE. TLS 1.3 is offered only when the
    /// run asks for TLS 1.3 alone (Windows 11 behaviour); with `any` it stays at 1.2 like Windows 10.
    static let schannel = HelloShape(
        name: "schannel-like",
        ciphers: [
            "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA256", "ECDHE-RSA-AES256-SHA384",
            "ECDHE-RSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA", "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES256-SHA",
            "ECDHE-RSA-AES128-SHA", "AES256-GCM-SHA384", "AES128-GCM-SHA256", "AES256-SHA256", "AES128-SHA256",
            "AES256-SHA", "AES128-SHA", "DES-CBC3-SHA",
        ].joined(separator: ":"),
        ciphersuites: "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256",
        groups: "X25519:P-256:P-384",
        sigalgs: [
            "rsa_pss_rsae_sha256", "rsa_pss_rsae_sha384", "rsa_pss_rsae_sha512", "RSA+SHA256", "RSA+SHA384",
            "RSA+SHA1", "ECDSA+SHA256", "ECDSA+SHA384", "ECDSA+SHA1", "RSA+SHA512", "ECDSA+SHA512",
        ].joined(separator: ":"),
        alpn: [],
        statusRequest: true,
        noEncryptThenMac: true,
        securityLevel: 0,
        maxVersion: .v12
    )
}

/// Everything a run needs, fixed before the workers start.
struct BenchConfig: Sendable {
    var address: SocketAddress
    var hostHeader: String
    var sni: String?
    var connections: Int
    var threads: Int
    /// Measurement window (seconds) after the warm-up.
    var duration: Double
    var warmup: Double
    /// After the window, connections in flight get this long to finish (they count in the totals, not the window).
    var drain: Double
    var mode: BenchMode
    /// Share of connections that present a ticket (resumed: 1, full: 0, mix: the ratio).
    var resumeRatio: Double
    var tls: TLSChoice
    /// HTTP/1.1 GETs per connection (keep-alive between them); 0 = handshake only.
    var requests: Int
    var path: String
    var shape: HelloShape
    /// Share of connections sent with the SChannel-like hello.
    var schannelShare: Double
    /// Hold mode: open `connections`, keep them idle this long, then exit (memory per idle connection).
    var hold: Double?
    /// Hold mode: handshakes in flight at once.
    var maxInflight: Int
    /// Per-connection deadline (connect + handshake + all requests), seconds.
    var timeout: Double
    /// Run OpenSSL's X.509 chain check like a default client (off: the handshake signature is still verified).
    var verifyChain: Bool
    /// Write each shape's first ClientHello (hex) to this directory.
    var dumpHelloDir: String?
    var quiet: Bool

    var shapes: [HelloShape] { schannelShare > 0 ? [shape, .schannel] : [shape] }
}
