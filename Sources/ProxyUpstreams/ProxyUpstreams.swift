// ProxyUpstreams: named origin pools, routes, load balancing, DNS re-resolution and health (issue 10 §2).
//
// Shape: decisions are pure values with exhaustive tests (Router, SmoothWeightedRoundRobin, LeastOutstanding,
// RendezvousHash, PassiveHealth, ActiveHealth); shared state is immutable snapshots published with a generation
// counter (UpstreamSnapshotBox) plus per-address atomics (EndpointState); I/O runs on two control threads owned by
// UpstreamRuntime (getaddrinfo, health checks), never on an event loop. Workers read through UpstreamSelector.
//
// Hand-written because no library on the mirror does this for our own event loop: swift-nio's and AsyncHTTPClient's
// pools are tied to NIO, and the algorithms are small (nginx smooth weighted round-robin, weighted rendezvous
// hashing, HAProxy rise/fall, nginx max_fails/fail_timeout), each documented where it lives.
//
// Wiring into the server (what ProxyServer does with this module):
// - Start: `UpstreamRuntime(pools: config.upstreamPools, routes: config.routes)`, then `start()`; `stop()` at exit.
//   Reload (SIGHUP, POST /reload): `runtime.reload(pools:routes:)` with the new configuration's values.
// - Each worker: one `UpstreamSelector(box: runtime.box)` and one `IdleConnections<UpstreamConnection>`; at the top of
//   every loop tick `if selector.refresh() { close every connection in idle.removeRetired() }`.
// - Request start (HTTP/1 and HTTP/2 alike): `selector.route(sni:host:path:)`; `.reject(status)` is answered by the
//   proxy. `.pool(i)`: `selector.pick(pool: i, key: ..., now: ms)`; nil → 502. Reuse `idle.take(for: e.state)` or
//   connect to `e.state.address`; `selector.begin(e)`; when the attempt ends, `selector.finish(e, pool:, outcome:,
//   now:)` with `.responded` once a response head arrived, `.failed` for connect failure/reset before the head; a
//   retry passes `excluding: e.state`. The Host for requests without one is the server's `url.hostHeader`
//   (`pool.servers[e.server]`). A finished keep-alive connection goes back with `idle.put(_:for:)` (false → close).
// - Admin: `GET /upstreams` answers `runtime.reportJSON()` (application/json).
