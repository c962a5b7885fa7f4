import ProxyCore
import ProxyTLS
import ProxyUpstreams

/// The latency histograms of the process (issue 16 §3), declared once at start; exposed after the swift-metrics
/// series on `GET /metrics` (see ProxyCore.LatencyRegistry for why they are not swift-metrics timers).
///
/// Every duration is a difference of the worker loop's clock (`EventLoop.now`, read once per wake-up), which the
/// connection already keeps for its deadlines: recording adds no clock read. Values are therefore exact to the
/// wake-up, which is where the events they measure are seen.
final class LatencyMetrics: Sendable {
    let registry = LatencyRegistry(buckets: .proxy)
    let handshake: LatencyRegistry.Family
    let request: LatencyRegistry.Family
    let upstreamConnect: LatencyRegistry.Family
    let upstreamFirstByte: LatencyRegistry.Family

    /// The `pool` label of requests the proxy answered itself (built-in page, routing 404/421, errors before a
    /// pool was chosen). Parentheses cannot occur in a pool name, so it never collides with one.
    static let localPool = "(local)"

    init() {
        handshake = registry.family(
            name: "edgeproxy_tls_handshake_duration_seconds",
            help: "From accept to the completed TLS handshake, by kind (full, resumed, forced_full).",
            labelNames: ["kind"]
        )
        request = registry.family(
            name: "edgeproxy_http_request_duration_seconds",
            help: "From the request head received to the response handed to the client, by upstream pool.",
            labelNames: ["pool"]
        )
        upstreamConnect = registry.family(
            name: "edgeproxy_upstream_connect_duration_seconds",
            help: "TCP connects to origins that succeeded, from connect() to established, by pool.",
            labelNames: ["pool"]
        )
        upstreamFirstByte = registry.family(
            name: "edgeproxy_upstream_first_byte_seconds",
            help: "From an origin connection ready for the request (connected or taken from the idle pool) "
                + "to the first response byte, by pool.",
            labelNames: ["pool"]
        )
    }

    func emit(into out: inout [UInt8]) { registry.emit(into: &out) }
}

/// One worker's histogram cells. Worker thread only; no lock and no allocation per recording (the per-pool arrays
/// are rebuilt when the worker picks up a new upstream snapshot).
final class WorkerLatency {
    private let metrics: LatencyMetrics
    private let worker: Int
    /// By `HandshakeKind.rawValue`.
    private let handshakes: [HistogramCells]
    private let localRequests: HistogramCells
    /// By pool index in the worker's current upstream snapshot.
    private var requestsByPool: [HistogramCells] = []
    /// By pool name: (connect, first byte); origin connections look theirs up once, when they are created.
    private var upstreamByName: [String: (connect: HistogramCells, firstByte: HistogramCells)] = [:]

    init(metrics: LatencyMetrics, worker: Int) {
        self.metrics = metrics
        self.worker = worker
        handshakes = HandshakeKind.allCases.map {
            metrics.registry.cells(metrics.handshake, labels: [$0.label], owner: worker)
        }
        localRequests = metrics.registry.cells(metrics.request, labels: [LatencyMetrics.localPool], owner: worker)
    }

    /// The worker picked up a new upstream snapshot: map its pool indices to cells (the same cells for the same
    /// pool name, so series continue across reloads).
    func poolsChanged(_ pools: [PoolSnapshot]) {
        requestsByPool = pools.map { metrics.registry.cells(metrics.request, labels: [$0.name], owner: worker) }
        for p in pools where upstreamByName[p.name] == nil { _ = upstreamCells(pool: p.name) }
    }

    @inline(__always)
    func handshake(_ kind: HandshakeKind, nanoseconds: UInt64) {
        handshakes[kind.rawValue].record(nanoseconds: nanoseconds)
    }

    /// `pool`: the index in the worker's upstream snapshot (`Exchange.originPool`), -1 when answered locally.
    @inline(__always)
    func request(pool: Int, nanoseconds: UInt64) {
        let cells = pool >= 0 && pool < requestsByPool.count ? requestsByPool[pool] : localRequests
        cells.record(nanoseconds: nanoseconds)
    }

    /// The connect and first-byte cells of the pool named `pool` (once per origin connection).
    func upstreamCells(pool: String) -> (connect: HistogramCells, firstByte: HistogramCells) {
        if let c = upstreamByName[pool] { return c }
        let c = (
            connect: metrics.registry.cells(metrics.upstreamConnect, labels: [pool], owner: worker),
            firstByte: metrics.registry.cells(metrics.upstreamFirstByte, labels: [pool], owner: worker)
        )
        upstreamByName[pool] = c
        return c
    }
}
