import ProxyCore

/// One worker's view of the upstreams: the current snapshot plus the per-worker balancer state. Loop-owned: used
/// only on its worker's thread, so round-robin scores and cursors need no atomics.
///
/// Call ``refresh()`` at the top of every loop tick (one atomic load when nothing changed). A request then:
/// `route(...)` → `pick(pool:...)` → ``begin(_:)`` → forward → ``finish(_:pool:outcome:now:)``. The snapshot an
/// exchange started with stays alive as long as the exchange holds its ``Endpoint`` (a reload never changes the
/// pool of a request in flight).
public final class UpstreamSelector {
    private let box: UpstreamSnapshotBox
    public private(set) var snapshot: UpstreamSnapshot
    private var seenGeneration: UInt64
    private var roundRobin: [SmoothWeightedRoundRobin]
    private var cursors: [Int]

    public init(box: UpstreamSnapshotBox) {
        self.box = box
        seenGeneration = box.generation
        snapshot = box.load()
        roundRobin = snapshot.pools.map { SmoothWeightedRoundRobin(count: $0.endpoints.count) }
        cursors = Array(repeating: 0, count: snapshot.pools.count)
    }

    /// Picks up a newly published snapshot; returns true when it changed.
    @discardableResult
    public func refresh() -> Bool {
        let g = box.generation
        guard g != seenGeneration else { return false }
        seenGeneration = g
        snapshot = box.load()
        roundRobin = snapshot.pools.map { SmoothWeightedRoundRobin(count: $0.endpoints.count) }
        cursors = Array(repeating: 0, count: snapshot.pools.count)
        return true
    }

    /// Routes one request (see ``Router``).
    public func route(
        sni: UnsafeRawBufferPointer?,
        host: UnsafeRawBufferPointer?,
        path: UnsafeRawBufferPointer
    )
        -> RouteDecision
    {
        snapshot.router.route(sni: sni, host: host, path: path)
    }

    /// Routes one request and returns the matched route's options too (see ``Router/resolve(sni:host:path:)``).
    public func resolve(
        sni: UnsafeRawBufferPointer?,
        host: UnsafeRawBufferPointer?,
        path: UnsafeRawBufferPointer
    )
        -> RouteMatch
    {
        snapshot.router.resolve(sni: sni, host: host, path: path)
    }

    /// String convenience for tests (allocates).
    public func route(sni: String?, host: String?, path: String) -> RouteDecision {
        snapshot.router.route(sni: sni, host: host, path: path)
    }

    /// The endpoint for the next request to `pool`, or nil when the pool has no address at all (answer 502).
    ///
    /// Usable endpoints (health up, not ejected) are balanced over; when none is usable the **panic rule** balances
    /// over all of them instead, as Envoy and HAProxy do: a health signal that says "everything is down" is more
    /// often wrong (checks blocked, origin overloaded by its own retries) than the origin is, and trying costs one
    /// failed connect. `excluding` skips the endpoint a retry just failed on, unless it is the only one.
    /// - Parameters:
    ///   - key: the hash of the request's `hash_key` (``hashKey(client:header:)``); used by `balance = "hash"` only.
    ///   - now: monotonic milliseconds.
    public func pick(pool: Int, key: UInt64 = 0, now: UInt64, excluding: EndpointState? = nil) -> Endpoint? {
        let endpoints = snapshot.pools[pool].endpoints
        var avoid: [Int] = []
        if endpoints.count > 1, let excluding, let i = endpoints.firstIndex(where: { $0.state === excluding }) {
            avoid = [i]
        }
        return pickIndex(pool: pool, key: key, now: now, avoiding: avoid).map { endpoints[$0] }
    }

    /// Like ``pick(pool:key:now:excluding:)`` but avoiding every endpoint index in `avoiding` (the addresses an
    /// exchange already tried); nil when every endpoint is avoided or the pool has none.
    public func pickIndex(pool: Int, key: UInt64, now: UInt64, avoiding: [Int]) -> Int? {
        let p = snapshot.pools[pool]
        let endpoints = p.endpoints
        if endpoints.count == 1 { return avoiding.isEmpty ? 0 : nil }  // the common single-address pool
        guard !endpoints.isEmpty else { return nil }
        // Closure literals passed straight to `choose` stay on the stack (no allocation per request).
        if let i = choose(
            pool: pool,
            p,
            key: key,
            usable: { (avoiding.isEmpty || !avoiding.contains($0)) && endpoints[$0].state.isUsable(now: now) }
        ) {
            return i
        }
        return choose(pool: pool, p, key: key, usable: { avoiding.isEmpty || !avoiding.contains($0) })
    }

    private func choose(pool: Int, _ p: PoolSnapshot, key: UInt64, usable: (Int) -> Bool) -> Int? {
        switch p.balance {
        case .roundRobin:
            return roundRobin[pool].pick(weights: p.weights, usable: usable)
        case .leastOutstanding:
            cursors[pool] = (cursors[pool] &+ 1) % max(1, p.endpoints.count)
            return LeastOutstanding.pick(
                weights: p.weights,
                start: cursors[pool],
                outstanding: { p.endpoints[$0].state.outstanding },
                usable: usable
            )
        case .hash:
            return RendezvousHash.pick(key: key, ids: p.hashIDs, weights: p.weights, usable: usable)
        }
    }

    /// The hash of a request's key: `header` when the pool hashes a header and the request has it, else the client
    /// address bytes (without port).
    public static func hashKey(client: UnsafeRawBufferPointer, header: UnsafeRawBufferPointer?) -> UInt64 {
        if let header, !header.isEmpty { return RendezvousHash.fnv1a(header) }
        return RendezvousHash.fnv1a(client)
    }

    /// Counts a request as outstanding on `endpoint` (least-outstanding balancing and `/upstreams`).
    public func begin(_ endpoint: Endpoint) { endpoint.state.addOutstanding(1) }

    /// What became of an attempt on an endpoint, for passive ejection.
    public enum Outcome: Sendable {
        /// A response head arrived (any status: a 5xx with a head is the origin's answer, not a dead server).
        case responded
        /// Connect failed or timed out, or the connection was lost before a response head.
        case failed
        /// Ended by the client or the proxy before the origin could be judged (no effect on health).
        case abandoned
    }

    /// Ends an attempt begun with ``begin(_:)`` (outstanding count only; see ``report(_:pool:outcome:now:)``).
    public func end(_ state: EndpointState) { state.addOutstanding(-1) }

    /// Passive health: how an attempt on `state` went; `now` is monotonic milliseconds. Returns true when this
    /// failure ejected the address.
    @discardableResult
    public func report(_ state: EndpointState, pool: PoolSnapshot, outcome: Outcome, now: UInt64) -> Bool {
        let event: PassiveHealth.Event
        switch outcome {
        case .responded: event = .success
        case .failed: event = .failure
        case .abandoned: return false
        }
        let ejected = state.report(
            event,
            now: now,
            maxFails: pool.maxFails,
            failTimeout: pool.failTimeoutMillis
        )
        if ejected, let e = pool.endpoints.first(where: { $0.state === state }), e.server < pool.metrics.count {
            pool.metrics[e.server].ejections.increment()
        }
        return ejected
    }

    /// ``end(_:)`` and ``report(_:pool:outcome:now:)`` together.
    @discardableResult
    public func finish(_ endpoint: Endpoint, pool: PoolSnapshot, outcome: Outcome, now: UInt64) -> Bool {
        end(endpoint.state)
        return report(endpoint.state, pool: pool, outcome: outcome, now: now)
    }
}
