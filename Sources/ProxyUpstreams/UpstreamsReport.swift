import Foundation

/// The body of `GET /upstreams`: every pool, its servers, their addresses and each address's state. Built on the
/// admin thread (Foundation's encoder is fine off the request path). Keys are sorted so the output is stable.
///
/// ```json
/// {"pools":[{"balance":"round-robin","name":"api","servers":[{"addresses":[{"address":"127.0.0.2:8080",
///   "consecutive_failures":0,"outstanding":0,"reason":"","state":"up"}],"resolve_error":null,
///   "server":"http://api.internal:8080","state":"up","weight":1}]}]}
/// ```
/// `state` is `"down"` when the address failed `fall` health checks (reason `"health check: …"`) or is ejected
/// after `max_fails` consecutive failures (reason `"ejected: N consecutive failures"`); a server is `"up"` when any
/// of its addresses is.
public enum UpstreamsReport {
    struct Address: Encodable {
        var address: String
        var state: String
        var reason: String
        var consecutive_failures: Int
        var outstanding: Int
    }
    struct Server: Encodable {
        var server: String
        var weight: Int
        var state: String
        var resolve_error: String?
        var addresses: [Address]

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(server, forKey: .server)
            try c.encode(weight, forKey: .weight)
            try c.encode(state, forKey: .state)
            try c.encode(resolve_error, forKey: .resolve_error)
            try c.encode(addresses, forKey: .addresses)
        }
        enum CodingKeys: String, CodingKey { case server, weight, state, resolve_error, addresses }
    }
    struct Pool: Encodable {
        var name: String
        var balance: String
        var servers: [Server]
    }
    struct Body: Encodable { var pools: [Pool] }

    /// One address's state at `now` (monotonic ms): `("up", "")` or `("down", reason)`.
    public static func state(of s: EndpointState, now: UInt64) -> (state: String, reason: String) {
        let active = s.active
        if !active.isUp { return ("down", UpstreamRuntime.describe(active)) }
        let passive = s.passive
        if passive.isEjected(now: now) { return ("down", "ejected: \(passive.failures) consecutive failures") }
        return ("up", "")
    }

    public static func json(_ snapshot: UpstreamSnapshot, now: UInt64) -> String {
        let pools = snapshot.pools.map { p in
            Pool(
                name: p.name,
                balance: p.config.balance.rawValue,
                servers: p.servers.enumerated().map { si, server in
                    let addresses = p.endpoints.filter { $0.server == si }.map { e in
                        let (state, reason) = state(of: e.state, now: now)
                        return Address(
                            address: e.state.address.description,
                            state: state,
                            reason: reason,
                            consecutive_failures: e.state.passive.failures,
                            outstanding: e.state.outstanding
                        )
                    }
                    return Server(
                        server: server.url.description,
                        weight: server.weight,
                        state: addresses.contains { $0.state == "up" } ? "up" : "down",
                        resolve_error: server.resolveError,
                        addresses: addresses
                    )
                }
            )
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(Body(pools: pools)) else { return "{\"pools\":[]}" }
        return String(decoding: data, as: UTF8.self)
    }
}
