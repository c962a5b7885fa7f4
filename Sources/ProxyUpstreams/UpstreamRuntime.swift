import Logging
import ProxyConfig
import ProxyCore
import ProxyEventLoop
import Synchronization

/// Owns the upstream control plane: builds snapshots from the configuration, re-resolves DNS names on a resolver
/// thread, runs active health checks on a health-check thread and publishes through ``box``. Workers only read
/// (``UpstreamSelector``); nothing here runs on an event loop.
///
/// - Start-up and ``reload(pools:routes:)`` resolve new names synchronously (the caller is the main or admin
///   thread); names already known keep their addresses and health, so a reload never makes a healthy address
///   "unknown". Endpoint state is keyed by pool name, server URL and address.
/// - Every `resolve_interval` the resolver thread resolves each DNS name again. A changed address set publishes a
///   new snapshot (removed addresses are retired: their idle connections close, in-flight exchanges finish); a
///   failure keeps the last good addresses, counts `edgeproxy_upstream_resolve_failures_total` and logs a warning
///   when the name starts failing (and an info line when it recovers) rather than at every attempt.
public final class UpstreamRuntime: Sendable {
    public typealias Resolve = @Sendable (_ host: String, _ port: UInt16) -> Result<[SocketAddress], ResolveFailure>
    public typealias Probe =
        @Sendable (_ address: SocketAddress, _ pool: UpstreamPool, _ server: Upstream) ->
        HealthProbe.Result

    /// The published snapshot; hand it to every worker's ``UpstreamSelector``.
    public let box: UpstreamSnapshotBox
    private let control: Mutex<Control>
    private let resolve: Resolve
    private let probe: Probe
    private let clock: @Sendable () -> UInt64
    private let logger: Logger
    private let stopping = Atomic<Bool>(false)
    private let threads = Mutex<[OSThread]>([])
    /// The threads' waits: ended early by stop, reload and (for the checker) a resolution that changed addresses.
    private let resolverSleep = Sleeper()
    private let checkerSleep = Sleeper()
    /// Bounds of a thread's wait between passes, ms: never shorter (no busy loop), never longer (gauges, stop).
    static let minimumWait: UInt64 = 50
    static let maximumWait: UInt64 = 1000

    private struct Control: Sendable {
        var pools: [UpstreamPool]
        var routes: [Route]
        /// Monotonic ms at which each pool's names are due for resolution, by pool name.
        var resolveDue: [String: UInt64] = [:]
        /// Monotonic ms at which each endpoint is due for a check.
        var checkDue: [ObjectIdentifier: UInt64] = [:]
    }

    /// Builds the first snapshot (resolving every name now; an unresolvable name starts with no address and is
    /// retried every `resolve_interval`).
    /// - Parameters:
    ///   - resolve: the resolver (tests inject one; the default is ``systemResolve(host:port:)``).
    ///   - probe: the health check (default ``HealthProbe/check(address:host:path:timeoutMilliseconds:expect:)``).
    ///   - clock: monotonic milliseconds.
    public init(
        pools: [UpstreamPool],
        routes: [Route],
        resolve: @escaping Resolve = { systemResolve(host: $0, port: $1) },
        probe: @escaping Probe = UpstreamRuntime.httpProbe,
        clock: @escaping @Sendable () -> UInt64 = { monotonicNanos() / 1_000_000 },
        logger: Logger = Logger(label: "edgeproxy.upstreams")
    ) {
        self.resolve = resolve
        self.probe = probe
        self.clock = clock
        self.logger = logger
        let now = clock()
        let first = Self.build(pools: pools, routes: routes, previous: nil, resolve: resolve, logger: logger)
        box = UpstreamSnapshotBox(first)
        var control = Control(pools: pools, routes: routes)
        for p in pools { control.resolveDue[p.name] = now &+ UInt64(p.resolveInterval.milliseconds) }
        self.control = Mutex(control)
    }

    /// The default probe: ``HealthProbe`` with the pool's `health_check` settings.
    public static let httpProbe: Probe = { address, pool, server in
        guard let hc = pool.healthCheck else { return .ok(status: 0) }
        return HealthProbe.check(
            address: address,
            host: server.hostHeader,
            path: hc.path,
            timeoutMilliseconds: hc.timeout.milliseconds,
            expect: hc.expectStatus,
            // An origin that wants the PROXY protocol refuses connections without it: checks send one naming
            // nobody (v1 UNKNOWN, v2 LOCAL), as HAProxy's `check-send-proxy` does.
            preamble: pool.proxyProtocol.map { ProxyProtocol.header($0, source: nil, destination: nil) } ?? []
        )
    }

    // MARK: - Threads

    /// Starts the resolver and health-check threads. Each sleeps until its next due time (a name to resolve, an
    /// address to check, the gauges once a second), between ``minimumWait`` and ``maximumWait``.
    public func start() {
        let resolver = OSThread { [self] in
            var lastGauges: UInt64 = 0
            while !stopping.load(ordering: .relaxed) {
                let now = clock()
                let nextResolve = resolvePass(now: now)
                if now &- lastGauges >= 1000 {
                    updateGauges(now: now)
                    lastGauges = now
                }
                let due = min(nextResolve ?? .max, lastGauges &+ 1000)
                resolverSleep.sleep(nanoseconds: Self.wait(until: due, now: clock()))
            }
        }
        let checker = OSThread { [self] in
            while !stopping.load(ordering: .relaxed) {
                let due = healthPass(now: clock()) ?? .max
                checkerSleep.sleep(nanoseconds: Self.wait(until: due, now: clock()))
            }
        }
        threads.withLock { $0 = [resolver, checker] }
    }

    /// Nanoseconds to wait for `due` (monotonic ms), within ``minimumWait`` and ``maximumWait``.
    static func wait(until due: UInt64, now: UInt64) -> Int64 {
        let ms = due > now ? due - now : 0
        return Int64(min(maximumWait, max(minimumWait, ms))) * 1_000_000
    }

    /// Stops and joins the threads (a health check in progress finishes first, bounded by its timeout).
    public func stop() {
        stopping.store(true, ordering: .relaxed)
        resolverSleep.wake()
        checkerSleep.wake()
        let ts = threads.withLock { t in
            defer { t = [] }
            return t
        }
        for t in ts { t.join() }
    }

    // MARK: - Reload

    /// Replaces pools and routes atomically: one new snapshot. Exchanges in flight keep the endpoint (and pool
    /// snapshot) they started with. Names already resolved for the same pool and server keep their addresses.
    public func reload(pools: [UpstreamPool], routes: [Route]) {
        control.withLock { c in
            let now = clock()
            let old = box.load()
            let next = Self.build(pools: pools, routes: routes, previous: old, resolve: resolve, logger: logger)
            Self.retireRemoved(old: old, new: next)
            box.publish(next)
            c.pools = pools
            c.routes = routes
            c.resolveDue = [:]
            for p in pools { c.resolveDue[p.name] = now &+ UInt64(p.resolveInterval.milliseconds) }
        }
        // New pools and addresses are due now (checks) or on a new schedule (names).
        resolverSleep.wake()
        checkerSleep.wake()
    }

    // MARK: - Passes (called by the threads; public for tests, which drive them with their own clock)

    /// Re-resolves the names of every pool whose `resolve_interval` has elapsed; publishes when anything changed.
    /// Returns when the next pool with a DNS name is due (monotonic ms; nil: no pool has one).
    @discardableResult
    public func resolvePass(now: UInt64) -> UInt64? {
        let changed = control.withLock { c -> Bool in
            let old = box.load()
            var changed = false
            var servers: [[ServerSnapshot]] = old.pools.map(\.servers)
            for (pi, pool) in old.pools.enumerated() {
                guard let due = c.resolveDue[pool.name], now >= due else { continue }
                c.resolveDue[pool.name] = now &+ UInt64(pool.config.resolveInterval.milliseconds)
                for (si, server) in pool.servers.enumerated() where server.isName {
                    let result = resolve(server.url.host.unbracketed, server.url.port)
                    let next = Self.apply(
                        result,
                        to: server,
                        pool: pool.name,
                        metrics: pool.metrics[si],
                        logger: logger
                    )
                    if Set(next.addresses.map(\.description)) != Set(server.addresses.map(\.description))
                        || next.resolveError != server.resolveError
                    {
                        servers[pi][si] = next
                        changed = true
                    }
                }
            }
            guard changed else { return false }
            let next = Self.assemble(old.pools.map(\.config), servers, routes: c.routes, previous: old)
            Self.retireRemoved(old: old, new: next)
            box.publish(next)
            return true
        }
        // New addresses are due for a check now.
        if changed { checkerSleep.wake() }
        let named = box.load().pools.filter { $0.servers.contains { $0.isName } }.map(\.name)
        return control.withLock { c in
            var next: UInt64? = nil
            for name in named { if let due = c.resolveDue[name] { next = min(next ?? due, due) } }
            return next
        }
    }

    /// Checks every endpoint of every pool with a `health_check` whose interval has elapsed.
    /// Returns when the next address is due for a check (monotonic ms; nil: no pool has health checks).
    @discardableResult
    public func healthPass(now: UInt64) -> UInt64? {
        let snapshot = box.load()
        // Forget addresses that left (re-resolution, reload) so the schedule does not grow without bound.
        let current = Set(snapshot.pools.flatMap { $0.endpoints.map { ObjectIdentifier($0.state) } })
        control.withLock { c in c.checkDue = c.checkDue.filter { current.contains($0.key) } }
        for pool in snapshot.pools {
            guard let hc = pool.config.healthCheck else { continue }
            for endpoint in pool.endpoints {
                let id = ObjectIdentifier(endpoint.state)
                let due = control.withLock { $0.checkDue[id] ?? 0 }
                guard now >= due, !stopping.load(ordering: .relaxed) else { continue }
                let server = pool.servers[endpoint.server]
                let result = probe(endpoint.state.address, pool.config, server.url)
                let ok: Bool
                let reason: FailureReason
                let status: Int
                switch result {
                case .ok(let s): (ok, reason, status) = (true, .none, s)
                case .failed(let r, let s): (ok, reason, status) = (false, r, s)
                case .notRun:
                    // The proxy had no socket to spare: the address's health stays as it was; next interval again.
                    control.withLock { $0.checkDue[id] = now &+ UInt64(hc.interval.milliseconds) }
                    continue
                }
                let (next, changed) = endpoint.state.active.next(
                    ok: ok,
                    reason: reason,
                    status: status,
                    rise: hc.rise,
                    fall: hc.fall
                )
                endpoint.state.setActive(next)
                if !ok { pool.metrics[endpoint.server].checkFailures.increment() }
                if changed {
                    let what = next.isUp ? "up" : "down (\(Self.describe(next)))"
                    logger.warning(
                        "upstream \(pool.name) \(server.url) address \(endpoint.state.address) is \(what)",
                        metadata: ["pool": "\(pool.name)", "server": "\(server.url)"]
                    )
                }
                let finished = clock()
                control.withLock { $0.checkDue[id] = max(now, finished) &+ UInt64(hc.interval.milliseconds) }
            }
        }
        let checked = box.load().pools.filter { $0.config.healthCheck != nil }
        guard !checked.isEmpty else { return nil }
        return control.withLock { c in
            var next = UInt64.max
            for pool in checked {
                for e in pool.endpoints { next = min(next, c.checkDue[ObjectIdentifier(e.state)] ?? 0) }
            }
            return next
        }
    }

    /// Writes the per-server gauges (addresses, usable addresses, outstanding requests).
    public func updateGauges(now: UInt64) {
        let snapshot = box.load()
        for pool in snapshot.pools {
            for (si, server) in pool.servers.enumerated() {
                let mine = pool.endpoints.filter { $0.server == si }
                pool.metrics[si].addresses.record(server.addresses.count)
                pool.metrics[si].usable.record(mine.filter { $0.state.isUsable(now: now) }.count)
                pool.metrics[si].outstanding.record(mine.reduce(0) { $0 + $1.state.outstanding })
            }
        }
    }

    /// The `GET /upstreams` body (see ``UpstreamsReport``).
    public func reportJSON() -> String { UpstreamsReport.json(box.load(), now: clock()) }

    // MARK: - Building snapshots

    static func describe(_ s: ActiveHealth) -> String {
        s.reason == .unexpectedStatus ? "health check: status \(s.lastStatus)" : "health check: \(s.reason.text)"
    }

    private static func apply(
        _ result: Result<[SocketAddress], ResolveFailure>,
        to server: ServerSnapshot,
        pool: String,
        metrics: ServerMetrics,
        logger: Logger
    ) -> ServerSnapshot {
        switch result {
        case .success(let addresses):
            if server.resolveError != nil {
                logger.info("upstream \(pool) \(server.url) resolves again: \(addresses.map(\.description))")
            } else if Set(addresses.map(\.description)) != Set(server.addresses.map(\.description)) {
                logger.info(
                    "upstream \(pool) \(server.url) now resolves to \(addresses.map(\.description))",
                    metadata: ["pool": "\(pool)", "server": "\(server.url)"]
                )
            }
            return ServerSnapshot(url: server.url, weight: server.weight, addresses: addresses, resolveError: nil)
        case .failure(let error):
            metrics.resolveFailures.increment()
            if server.resolveError == nil {
                logger.warning(
                    "upstream \(pool) \(server.url): \(error.message); keeping \(server.addresses.map(\.description))",
                    metadata: ["pool": "\(pool)", "server": "\(server.url)"]
                )
            }
            return ServerSnapshot(
                url: server.url,
                weight: server.weight,
                addresses: server.addresses,
                resolveError: error.message
            )
        }
    }

    /// A snapshot for `pools`, reusing the addresses (of names) and endpoint states of `previous` where the pool
    /// name and server URL match; other names are resolved now.
    static func build(
        pools: [UpstreamPool],
        routes: [Route],
        previous: UpstreamSnapshot?,
        resolve: Resolve,
        logger: Logger
    ) -> UpstreamSnapshot {
        var servers: [[ServerSnapshot]] = []
        for pool in pools {
            let old = previous?.pools.first { $0.name == pool.name }
            servers.append(
                pool.servers.map { s in
                    if let known = old?.servers.first(where: { $0.url == s.url }), known.isName {
                        return ServerSnapshot(
                            url: s.url,
                            weight: s.weight,
                            addresses: known.addresses,
                            resolveError: known.resolveError
                        )
                    }
                    let fresh = ServerSnapshot(url: s.url, weight: s.weight, addresses: [], resolveError: nil)
                    return apply(
                        resolve(s.url.host.unbracketed, s.url.port),
                        to: fresh,
                        pool: pool.name,
                        metrics: ServerMetrics(pool: pool.name, server: s.url.description),
                        logger: logger
                    )
                }
            )
        }
        return assemble(pools, servers, routes: routes, previous: previous)
    }

    private static func assemble(
        _ pools: [UpstreamPool],
        _ servers: [[ServerSnapshot]],
        routes: [Route],
        previous: UpstreamSnapshot?
    ) -> UpstreamSnapshot {
        var oldStates: [String: EndpointState] = [:]
        for p in previous?.pools ?? [] {
            for e in p.endpoints { oldStates[key(p.name, p.servers[e.server].url, e.state.address)] = e.state }
        }
        let built = zip(pools, servers).map { pool, servers in
            PoolSnapshot(
                config: pool,
                servers: servers,
                states: { si, address in
                    let initial =
                        pool.healthCheck.map { ActiveHealth.initial(fall: $0.fall) } ?? ActiveHealth.unchecked
                    guard let state = oldStates[key(pool.name, servers[si].url, address)] else {
                        return EndpointState(address: address, active: initial)
                    }
                    if pool.healthCheck == nil { state.setActive(.unchecked) }
                    return state
                },
                metrics: servers.map { ServerMetrics(pool: pool.name, server: $0.url.description) }
            )
        }
        return UpstreamSnapshot(pools: built, routes: routes)
    }

    private static func key(_ pool: String, _ url: Upstream, _ address: SocketAddress) -> String {
        "\(pool)\u{0}\(url)\u{0}\(address)"
    }

    /// Marks endpoint states of `old` that `new` no longer holds as retired.
    private static func retireRemoved(old: UpstreamSnapshot, new: UpstreamSnapshot) {
        var kept = Set<ObjectIdentifier>()
        for p in new.pools { for e in p.endpoints { kept.insert(ObjectIdentifier(e.state)) } }
        for p in old.pools { for e in p.endpoints where !kept.contains(ObjectIdentifier(e.state)) { e.state.retire() } }
    }
}
