import CoreMetrics
import Metrics
import ProxyHTTP2

/// HTTP/2 counters of one worker (fixed labels, created once per worker on first use).
final class H2Metrics {
    let connections: Counter
    let streams: Counter
    /// Streams the client reset before their response completed.
    let clientResets: Counter
    /// Connections closed by the session: GOAWAY for abuse or protocol errors, by kind.
    private let failures: [String: Counter]

    static let failureKinds: [H2Failure] = [
        .badPreface, .protocolError, .rapidReset, .controlFlood, .continuationFlood, .headerBomb, .ackFlood,
        .zeroWindow,
    ]

    init(worker w: String) {
        connections = Counter(label: "edgeproxy_h2_connections_total", dimensions: [("worker", w)])
        streams = Counter(label: "edgeproxy_h2_streams_total", dimensions: [("worker", w)])
        clientResets = Counter(label: "edgeproxy_h2_client_resets_total", dimensions: [("worker", w)])
        var f: [String: Counter] = [:]
        for k in Self.failureKinds {
            f[k.label] = Counter(label: "edgeproxy_h2_goaway_total", dimensions: [("worker", w), ("reason", k.label)])
        }
        failures = f
    }

    func failure(_ f: H2Failure) { failures[f.label]?.increment() }
}
