import ProxyConfig
import ProxyTLS

/// Formats one access-log JSON line per finished request (byte-level, into the worker's reusable buffer), with the
/// fields `[access_log] fields` lists, in that order.
enum AccessLogLine {
    static func append(
        connection c: ClientConnection,
        exchange ex: Exchange,
        to out: inout [UInt8],
        clock: inout LogClock,
        now: UInt64,
        h2: Bool = false
    ) {
        // Written straight into the worker's line buffer (taken over while writing, so appends do not copy).
        var w = JSONWriter(appendingTo: out)
        out = []
        let s = c.tlsState
        w.beginObject()
        for f in c.worker.accessLog?.fields.fields ?? AccessLogFields.default.fields {
            switch f {
            case .time: clock.appendTimestamp(into: &w, key: "time")
            case .client: w.field("client", bytes: c.peerText)
            case .sni: w.field("sni", cString: c.serverNamePointer)
            case .tls: w.field("tls", static: c.tlsVersionStatic)
            case .cipher: w.field("cipher", cString: c.cipherNamePointer)
            case .resumed: w.field("resumed", c.resumed)
            case .ticket: w.field("ticket", static: c.outcome.staticLabel)
            case .ticketKey: w.field("ticket_key", s.keyName)
            case .ja3: w.field("ja3", s.ja3Hash)
            case .ja4: w.field("ja4", s.ja4)
            case .policy: w.field("policy", s.policyName)
            case .policyMode:
                if s.policyName == nil {
                    w.field("policy_mode", nil as String?)
                } else {
                    w.field("policy_mode", static: s.policyEnforced ? "enforce" : "observe")
                }
            case .policyObserved: w.field("policy_observed", s.observedPolicyName)
            case .tag: w.field("tag", s.tag)
            case .protocol:
                w.field("protocol", static: h2 ? "HTTP/2" : (ex.version == .http1_0 ? "HTTP/1.0" : "HTTP/1.1"))
            case .method: w.field("method", bytes: ex.methodBytes)
            case .path: w.field("path", bytes: ex.target)
            case .host: w.field("host", bytes: ex.logHost)
            case .userAgent: optionalBytes(&w, "user_agent", ex.logUserAgent)
            case .referer: optionalBytes(&w, "referer", ex.logReferer)
            case .status: w.field("status", ex.status)
            case .bytesIn: w.field("bytes_in", ex.requestBodyBytes)
            case .bytesOut: w.field("bytes_out", ex.responseBodyBytes)
            case .upstream:
                let pools = c.worker.upstreams.snapshot.pools
                if ex.originPool >= 0 && ex.originPool < pools.count && ex.originIndex >= 0
                    && ex.originIndex < pools[ex.originPool].endpoints.count
                {
                    let pool = pools[ex.originPool]
                    w.field("upstream", pool.servers[pool.endpoints[ex.originIndex].server].url.description)
                } else {
                    w.field("upstream", ex.local ? "builtin" : nil)
                }
            case .upstreamAddr: w.field("upstream_addr", ex.answeredBy.map { "\($0)" })
            case .upstreamStatus:
                if ex.upstreamStatus > 0 {
                    w.field("upstream_status", ex.upstreamStatus)
                } else {
                    w.field("upstream_status", nil as String?)
                }
            case .durationMs: w.field("duration_ms", millisFromNanos: now &- ex.startedAt)
            }
        }
        // Only when the response did not reach the client whole (reset, origin died, cut by shutdown).
        if ex.truncated { w.field("truncated", true) }
        // A WebSocket/Upgrade tunnel, logged when it ended: bytes_in/bytes_out are the tunnel's bytes each way.
        if ex.tunnel { w.field("tunnel", true) }
        w.endObject()
        w.bytes.append(10)
        out = w.bytes
    }

    private static func optionalBytes(_ w: inout JSONWriter, _ key: StaticString, _ v: [UInt8]?) {
        if let v { w.field(key, bytes: v) } else { w.field(key, nil as String?) }
    }
}
