import CoreMetrics

/// Metrics of one configured server of one pool, with the fixed labels `pool` and `server` (its URL). Created when a
/// snapshot is built; the backend (Prometheus) hands back the same series for the same labels, so reloads and
/// re-resolutions keep counting on the same series. Gauges are written by the resolver thread once per second;
/// `ejections` is incremented by the worker whose report ejected an address.
final class ServerMetrics: Sendable {
    /// Addresses the server's host currently resolves to.
    let addresses: Gauge
    /// Of those, how many may get requests (health up and not ejected).
    let usable: Gauge
    /// Requests in flight to the server, all workers together.
    let outstanding: Gauge
    /// Resolutions of the name that failed (the last good addresses stay in use).
    let resolveFailures: Counter
    /// Health checks that failed.
    let checkFailures: Counter
    /// Passive ejections.
    let ejections: Counter

    init(pool: String, server: String) {
        let d = [("pool", pool), ("server", server)]
        addresses = Gauge(label: "edgeproxy_upstream_addresses", dimensions: d)
        usable = Gauge(label: "edgeproxy_upstream_usable_addresses", dimensions: d)
        outstanding = Gauge(label: "edgeproxy_upstream_outstanding_requests", dimensions: d)
        resolveFailures = Counter(label: "edgeproxy_upstream_resolve_failures_total", dimensions: d)
        checkFailures = Counter(label: "edgeproxy_upstream_health_check_failures_total", dimensions: d)
        ejections = Counter(label: "edgeproxy_upstream_ejections_total", dimensions: d)
    }
}
