import ProxyConfig
import ProxyCore
import ProxyEventLoop
import Synchronization

/// The live state of one resolved server address, shared by every worker, the health checker and `/upstreams`.
///
/// Every field is an atomic written without locks: workers add and remove outstanding requests and report passive
/// results (a compare-and-swap over ``PassiveHealth``), the health thread stores ``ActiveHealth``. The object
/// outlives snapshots: a re-resolution or reload that keeps the address keeps this object (and its health);
/// one that drops it sets ``isRetired`` so workers close its idle connections instead of reusing them.
public final class EndpointState: Sendable {
    public let address: SocketAddress
    private let outstandingCount = Atomic<Int>(0)
    private let passiveBits = Atomic<UInt64>(0)
    private let activeBits: Atomic<UInt64>
    private let retiredFlag = Atomic<Bool>(false)

    public init(address: SocketAddress, active: ActiveHealth) {
        self.address = address
        activeBits = Atomic(active.packed)
    }

    public var outstanding: Int { outstandingCount.load(ordering: .relaxed) }
    public var passive: PassiveHealth { PassiveHealth(packed: passiveBits.load(ordering: .relaxed)) }
    public var active: ActiveHealth { ActiveHealth(packed: activeBits.load(ordering: .acquiring)) }
    /// True once the address is no longer in the current snapshot: finish in-flight requests, pool nothing.
    public var isRetired: Bool { retiredFlag.load(ordering: .acquiring) }

    /// Whether the address may get new requests at `now` (monotonic ms): health checks say up and it is not ejected.
    public func isUsable(now: UInt64) -> Bool { active.isUp && !passive.isEjected(now: now) }

    func retire() { retiredFlag.store(true, ordering: .releasing) }
    func setActive(_ s: ActiveHealth) { activeBits.store(s.packed, ordering: .releasing) }
    func addOutstanding(_ delta: Int) { outstandingCount.wrappingAdd(delta, ordering: .relaxed) }

    /// Applies a passive result; returns true when this result ejected the address.
    @discardableResult
    func report(_ event: PassiveHealth.Event, now: UInt64, maxFails: Int, failTimeout: UInt64) -> Bool {
        var old = passiveBits.load(ordering: .relaxed)
        while true {
            let (next, ejected) = PassiveHealth(packed: old).next(
                event,
                now: now,
                maxFails: maxFails,
                failTimeout: failTimeout
            )
            if next.packed == old { return false }
            let (done, seen) = passiveBits.compareExchange(
                expected: old,
                desired: next.packed,
                ordering: .relaxed
            )
            if done { return ejected }
            old = seen
        }
    }
}

/// One address of one server of a pool, as balanced over.
public struct Endpoint: Sendable {
    /// Index of the server in ``PoolSnapshot/servers``.
    public let server: Int
    public let weight: Int
    /// Identity for hashing: FNV-1a of the address text, so every worker and restart agrees.
    public let hashID: UInt64
    public let state: EndpointState
}

/// One configured server of a pool and what its host resolved to.
public struct ServerSnapshot: Sendable {
    public let url: Upstream
    public let weight: Int
    public let addresses: [SocketAddress]
    /// The last resolution error while the name keeps its previous addresses; nil when the last one worked.
    public let resolveError: String?
    /// Whether the host is a DNS name (re-resolved) rather than an address literal.
    public var isName: Bool {
        if case .name = url.host { return true }
        return false
    }
}

/// A pool as balanced over: configuration, servers and the flat list of endpoints (one per server address).
public final class PoolSnapshot: Sendable {
    public let config: UpstreamPool
    public let servers: [ServerSnapshot]
    public let endpoints: [Endpoint]
    /// `weights[i] == endpoints[i].weight`, `hashIDs[i] == endpoints[i].hashID` (what the pickers take).
    public let weights: [Int]
    public let hashIDs: [UInt64]
    /// Lower-cased header name when `hash_key = "header:NAME"`.
    public let hashHeader: [UInt8]?
    /// `proxy_protocol` (copied out of `config`: reading a field of the struct on the request path copies it).
    public let proxyProtocol: ProxyProtocol.Version?
    public let proxyProtocolTLVs: ProxyProtocol.TLVSet
    /// `balance`, copied out of `config` for the same reason (read per request by routing and picking).
    public let balance: BalanceMethod
    /// Passive health settings, copied out of `config` likewise (read on every reported attempt).
    let maxFails: Int
    let failTimeoutMillis: UInt64
    let metrics: [ServerMetrics]

    public var name: String { config.name }

    init(
        config: UpstreamPool,
        servers: [ServerSnapshot],
        states: (Int, SocketAddress) -> EndpointState,
        metrics: [ServerMetrics]
    ) {
        self.config = config
        self.servers = servers
        var endpoints: [Endpoint] = []
        for (i, server) in servers.enumerated() {
            for address in server.addresses {
                endpoints.append(
                    Endpoint(
                        server: i,
                        weight: server.weight,
                        hashID: RendezvousHash.fnv1a(address.description.utf8),
                        state: states(i, address)
                    )
                )
            }
        }
        self.endpoints = endpoints
        weights = endpoints.map(\.weight)
        hashIDs = endpoints.map(\.hashID)
        if case .header(let name) = config.hashKey { hashHeader = Array(name.utf8) } else { hashHeader = nil }
        proxyProtocol = config.proxyProtocol
        proxyProtocolTLVs = config.proxyProtocolTLVs
        balance = config.balance
        maxFails = config.maxFails
        failTimeoutMillis = UInt64(config.failTimeout.milliseconds)
        self.metrics = metrics
    }
}

/// Everything workers need to route and balance, immutable; replaced whole on re-resolution and reload.
public final class UpstreamSnapshot: Sendable {
    public let pools: [PoolSnapshot]
    public let router: Router
    /// The number of servers of the largest pool (bounds a request's attempts; read per request).
    public let largestPoolSize: Int
    /// Whether any pool exists (with none, the server keeps serving its built-in page).
    public var isEmpty: Bool { pools.isEmpty }

    init(pools: [PoolSnapshot], routes: [Route]) {
        self.pools = pools
        self.router = Router(routes: routes, poolNames: pools.map(\.name))
        self.largestPoolSize = pools.reduce(0) { max($0, $1.endpoints.count) }
    }

    /// The pool named `name`, if any.
    public func pool(named name: String) -> Int? { pools.firstIndex { $0.name == name } }
}

/// Publishes snapshots to workers without a lock per request: a worker compares ``generation`` (one atomic load)
/// at the top of its loop tick and calls ``load()`` (which takes a lock) only when it changed.
public final class UpstreamSnapshotBox: Sendable {
    private let current: Mutex<UpstreamSnapshot>
    private let gen = Atomic<UInt64>(1)

    init(_ initial: UpstreamSnapshot) { current = Mutex(initial) }

    public var generation: UInt64 { gen.load(ordering: .acquiring) }

    public func load() -> UpstreamSnapshot { current.withLock { $0 } }

    func publish(_ value: UpstreamSnapshot) {
        current.withLock { $0 = value }
        gen.wrappingAdd(1, ordering: .releasing)
    }
}
