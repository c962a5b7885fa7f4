import Glibc
import Logging
import ProxyConfig
import ProxyCore
import ProxyEventLoop
import ProxyHTTP1
import ProxyPolicy
import ProxyTLS
import ProxyTicketStore
import ProxyTickets

/// Configuration → runtime values: the one place that turns a `ProxyConfiguration` into what the server, the
/// workers and the command-line tools (Sources/edgeproxy) run with. Defaults live in `ProxyConfiguration` only;
/// the runtime types built here (timeouts in nanoseconds, TLS settings, HTTP/1 limits, Redis endpoints) take
/// their values from it rather than repeating them.
public enum ConfigMapping {
    /// The TLS listener's address, resolved.
    static func listenAddress(_ c: ProxyConfiguration) -> SocketAddress? {
        SocketAddress.resolve(host: c.listen.host.unbracketed, port: Int(c.listen.port)).first
    }

    /// `[tls]`, `[tickets]`, `[[certificates]]` (with their OCSP source) and the session cache as OpenSSL context
    /// settings.
    static func tlsSettings(_ c: ProxyConfiguration, sessionCache: SessionCache?, stapler: OCSPStapler) -> TLSSettings {
        var tls = TLSSettings()
        tls.certificates = c.certificates.map {
            .init(chainPath: $0.cert, keyPath: $0.key, ocsp: OCSPService.source($0.ocsp))
        }
        tls.stapler = stapler
        tls.minVersion = openSSLVersion(c.tls.minVersion)
        tls.maxVersion = openSSLVersion(c.tls.maxVersion)
        tls.ciphers = c.tls.ciphers
        tls.ciphersuites = c.tls.ciphersuites
        tls.groups = c.tls.groups
        tls.alpn = c.tls.alpn
        tls.alpnStrict = c.tls.alpnStrict
        tls.ticketsEnabled = c.tickets.enabled
        tls.ticketLifetimeSeconds = Int(c.tickets.lifetime.milliseconds / 1000)
        tls.tls13TicketCount = c.tickets.tls13Count
        tls.defaultStaleAction = c.tickets.staleAction
        tls.sessionCache = sessionCache
        return tls
    }

    /// `[timeouts]` in nanoseconds.
    static func timeouts(_ c: ProxyConfiguration.Timeouts) -> RuntimeSnapshot.Timeouts { .init(c) }

    /// `[limits]` as the HTTP/1 parser's limits.
    static func http1Limits(_ c: ProxyConfiguration.Limits) -> HTTP1Limits {
        var limits = HTTP1Limits()
        limits.maxRequestLineBytes = c.maxRequestLine
        limits.maxHeaderBytes = c.maxHeaderBytes
        limits.maxHeaderCount = c.maxHeaders
        return limits
    }

    /// The legacy `upstreams` list, resolved once (the built-in page and the default Host header use it).
    static func origins(_ c: ProxyConfiguration, logger: Logger) -> [RuntimeSnapshot.Origin] {
        var origins: [RuntimeSnapshot.Origin] = []
        for u in c.upstreams {
            let addrs = SocketAddress.resolve(host: u.host.unbracketed, port: Int(u.port))
            if addrs.isEmpty { logger.warning("upstream \(u) does not resolve (it will be skipped)") }
            origins.append(.init(display: u.description, hostHeader: u.hostHeader, addresses: addrs))
        }
        return origins
    }

    static func openSSLVersion(_ v: TLSVersion) -> Int32 {
        switch v {
        case .v1_0: return 0x0301
        case .v1_1: return 0x0302
        case .v1_2: return 0x0303
        case .v1_3: return 0x0304
        }
    }

    static func nanos(_ d: ConfigDuration) -> UInt64 { UInt64(max(0, d.milliseconds)) * 1_000_000 }

    /// The wrapping keys named by `[redis]` (current + previous), loaded from their files or environment variables.
    public static func ticketKeyWrapper(_ r: ProxyConfiguration.Redis) throws -> TicketKeyWrapper {
        func load(id: String, file: String?, env: String?) throws -> WrappingKey {
            if let file { return try WrappingKey.load(id: id, file: file) }
            return try WrappingKey.load(id: id, env: env ?? "")
        }
        let current = try load(id: r.wrappingKeyID, file: r.wrappingKeyFile, env: r.wrappingKeyEnv)
        let previous = try r.previousWrappingKeys.map { try load(id: $0.id, file: $0.file, env: $0.env) }
        return TicketKeyWrapper(current: current, previous: previous)
    }

    /// A `RedisURL` from the configuration as a hiredis endpoint.
    public static func endpoint(_ u: RedisURL) -> RedisEndpoint {
        RedisEndpoint(
            host: u.host.unbracketed,
            port: Int(u.port),
            username: u.username,
            password: u.password,
            database: u.database
        )
    }
}
