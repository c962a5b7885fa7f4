/// One worker's idle keep-alive origin connections, pooled per server address (per ``EndpointState``, so two
/// servers that resolve to the same address in different pools do not share, and a reload that keeps an address
/// keeps its connections). Loop-owned; `Connection` is the worker's connection type.
///
/// Connections to a retired address (removed by re-resolution or reload) are never pooled or handed out:
/// ``put(_:for:)`` refuses them and ``removeRetired()`` returns the ones already pooled for the worker to close
/// after a snapshot change — that is how connections to removed addresses drain.
public struct IdleConnections<Connection: AnyObject> {
    private var byEndpoint: [ObjectIdentifier: IdleSlot] = [:]
    /// The slot of the last address used: most workers talk to one or a few addresses, so this skips the hash.
    private var last: IdleSlot?
    /// Most idle connections kept per address; beyond it ``put(_:for:)`` refuses.
    public let limitPerAddress: Int

    public init(limitPerAddress: Int = 512) { self.limitPerAddress = limitPerAddress }

    private func slot(_ endpoint: EndpointState) -> IdleSlot? {
        if let l = last, l.state === endpoint { return l }
        return byEndpoint[ObjectIdentifier(endpoint)]
    }

    /// The most recently pooled connection to `endpoint` (LIFO: the warmest one), or nil.
    public mutating func take(for endpoint: EndpointState) -> Connection? {
        guard !endpoint.isRetired, let slot = slot(endpoint), let c = slot.connections.popLast() else { return nil }
        last = slot
        // SAFETY: only `put` adds to a slot, and it adds `Connection`s.
        return unsafeDowncast(c, to: Connection.self)
    }

    /// Pools `connection`; false when the caller must close it instead (address retired, or the limit reached).
    public mutating func put(_ connection: Connection, for endpoint: EndpointState) -> Bool {
        guard !endpoint.isRetired else { return false }
        let s: IdleSlot
        if let found = slot(endpoint) {
            s = found
        } else {
            s = IdleSlot(endpoint)
            byEndpoint[ObjectIdentifier(endpoint)] = s
        }
        last = s
        guard s.connections.count < limitPerAddress else { return false }
        s.connections.append(connection)
        return true
    }

    /// Forgets `connection` (it closed or timed out while idle); true when it was pooled.
    @discardableResult
    public mutating func remove(_ connection: Connection, for endpoint: EndpointState) -> Bool {
        guard let slot = slot(endpoint), let i = slot.connections.firstIndex(where: { $0 === connection }) else {
            return false
        }
        slot.connections.remove(at: i)
        return true
    }

    /// Removes and returns every pooled connection whose address was retired; call after a snapshot change.
    public mutating func removeRetired() -> [Connection] {
        var out: [Connection] = []
        for (id, slot) in byEndpoint where slot.state.isRetired {
            out += slot.connections.map { unsafeDowncast($0, to: Connection.self) }
            byEndpoint[id] = nil
            if last === slot { last = nil }
        }
        return out
    }

    /// Removes and returns everything (drain on shutdown).
    public mutating func removeAll() -> [Connection] {
        defer {
            byEndpoint = [:]
            last = nil
        }
        return byEndpoint.values.flatMap(\.connections).map { unsafeDowncast($0, to: Connection.self) }
    }

    /// Pooled connections in total.
    public var count: Int { byEndpoint.values.reduce(0) { $0 + $1.connections.count } }
}

/// One address's stack; a class so push and pop mutate in place (a dictionary of arrays copied the whole array on
/// every take and put: 15 % of proxy CPU in perf). Not nested in the generic pool and not generic itself: a generic
/// class made every take and put instantiate type metadata at run time (seen in perf, behind a runtime lock).
final class IdleSlot {
    let state: EndpointState
    var connections: [AnyObject] = []
    init(_ state: EndpointState) { self.state = state }
}
