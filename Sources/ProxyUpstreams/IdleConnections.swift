/// One worker's idle keep-alive origin connections, pooled per server address (per ``EndpointState``, so two
/// servers that resolve to the same address in different pools do not share, and a reload that keeps an address
/// keeps its connections). Loop-owned; `Connection` is the worker's connection type.
///
/// Connections to a retired address (removed by re-resolution or reload) are never pooled or handed out:
/// ``put(_:for:)`` refuses them and ``removeRetired()`` returns the ones already pooled for the worker to close
/// after a snapshot change — that is how connections to removed addresses drain.
public struct IdleConnections<Connection: AnyObject> {
    private var byEndpoint: [ObjectIdentifier: (state: EndpointState, connections: [Connection])] = [:]
    /// Most idle connections kept per address; beyond it ``put(_:for:)`` refuses.
    public let limitPerAddress: Int

    public init(limitPerAddress: Int = 512) { self.limitPerAddress = limitPerAddress }

    /// The most recently pooled connection to `endpoint` (LIFO: the warmest one), or nil.
    public mutating func take(for endpoint: EndpointState) -> Connection? {
        let id = ObjectIdentifier(endpoint)
        guard !endpoint.isRetired, var entry = byEndpoint[id], let c = entry.connections.popLast() else { return nil }
        byEndpoint[id] = entry.connections.isEmpty ? nil : entry
        return c
    }

    /// Pools `connection`; false when the caller must close it instead (address retired, or the limit reached).
    public mutating func put(_ connection: Connection, for endpoint: EndpointState) -> Bool {
        guard !endpoint.isRetired else { return false }
        let id = ObjectIdentifier(endpoint)
        var entry = byEndpoint[id] ?? (endpoint, [])
        guard entry.connections.count < limitPerAddress else { return false }
        entry.connections.append(connection)
        byEndpoint[id] = entry
        return true
    }

    /// Forgets `connection` (it closed or timed out while idle); true when it was pooled.
    @discardableResult
    public mutating func remove(_ connection: Connection, for endpoint: EndpointState) -> Bool {
        let id = ObjectIdentifier(endpoint)
        guard var entry = byEndpoint[id], let i = entry.connections.firstIndex(where: { $0 === connection }) else {
            return false
        }
        entry.connections.remove(at: i)
        byEndpoint[id] = entry.connections.isEmpty ? nil : entry
        return true
    }

    /// Removes and returns every pooled connection whose address was retired; call after a snapshot change.
    public mutating func removeRetired() -> [Connection] {
        var out: [Connection] = []
        for (id, entry) in byEndpoint where entry.state.isRetired {
            out += entry.connections
            byEndpoint[id] = nil
        }
        return out
    }

    /// Removes and returns everything (drain on shutdown).
    public mutating func removeAll() -> [Connection] {
        defer { byEndpoint = [:] }
        return byEndpoint.values.flatMap(\.connections)
    }

    /// Pooled connections in total.
    public var count: Int { byEndpoint.values.reduce(0) { $0 + $1.connections.count } }
}
