import ProxyConfig
import ProxyCore
import ProxyEventLoop
import ProxyForwarder
import ProxyHTTP1
import ProxyPolicy
import ProxyTLS

/// Settings a worker applies per connection, derived from the configuration. Immutable; swapped on reload.
public final class RuntimeSnapshot: Sendable {
    /// One origin: its display form and resolved addresses.
    public struct Origin: Sendable {
        public var display: String
        public var hostHeader: String
        public var addresses: [SocketAddress]
        public init(display: String, hostHeader: String, addresses: [SocketAddress]) {
            self.display = display
            self.hostHeader = hostHeader
            self.addresses = addresses
        }
    }

    /// Timeouts in nanoseconds (`[timeouts]`; the defaults are ProxyConfiguration's, see ConfigMapping).
    public struct Timeouts: Sendable {
        public var handshake: UInt64
        public var headerRead: UInt64
        public var idle: UInt64
        public var upstreamConnect: UInt64
        public var upstreamRead: UInt64
        public var upstreamSend: UInt64
        public var tunnelIdle: UInt64
        public var drain: UInt64
        /// The defaults of `[timeouts]`.
        public init() { self.init(ProxyConfiguration.Timeouts()) }

        init(_ c: ProxyConfiguration.Timeouts) {
            handshake = ConfigMapping.nanos(c.handshake)
            headerRead = ConfigMapping.nanos(c.headerRead)
            idle = ConfigMapping.nanos(c.idle)
            upstreamConnect = ConfigMapping.nanos(c.upstreamConnect)
            upstreamRead = ConfigMapping.nanos(c.upstreamRead)
            upstreamSend = ConfigMapping.nanos(c.upstreamSend)
            tunnelIdle = ConfigMapping.nanos(c.tunnelIdle)
            drain = ConfigMapping.nanos(c.drain)
        }
    }

    /// Opt-in request headers toward the origin carrying the fingerprint and policy (`[policies.headers]`).
    public typealias FingerprintHeaders = ProxyConfiguration.Policies.Headers

    public let tls: TLSContextSet
    public let policies: CompiledPolicySet?
    public let origins: [Origin]
    public let timeouts: Timeouts
    public let limits: HTTP1Limits
    public let fingerprintHeaders: FingerprintHeaders
    /// Lowercased names of inbound headers always removed (spoofable fingerprint headers, Expect).
    let strippedHeaderNames: [[UInt8]]
    public let maxConnectionsPerWorker: Int
    /// The forwarding settings shared by every connection of this snapshot; a connection copies it and sets only
    /// the client address and its fingerprint header lines (the arrays stay shared).
    let forwardingTemplate: ForwardingContext
    /// HTTP/2 session limits and timeouts.
    public let http2: HTTP2Options
    /// The origin-side timeouts every exchange of this snapshot uses.
    let forwarderTimeouts: ForwarderTimeouts
    /// `listen_proxy_protocol`: the peers allowed to send the PROXY header (every connection must start with one);
    /// nil when off.
    public let proxyProtocolFrom: [CIDRBlock]?

    public init(
        tls: TLSContextSet,
        policies: CompiledPolicySet?,
        origins: [Origin],
        timeouts: Timeouts,
        limits: HTTP1Limits,
        fingerprintHeaders: FingerprintHeaders,
        maxConnectionsPerWorker: Int,
        http2: HTTP2Options = HTTP2Options(),
        proxyProtocolFrom: [CIDRBlock]? = nil
    ) {
        self.http2 = http2
        self.proxyProtocolFrom = proxyProtocolFrom
        self.tls = tls
        self.policies = policies
        self.origins = origins
        self.timeouts = timeouts
        self.limits = limits
        self.fingerprintHeaders = fingerprintHeaders
        self.maxConnectionsPerWorker = maxConnectionsPerWorker
        self.forwarderTimeouts = ForwarderTimeouts(
            connect: timeouts.upstreamConnect,
            send: timeouts.upstreamSend,
            read: timeouts.upstreamRead,
            tunnelIdle: timeouts.tunnelIdle
        )
        let h = fingerprintHeaders
        // Expect is answered by the proxy itself (100 Continue), so the origin never sees it.
        self.strippedHeaderNames = [h.ja3, h.ja4, h.policy, h.tag, "expect"].map { Array($0.lowercased().utf8) }
        self.forwardingTemplate = ForwardingContext(
            clientAddress: [],
            stripped: HeaderNameList(strippedHeaderNames),
            defaultHost: Array((origins.first?.hostHeader ?? "").utf8)
        )
    }
}
