import ProxyTLS

/// Formats one access-log JSON line per finished request (byte-level, into the worker's reusable buffer).
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
        clock.appendTimestamp(into: &w, key: "time")
        w.field("client", bytes: c.peerText)
        w.field("sni", cString: c.serverNamePointer)
        w.field("tls", static: c.tlsVersionStatic)
        w.field("cipher", cString: c.cipherNamePointer)
        w.field("resumed", c.resumed)
        w.field("ticket", static: c.outcome.staticLabel)
        w.field("ticket_key", s.keyName)
        w.field("ja3", s.ja3Hash)
        w.field("ja4", s.ja4)
        w.field("policy", s.policyName)
        if s.policyName == nil {
            w.field("policy_mode", nil as String?)
        } else {
            w.field("policy_mode", static: s.policyEnforced ? "enforce" : "observe")
        }
        w.field("policy_observed", s.observedPolicyName)
        w.field("tag", s.tag)
        w.field("protocol", static: h2 ? "h2" : (ex.version == .http1_0 ? "HTTP/1.0" : "HTTP/1.1"))
        w.field("method", bytes: ex.methodBytes)
        w.field("path", bytes: ex.target)
        w.field("status", ex.status)
        w.field("bytes_in", ex.requestBodyBytes)
        w.field("bytes_out", ex.responseBodyBytes)
        let pools = c.worker.upstreams.snapshot.pools
        if ex.originPool >= 0 && ex.originPool < pools.count && ex.originIndex >= 0
            && ex.originIndex < pools[ex.originPool].endpoints.count
        {
            let pool = pools[ex.originPool]
            w.field("upstream", pool.servers[pool.endpoints[ex.originIndex].server].url.description)
        } else {
            w.field("upstream", ex.local ? "builtin" : nil)
        }
        w.field("duration_ms", millisFromNanos: now &- ex.startedAt)
        // Only when the response did not reach the client whole (reset, origin died, cut by shutdown).
        if ex.truncated { w.field("truncated", true) }
        w.endObject()
        w.bytes.append(10)
        out = w.bytes
    }
}
