import ProxyCore

/// A named pool of origin servers (`[upstreams.NAME]`), how requests are spread over it and how its servers'
/// health is judged.
///
/// The legacy `upstreams = ["http://…", …]` array and the `--upstream` flag define the pool named
/// ``UpstreamPool/defaultName`` with the defaults below; see ``ProxyConfiguration/upstreamPools``.
public struct UpstreamPool: Sendable, Equatable {
    /// The pool that serves requests no route matches (and every request when there are no routes).
    public static let defaultName = "default"

    /// The pool's name: letters, digits, `_` and `-`.
    public var name: String
    /// Servers in the order written; never empty in a validated configuration.
    public var servers: [Server]
    /// `balance`.
    public var balance = BalanceMethod.roundRobin
    /// `hash_key`: what `balance = "hash"` hashes.
    public var hashKey = HashKey.client
    /// `resolve_interval`: how often DNS names of the servers are resolved again.
    public var resolveInterval = ConfigDuration.seconds(5)
    /// `[upstreams.NAME.health_check]`; `nil` (no table) means no active checks.
    public var healthCheck: HealthCheck? = nil
    /// `max_fails`: consecutive failed attempts (connect failure, or the connection failing before a response
    /// head arrived) after which a server address is ejected for `fail_timeout`; 0 disables passive ejection.
    public var maxFails = 3
    /// `fail_timeout`: how long an ejected address is left out before it gets requests again.
    public var failTimeout = ConfigDuration.seconds(10)
    /// `proxy_protocol`: the PROXY protocol header written first on every connection to this pool's servers (for
    /// origins behind us that want the client's address: nginx `listen ... proxy_protocol`, HAProxy
    /// `accept-proxy`); nil sends none. Such connections carry one client's identity, so they are reused only for
    /// requests of that same client connection (HAProxy does the same), never pooled across clients.
    public var proxyProtocol: ProxyProtocol.Version? = nil
    /// `proxy_protocol_tlvs`: what a v2 header carries besides the addresses (`"alpn"`, `"authority"` = the
    /// client's SNI, `"ssl"` = TLS version and cipher, `"ja4"`); none by default, as HAProxy's `send-proxy-v2`.
    public var proxyProtocolTLVs: ProxyProtocol.TLVSet = []
    /// `[upstreams.NAME.tls]`: TLS toward the pool's `https://` servers.
    public var tls = OriginTLS()
    /// `servers` was missing or had only invalid elements (already reported; suppresses "at least one server").
    var serversWereInvalid = false
    /// A `tls` table was written (it is an error on a pool without `https://` servers).
    var tlsTableWritten = false

    /// Whether any server is `https://` (the pool needs a client TLS context).
    public var usesTLS: Bool { servers.contains { $0.url.tls } }

    public init(name: String, servers: [Server]) {
        self.name = name
        self.servers = servers
    }

    /// One `servers` element: a URL string or `{ url = "…", weight = N }`.
    public struct Server: Sendable, Hashable {
        public var url: Upstream
        /// Relative share of requests (1...1000); applies to every address the URL's host resolves to.
        public var weight: Int

        public init(url: Upstream, weight: Int = 1) {
            self.url = url
            self.weight = weight
        }
    }

    /// `[upstreams.NAME.health_check]`: an HTTP/1.1 `GET path` to every address of every server, every
    /// `interval`. An address goes down after `fall` consecutive failed checks and up again after `rise`
    /// consecutive good ones.
    public struct HealthCheck: Sendable, Equatable {
        public var path = "/"
        public var interval = ConfigDuration.seconds(5)
        /// Connect plus response head, per check.
        public var timeout = ConfigDuration.seconds(2)
        public var rise = 2
        public var fall = 3
        /// Statuses that count as healthy; default 200–399.
        public var expectStatus: [ClosedRange<Int>] = [200...399]

        public init() {}
    }
}

/// `balance`: how a pool picks a server address for a request.
public enum BalanceMethod: String, Sendable, CaseIterable {
    /// Smooth weighted round-robin: even spread, for interchangeable stateless servers.
    case roundRobin = "round-robin"
    /// Fewest requests in flight (relative to weight): servers with uneven or long requests.
    case leastOutstanding = "least-outstanding"
    /// Weighted rendezvous hashing of `hash_key`: the same client (or header value) keeps the same server while
    /// it is up (cache locality, sticky sessions); only keys of a server that leaves move.
    case hash
}

/// `hash_key`: the value `balance = "hash"` hashes.
public enum HashKey: Sendable, Hashable, CustomStringConvertible {
    /// The client's IP address (without port).
    case client
    /// The value of a request header (name lower-cased); requests without it hash the client address.
    case header(String)

    public var description: String {
        switch self {
        case .client: "client"
        case .header(let name): "header:\(name)"
        }
    }

    static func parse(_ text: String) throws(ValueError) -> HashKey {
        if text == "client" { return .client }
        if text.hasPrefix("header:") {
            let name = text.dropFirst("header:".count)
            guard !name.isEmpty, name.unicodeScalars.allSatisfy(ProxyConfiguration.isTokenScalar) else {
                throw ValueError("\"\(text)\": the header name must be a non-empty HTTP token")
            }
            return .header(name.lowercased())
        }
        throw ValueError("\"\(text)\" is neither \"client\" nor \"header:NAME\"")
    }
}
