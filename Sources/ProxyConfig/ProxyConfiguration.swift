import Foundation
import ProxyCore

/// The complete, validated EdgeProxy configuration.
///
/// `ProxyConfiguration()` is the configuration used when `edgeproxy` runs with no file and no flags: listen on
/// 127.0.0.1:8443 with a freshly generated self-signed certificate, one worker per core, no upstream (the server
/// serves the built-in page until one is configured), TLS 1.2–1.3. Values obtained from ``load(path:)``, ``parse(text:fileName:baseDirectory:)``
/// or ``applying(_:)`` have passed every check; a value assembled by hand has not — run ``validate()`` on it.
/// The reference for every key is `edgeproxy.example.toml` at the repository root.
public struct ProxyConfiguration: Sendable, Equatable {
    /// Address the TLS listener binds (`listen`).
    public var listen = HostPort(host: .ipv4("127.0.0.1"), port: 8443)
    /// `listen_proxy_protocol`: every connection to `listen` starts with a PROXY protocol v1 or v2 header (from an
    /// L4 load balancer), which names the client; only peers in ``proxyProtocolFrom`` may connect.
    public var listenProxyProtocol = false
    /// `proxy_protocol_from`: the networks (CIDRs, or single addresses) allowed to send the PROXY header; required
    /// with ``listenProxyProtocol`` (`["0.0.0.0/0", "::/0"]` trusts everyone — only behind a load balancer).
    public var proxyProtocolFrom: [String] = []
    /// Worker threads (`workers`); `nil` means one per available core, see ``effectiveWorkers``.
    public var workers: Int? = nil
    /// Origins requests are forwarded to (`upstreams`), used in order of preference by the server.
    public var upstreams: [Upstream] = []
    /// Named pools (`[upstreams.NAME]`), in file order; see ``upstreamPools`` for every pool including the default.
    public var namedPools: [UpstreamPool] = []
    /// `[[routes]]`, in order; empty means every request goes to the default pool.
    public var routes: [Route] = []
    /// Certificate chains and keys (`[[certificates]]`); empty means generate a self-signed one at start.
    public var certificates: [CertificatePair] = []
    /// Address of the admin/metrics listener (`admin`); `nil` disables it.
    public var admin: HostPort? = nil
    /// `admin_allow_remote`: accepted for compatibility and no longer needed. A non-loopback `admin` is allowed
    /// exactly when a bearer token is configured (``adminTokenFile`` or ``adminTokenEnv``).
    public var adminAllowRemote = false
    /// File holding the admin API's bearer token (`admin_token_file`; `--admin-token-file`).
    public var adminTokenFile: String? = nil
    /// Environment variable holding the admin API's bearer token (`admin_token_env`; `EDGEPROXY_ADMIN_TOKEN`).
    public var adminTokenEnv: String? = nil
    /// Serve `GET /metrics` and `GET /healthz` without the token (`admin_token_exempt_read_only`), so scrapers
    /// and health checks need no secret. Mutating endpoints and `/keys` always need it.
    public var adminTokenExemptReadOnly = false

    /// True when the admin API requires a bearer token.
    public var adminTokenConfigured: Bool { adminTokenFile != nil || adminTokenEnv != nil }
    /// `[tls]`.
    public var tls = TLS()
    /// `[timeouts]`.
    public var timeouts = Timeouts()
    /// `[limits]`.
    public var limits = Limits()
    /// `[access_log] path`.
    public var accessLog = AccessLogDestination.stdout
    /// `[access_log] fields`.
    public var accessLogFields = AccessLogFields.default
    /// `[log] level`.
    public var logLevel = LogLevel.info
    /// `[tickets]`.
    public var tickets = Tickets()
    /// `[policies]`.
    public var policies = Policies()
    /// `[redis]` (used when `tickets.source = "redis"`); nil when the section is absent.
    public var redis: Redis? = nil
    /// `[http2]`.
    public var http2 = HTTP2()
    /// `[sessions]`.
    public var sessions = Sessions()
    /// `[detector]` (ProxyConfiguration+Detector.swift).
    public var detector = Detector()

    /// The defaults described on the type.
    public init() {}

    /// `workers`, or the number of cores available to this process when it is `nil`.
    public var effectiveWorkers: Int { workers ?? max(1, ProcessInfo.processInfo.activeProcessorCount) }
}

/// A certificate chain file and its private key file, both PEM.
public struct CertificatePair: Sendable, Hashable {
    /// Path of the PEM certificate chain, leaf first.
    public var cert: String
    /// Path of the PEM private key.
    public var key: String
    /// OCSP stapling for this certificate (`ocsp`, default "auto").
    public var ocsp: OCSPStapling

    public init(cert: String, key: String, ocsp: OCSPStapling = .auto) {
        self.cert = cert
        self.key = key
        self.ocsp = ocsp
    }
}

/// `[[certificates]] ocsp`: where the OCSP response stapled to this certificate comes from.
public enum OCSPStapling: Sendable, Hashable, CustomStringConvertible {
    /// Fetched from the responder named in the certificate's Authority Information Access extension (the default;
    /// a certificate without one is served without a staple).
    case auto
    /// Never stapled.
    case off
    /// A DER OCSP response read from this file at start and on every reload (`"file:PATH"`).
    case file(String)

    static func parse(_ s: String) throws(ValueError) -> OCSPStapling {
        switch s {
        case "auto": return .auto
        case "off": return .off
        default:
            guard s.hasPrefix("file:") else {
                throw ValueError("\"\(s)\" is not one of \"auto\", \"off\", \"file:PATH\"")
            }
            let path = String(s.dropFirst(5))
            guard !path.isEmpty else { throw ValueError("\"file:\" needs a path: \"file:/path/to/response.der\"") }
            return .file(path)
        }
    }

    public var description: String {
        switch self {
        case .auto: return "auto"
        case .off: return "off"
        case .file(let p): return "file:\(p)"
        }
    }
}

/// A TLS protocol version as written in `[tls]` (`"1.0"` … `"1.3"`), ordered oldest first.
public enum TLSVersion: String, Sendable, CaseIterable, Comparable {
    case v1_0 = "1.0"
    case v1_1 = "1.1"
    case v1_2 = "1.2"
    case v1_3 = "1.3"

    public static func < (lhs: TLSVersion, rhs: TLSVersion) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// Where access log lines go (`[access_log] path`).
public enum AccessLogDestination: Sendable, Hashable, CustomStringConvertible {
    /// Standard output (`"stdout"`, the default).
    case stdout
    /// No access log (`"off"`).
    case off
    /// Appended to this file (any other value).
    case file(String)

    public var description: String {
        switch self {
        case .stdout: "stdout"
        case .off: "off"
        case .file(let path): path
        }
    }
}

/// Minimum severity logged (`[log] level`); the names and order are swift-log's `Logger.Level`.
public enum LogLevel: String, Sendable, CaseIterable, Comparable {
    case trace, debug, info, notice, warning, error, critical

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// Where session ticket keys come from (`[tickets] source`).
public enum TicketKeySource: String, Sendable, CaseIterable {
    /// Generated in memory by each process and rotated on schedule; tickets do not survive a restart or span hosts.
    case memory
    /// Read from `tickets.files` (shared between hosts by the operator), newest key first.
    case files
    /// Epoch keys shared by a fleet through Redis (`[redis]`), sealed at rest under a wrapping key.
    case redis
}

extension ProxyConfiguration {
    /// `[tls]`: protocol versions, cipher lists, groups and ALPN. Cipher strings are handed to OpenSSL unchanged;
    /// ProxyTLS reports strings OpenSSL rejects when it builds the `SSL_CTX`.
    public struct TLS: Sendable, Equatable {
        /// The Mozilla profile the other keys default from (see ``TLSProfile``); the defaults below are
        /// "intermediate".
        public var profile = TLSProfile.intermediate
        public var minVersion = TLSVersion.v1_2
        public var maxVersion = TLSVersion.v1_3
        /// OpenSSL cipher list for TLS ≤ 1.2 (`SSL_CTX_set_cipher_list`).
        public var ciphers = TLS.defaultCiphers
        /// OpenSSL TLS 1.3 cipher suites (`SSL_CTX_set_ciphersuites`).
        public var ciphersuites = TLS.defaultCiphersuites
        /// Key exchange groups (`SSL_CTX_set1_groups_list`).
        public var groups = "X25519:P-256:P-384"
        /// ALPN protocol names the server accepts, in preference order (`h2` first: HTTP/2 when the client offers it).
        public var alpn = ["h2", "http/1.1"]
        /// `alpn_strict`: a client that offers ALPN but none of `alpn` gets a fatal `no_application_protocol`
        /// alert (RFC 7301 §3.2) when true; when false the handshake goes on without ALPN.
        public var alpnStrict = true

        /// AEAD ciphers with ECDHE or DHE (Mozilla 5.7 "intermediate" TLS 1.2 list, ``TLSProfile/intermediate``).
        public static let defaultCiphers = TLSProfile.intermediateCiphers
        /// All three TLS 1.3 suites OpenSSL enables by default.
        public static let defaultCiphersuites =
            "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

        public init() {}
    }

    /// `[timeouts]`.
    public struct Timeouts: Sendable, Equatable {
        /// From accept to a completed TLS handshake.
        public var handshake = ConfigDuration.seconds(10)
        /// From the first byte of a request to the end of its header block.
        public var headerRead = ConfigDuration.seconds(15)
        /// A keep-alive connection with no request in flight.
        public var idle = ConfigDuration.seconds(60)
        /// Establishing the TCP connection to an upstream.
        public var upstreamConnect = ConfigDuration.seconds(5)
        /// Between reads from an upstream while a response is awaited or streamed (time spent waiting for the
        /// client — a slow upload, a client not reading — does not count).
        public var upstreamRead = ConfigDuration.seconds(60)
        /// Request bytes waiting for an upstream to accept them (its receive window stays full this long).
        public var upstreamSend = ConfigDuration.seconds(60)
        /// A WebSocket/Upgrade tunnel in which no byte moved in either direction (nginx's 60 s
        /// `proxy_read_timeout` on upgraded connections; HAProxy's `timeout tunnel`): both sides are closed.
        public var tunnelIdle = ConfigDuration.seconds(60)
        /// On shutdown or reload, how long in-flight requests may finish before connections are closed; 0 = at once.
        public var drain = ConfigDuration.seconds(30)

        public init() {}
    }

    /// `[limits]`; requests exceeding them are rejected with 414/431 (HTTP) or refused (connections).
    public struct Limits: Sendable, Equatable {
        public var maxRequestLine = 8192
        public var maxHeaderBytes = 32768
        public var maxHeaders = 100
        public var maxConnectionsPerWorker = 10000

        public init() {}
    }

    /// `[http2]`: limits of HTTP/2 connections (ALPN `h2`) and the abuse thresholds that close them with
    /// GOAWAY ENHANCE_YOUR_CALM.
    public struct HTTP2: Sendable, Equatable {
        /// SETTINGS_MAX_CONCURRENT_STREAMS.
        public var maxConcurrentStreams = 100
        /// SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 size); larger request heads get 431.
        public var maxHeaderListSize = 32768
        /// SETTINGS_INITIAL_WINDOW_SIZE: request-body bytes buffered per stream at most.
        public var initialWindowSize = 65535
        /// Client RST_STREAM frames: burst, then this many per second (rapid reset, CVE-2023-44487).
        public var rapidResetBurst = 200
        public var rapidResetRate = 50
        /// PING, SETTINGS, PRIORITY and empty DATA frames: burst, then this many per second.
        public var controlFrameBurst = 1000
        public var controlFrameRate = 100
        /// CONTINUATION frames allowed after one HEADERS frame (CVE-2024-27316).
        public var maxContinuations = 8
        /// A stream with response bytes the client does not accept (zero window or unread socket) this long
        /// closes its connection.
        public var zeroWindowTimeout = ConfigDuration.seconds(30)

        public init() {}
    }

    /// `[tickets]`: TLS session ticket keys and their schedule.
    public struct Tickets: Sendable, Equatable {
        /// Whether session tickets are issued and accepted at all.
        public var enabled = true
        public var source = TicketKeySource.memory
        /// How often a new encryption key is introduced.
        public var rotation = ConfigDuration.hours(1)
        /// The longest a ticket is honoured after it was issued (how long a key keeps decrypting); at least
        /// `rotation`.
        public var lifetime = ConfigDuration.hours(18)
        /// What to do with a ticket sealed under a key that no longer encrypts.
        public var staleAction = StaleTicketAction.renewInline
        /// Tickets sent after a TLS 1.3 full handshake (`SSL_CTX_set_num_tickets`).
        public var tls13Count = 1
        /// Key files, newest first; required when and only when `source` is `.files`.
        public var files: [String] = []

        public init() {}
    }

    /// `[redis]`: the store for fleet-wide ticket keys.
    public struct Redis: Sendable, Equatable {
        /// The primary (writes; reads too when there is no replica).
        public var url: RedisURL? = nil
        /// A nearby replica for reads (optional).
        public var replica: RedisURL? = nil
        /// Refuse to start when Redis is unreachable at start (default: start with local keys).
        public var required = false
        public var connectTimeout = ConfigDuration.milliseconds(500)
        public var commandTimeout = ConfigDuration.milliseconds(500)
        /// How often Redis is polled for keys.
        public var pollInterval = ConfigDuration.seconds(1)
        /// Exactly one of the two: a file with 32 raw bytes or 64 hex digits, or an environment variable (hex).
        public var wrappingKeyFile: String? = nil
        public var wrappingKeyEnv: String? = nil
        /// Stored in clear with every entry; selects the wrapping key that opens it.
        public var wrappingKeyID = ""
        /// Older wrapping keys that still open entries (wrapping-key rotation).
        public var previousWrappingKeys: [WrappingKeyRef] = []
        /// Prefix of every Redis key EdgeProxy writes.
        public var keyPrefix = "edgeproxy:tickets:"
        /// Largest clock difference from true time per instance that must not break resumption.
        public var maxClockSkew = ConfigDuration.minutes(1)
        /// How long the current key keeps encrypting past its period when Redis cannot supply the next key.
        public var fallbackGrace = ConfigDuration.minutes(5)
        /// The file had a `url` that did not parse (already reported; suppresses "url is required").
        var urlWasInvalid = false

        public init() {}
    }

    /// A previous wrapping key: its id and where its bytes are (file or environment variable).
    public struct WrappingKeyRef: Sendable, Equatable {
        public var id: String
        public var file: String?
        public var env: String?

        public init(id: String, file: String? = nil, env: String? = nil) {
            self.id = id
            self.file = file
            self.env = env
        }
    }

    /// `[policies]`: fingerprint policy files and the headers that tell the origin about them.
    public struct Policies: Sendable, Equatable {
        /// Directory of policy files. Relative paths from a config file are made relative to that file's
        /// directory; relative paths from the defaults or `--policies` are relative to the working directory.
        public var dir = "policies"
        public var enabled = true
        public var headers = Headers()

        public init() {}

        /// `[policies.headers]`: request headers added towards the origin (opt-in). The server must remove any
        /// client-sent header of the same name first, so the origin can trust them.
        public struct Headers: Sendable, Equatable {
            public var enabled = false
            public var ja3 = "X-EdgeProxy-JA3"
            public var ja4 = "X-EdgeProxy-JA4"
            public var policy = "X-EdgeProxy-Policy"
            public var tag = "X-EdgeProxy-Tag"

            public init() {}
        }
    }
}
