import CoreMetrics
import Metrics
import ProxyTLS

/// One worker's metrics, created once at worker start with fixed labels (swift-metrics handles backed by the
/// Prometheus registry). Hot-path code only calls `increment`, which is an atomic add in the backend.
final class WorkerMetrics {
    let connectionsAccepted: Counter
    let connectionsActive: Gauge
    var activeCount = 0
    let handshakeFailures: Counter
    let clientHelloRejected: Counter
    /// ClientHello verdicts taken from the per-worker shape cache (hit) or computed by a full parse (miss).
    let helloVerdictHits: Counter
    let helloVerdictMisses: Counter
    /// [version index][outcome.rawValue]; versions: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3.
    let handshakes: [[Counter]]
    let ticketsIssued: Counter
    /// Requests by status class 1xx..5xx.
    let requests: [Counter]
    let upstreamErrors: [String: Counter]
    /// Pooled keep-alive connections found closed by the origin when taken for reuse (never used).
    let upstreamStaleClosed: Counter
    /// Exchanges re-sent to an origin after a failed attempt.
    let upstreamRetries: Counter
    let bytesIn: Counter
    let bytesOut: Counter
    let loopBusySeconds: Gauge
    /// accept4 failures for lack of fds or kernel memory (each pauses the listener briefly).
    let acceptExhausted: Counter
    /// WebSocket/Upgrade tunnels open now and opened in total (`edgeproxy_tunnels_active`, `_total`).
    let tunnelsActive: Gauge
    let tunnelsTotal: Counter
    private var tunnelCount = 0
    /// PROXY protocol counters (created on first use: only with `listen_proxy_protocol`).
    lazy var proxyProtocol = ProxyProtocolMetrics(worker: worker)
    /// HTTP/2 counters (created on first use: most workers of an HTTP/1-only deployment never need them).
    lazy var h2 = H2Metrics(worker: worker)
    /// Per policy name: (matched, enforced, observed), created on first match (names change on reload).
    private var policyCounters: [String: (Counter, Counter, Counter)] = [:]
    let worker: String
    /// Latency histograms (LatencyMetrics): this worker's cells, merged with the other workers' at scrape time.
    let latency: WorkerLatency

    static let versions = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
    static let upstreamErrorKinds = [
        "connect", "timeout", "reset_before_headers", "reset_mid_body", "bad_response", "no_server", "unsupported",
        "local_resources",
    ]

    init(worker: Int, latency: LatencyMetrics) {
        let w = String(worker)
        self.worker = w
        self.latency = WorkerLatency(metrics: latency, worker: worker)
        connectionsAccepted = Counter(label: "edgeproxy_connections_accepted_total", dimensions: [("worker", w)])
        connectionsActive = Gauge(label: "edgeproxy_connections_active", dimensions: [("worker", w)])
        handshakeFailures = Counter(label: "edgeproxy_tls_handshake_failures_total", dimensions: [("worker", w)])
        clientHelloRejected = Counter(label: "edgeproxy_clienthello_malformed_total", dimensions: [("worker", w)])
        helloVerdictHits = Counter(
            label: "edgeproxy_clienthello_verdict_cache_total",
            dimensions: [("worker", w), ("result", "hit")]
        )
        helloVerdictMisses = Counter(
            label: "edgeproxy_clienthello_verdict_cache_total",
            dimensions: [("worker", w), ("result", "miss")]
        )
        handshakes = Self.versions.map { v in
            TicketOutcome.allCases.map { o in
                Counter(
                    label: "edgeproxy_tls_handshakes_total",
                    dimensions: [("worker", w), ("version", v), ("outcome", o.label)]
                )
            }
        }
        ticketsIssued = Counter(label: "edgeproxy_tls_tickets_issued_total", dimensions: [("worker", w)])
        requests = ["1xx", "2xx", "3xx", "4xx", "5xx"].map {
            Counter(label: "edgeproxy_http_requests_total", dimensions: [("worker", w), ("status_class", $0)])
        }
        var ue: [String: Counter] = [:]
        for k in Self.upstreamErrorKinds {
            ue[k] = Counter(label: "edgeproxy_upstream_errors_total", dimensions: [("worker", w), ("kind", k)])
        }
        upstreamErrors = ue
        upstreamStaleClosed = Counter(label: "edgeproxy_upstream_stale_pooled_total", dimensions: [("worker", w)])
        upstreamRetries = Counter(label: "edgeproxy_upstream_retries_total", dimensions: [("worker", w)])
        bytesIn = Counter(label: "edgeproxy_bytes_received_total", dimensions: [("worker", w)])
        bytesOut = Counter(label: "edgeproxy_bytes_sent_total", dimensions: [("worker", w)])
        loopBusySeconds = Gauge(label: "edgeproxy_loop_busy_seconds", dimensions: [("worker", w)])
        tunnelsActive = Gauge(label: "edgeproxy_tunnels_active", dimensions: [("worker", w)])
        tunnelsTotal = Counter(label: "edgeproxy_tunnels_total", dimensions: [("worker", w)])
        tunnelsActive.record(0)
        acceptExhausted = Counter(
            label: "edgeproxy_accept_exhausted_total",
            dimensions: [("listener", "proxy"), ("worker", w)]
        )
    }

    /// A completed handshake; `nanoseconds` since the connection was accepted (loop clock).
    func handshake(version: Int32, outcome: TicketOutcome, nanoseconds: UInt64) {
        let vi: Int
        switch version {
        case 0x0304: vi = 3
        case 0x0303: vi = 2
        case 0x0302: vi = 1
        default: vi = 0
        }
        handshakes[vi][outcome.rawValue].increment()
        latency.handshake(outcome.handshakeKind, nanoseconds: nanoseconds)
    }

    func request(status: Int) {
        let c = status / 100 - 1
        if c >= 0 && c < 5 { requests[c].increment() }
    }

    /// A finished exchange: the status counter and the request-duration histogram. `pool`: `Exchange.originPool`;
    /// `nanoseconds`: since the request head arrived (loop clock).
    func request(status: Int, pool: Int, nanoseconds: UInt64) {
        request(status: status)
        latency.request(pool: pool, nanoseconds: nanoseconds)
    }

    func upstreamError(_ kind: String) { upstreamErrors[kind]?.increment() }

    /// A 101 was forwarded (HTTP/1) or an extended CONNECT answered 200 (HTTP/2).
    func tunnelOpened() {
        tunnelCount += 1
        tunnelsActive.record(tunnelCount)
        tunnelsTotal.increment()
    }

    /// That tunnel ended (either way: both sides done, idle timeout, reset, connection closed).
    func tunnelClosed() {
        tunnelCount -= 1
        tunnelsActive.record(tunnelCount)
    }

    func policyApplied(name: String, enforced: Bool) {
        let c: (Counter, Counter, Counter)
        if let existing = policyCounters[name] {
            c = existing
        } else {
            let d = [("worker", worker), ("policy", name)]
            c = (
                Counter(label: "edgeproxy_policy_matched_total", dimensions: d),
                Counter(label: "edgeproxy_policy_enforced_total", dimensions: d),
                Counter(label: "edgeproxy_policy_observed_total", dimensions: d)
            )
            policyCounters[name] = c
        }
        c.0.increment()
        (enforced ? c.1 : c.2).increment()
    }
}

/// `edgeproxy_proxy_protocol_headers_total{version}` and `edgeproxy_proxy_protocol_rejected_total{reason}`
/// (reason "source": a peer outside proxy_protocol_from; "malformed": a bad, oversized or missing header).
final class ProxyProtocolMetrics {
    private let v1: Counter
    private let v2: Counter
    private let source: Counter
    private let malformed: Counter

    init(worker w: String) {
        v1 = Counter(label: "edgeproxy_proxy_protocol_headers_total", dimensions: [("worker", w), ("version", "1")])
        v2 = Counter(label: "edgeproxy_proxy_protocol_headers_total", dimensions: [("worker", w), ("version", "2")])
        source = Counter(
            label: "edgeproxy_proxy_protocol_rejected_total",
            dimensions: [("worker", w), ("reason", "source")]
        )
        malformed = Counter(
            label: "edgeproxy_proxy_protocol_rejected_total",
            dimensions: [("worker", w), ("reason", "malformed")]
        )
    }

    func accepted(version: Int) { (version == 1 ? v1 : v2).increment() }
    func rejected(reason: String) { (reason == "source" ? source : malformed).increment() }
}
