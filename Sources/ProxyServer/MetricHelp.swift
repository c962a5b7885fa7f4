/// `# HELP` text for every series the process exports through swift-metrics. swift-metrics has no help text and
/// swift-prometheus registers its families with none, so `GET /metrics` adds these lines before each family's
/// `# TYPE` line (scrape time only). `promtool check metrics` rejects a family without help text: a new metric
/// needs an entry here (Tests/Integration/test_metrics_histograms.py runs promtool on a real scrape).
enum MetricHelp {
    static let texts: [String: String] = [
        "edgeproxy_accept_exhausted_total":
            "accept() failures for lack of file descriptors or kernel memory (the listener pauses 100 ms).",
        "edgeproxy_admin_connections_refused_total": "Admin connections answered 503 because 64 were already open.",
        "edgeproxy_admin_unauthorized_total": "Admin requests answered 401 (missing or wrong bearer token).",
        "edgeproxy_bytes_received_total": "Bytes read from clients (TLS payload).",
        "edgeproxy_bytes_sent_total": "Bytes written to clients (TLS payload).",
        "edgeproxy_clienthello_malformed_total": "ClientHellos that could not be parsed (handshake refused).",
        "edgeproxy_clienthello_verdict_cache_total":
            "ClientHellos answered from the per-worker cache of verdicts by hello shape (hit) or parsed in full (miss).",
        "edgeproxy_connections_accepted_total": "Client connections accepted.",
        "edgeproxy_connections_active": "Client connections open now.",
        "edgeproxy_h2_client_resets_total": "HTTP/2 streams the client reset before their response completed.",
        "edgeproxy_h2_connections_total": "HTTP/2 connections (ALPN h2).",
        "edgeproxy_h2_goaway_total": "HTTP/2 connections closed by the proxy with GOAWAY, by reason.",
        "edgeproxy_h2_streams_total": "HTTP/2 streams opened by clients.",
        "edgeproxy_detector_dropped_observations_total":
            "Handshake observations the detector dropped because a worker's ring was full.",
        "edgeproxy_detector_fallbacks_total":
            "Reconnects offering a lower TLS version or TLS_FALLBACK_SCSV soon after an abort after renewal.",
        "edgeproxy_detector_fleet_imported_total": "Flags raised by other instances and applied here (fleet store).",
        "edgeproxy_detector_fleet_rejected_entries_total":
            "Fleet flag entries in Redis that did not authenticate under the wrapping key, by reason (ignored).",
        "edgeproxy_detector_fleet_up": "1 when the detector's fleet store (Redis) answered its last poll, else 0.",
        "edgeproxy_detector_fingerprints": "Fingerprints the detector tracks (top-K, decaying counts).",
        "edgeproxy_detector_flagged": "Fingerprints flagged as intolerant of inline ticket renewal.",
        "edgeproxy_detector_flagged_renewal_aborts": "Decayed aborts after inline renewal of a flagged fingerprint.",
        "edgeproxy_detector_handshakes_total": "Handshakes the detector observed, by kind and result.",
        "edgeproxy_detector_quarantined": "Flagged fingerprints given full handshakes on stale tickets (quarantine).",
        "edgeproxy_http_requests_total": "Requests answered, by status class.",
        "edgeproxy_loop_busy_seconds": "Time the worker's event loop spent handling events since start.",
        "edgeproxy_ocsp_fetch_failures_total": "OCSP responder fetches that failed, by certificate.",
        "edgeproxy_ocsp_next_refresh_seconds": "Seconds until the certificate's OCSP staple is refreshed.",
        "edgeproxy_ocsp_staple_age_seconds": "Age of the OCSP response stapled for the certificate.",
        "edgeproxy_ocsp_staple_valid": "1 when the certificate has a valid OCSP staple, else 0.",
        "edgeproxy_policy_enforced_total": "Handshakes whose ticket decision a policy in enforce mode made, by policy.",
        "edgeproxy_policy_matched_total": "Handshakes whose ClientHello matched a policy, by policy.",
        "edgeproxy_policy_observed_total": "Handshakes matched by a policy in observe mode (logged, not applied).",
        "edgeproxy_proxy_protocol_headers_total": "PROXY protocol headers accepted, by version (1 or 2).",
        "edgeproxy_proxy_protocol_rejected_total":
            "Connections closed for their PROXY header: peer not in proxy_protocol_from, or a bad header.",
        "edgeproxy_reload_failures_total": "Reloads rejected (the running configuration stayed in force).",
        "edgeproxy_reloads_total": "Reloads applied.",
        "edgeproxy_session_cache_entries": "Sessions in the session-ID cache.",
        "edgeproxy_session_cache_evictions_total": "Sessions evicted from the session-ID cache because it was full.",
        "edgeproxy_session_cache_expirations_total": "Sessions removed from the session-ID cache at their timeout.",
        "edgeproxy_session_cache_hits_total": "Session-ID resumption lookups that found the session.",
        "edgeproxy_session_cache_misses_total": "Session-ID resumption lookups that did not find the session.",
        "edgeproxy_session_cache_reserved_bytes": "Memory reserved for the session-ID cache.",
        "edgeproxy_session_cache_stores_total": "Sessions stored in the session-ID cache.",
        "edgeproxy_session_cache_too_large_total": "Sessions not cached because their encoding exceeded 512 bytes.",
        "edgeproxy_session_store_errors_total": "Errors talking to the fleet session store (Redis).",
        "edgeproxy_session_store_fetch_timeouts_total": "Fleet session store lookups that timed out.",
        "edgeproxy_session_store_up": "1 when the fleet session store (Redis) answers, else 0.",
        "edgeproxy_ticket_key_age_seconds": "Age of the ticket key currently encrypting.",
        "edgeproxy_ticket_local_fallback_keys_total": "Local ticket keys made because the fleet had no shared key.",
        "edgeproxy_ticket_store_rejected_entries_total": "Ticket key store entries rejected (bad seal, wrong shape).",
        "edgeproxy_ticket_store_up": "1 when the ticket key source is usable (Redis: reachable), else 0.",
        "edgeproxy_tls_handshake_failures_total": "TLS handshakes that failed.",
        "edgeproxy_tls_handshakes_total": "Completed TLS handshakes, by protocol version and ticket outcome.",
        "edgeproxy_tls_tickets_issued_total": "Session tickets issued (NewSessionTicket messages).",
        "edgeproxy_upstream_addresses": "Addresses the server's host resolves to, by pool and server.",
        "edgeproxy_upstream_ejections_total":
            "Passive ejections of an origin address after failures, by pool and server.",
        "edgeproxy_upstream_errors_total": "Failed exchanges with origins, by kind.",
        "edgeproxy_upstream_health_check_failures_total": "Active health checks that failed, by pool and server.",
        "edgeproxy_upstream_outstanding_requests": "Requests in flight to the server, by pool and server.",
        "edgeproxy_upstream_resolve_failures_total": "DNS resolutions of the server's name that failed.",
        "edgeproxy_tunnels_active": "WebSocket/Upgrade tunnels open now (HTTP/1.1 101 and HTTP/2 extended CONNECT).",
        "edgeproxy_tunnels_total": "WebSocket/Upgrade tunnels opened since start.",
        "edgeproxy_upstream_retries_total": "Exchanges re-sent to an origin after a failed attempt.",
        "edgeproxy_upstream_stale_pooled_total":
            "Pooled keep-alive origin connections found closed when taken for reuse.",
        "edgeproxy_upstream_tls_handshake_failures_total":
            "TLS handshakes with https:// origins that failed, by reason (verify, alert, closed, protocol).",
        "edgeproxy_upstream_tls_handshakes_total":
            "Completed TLS handshakes with https:// origins; resumed=\"true\" reused a session from the pool's cache.",
        "edgeproxy_upstream_usable_addresses":
            "Addresses that may get requests (health up, not ejected), by pool and server.",
    ]

    /// Copies a text exposition, adding `# HELP` before every `# TYPE` line of a family that has none.
    static func annotate(_ text: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count + texts.count * 80)
        let typePrefix = Array("# TYPE ".utf8)
        var previousWasHelp = false
        var start = 0
        while start < text.count {
            let end = text[start...].firstIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? text.count
            let line = text[start..<end]
            if !previousWasHelp, line.starts(with: typePrefix) {
                let nameBytes = line.dropFirst(typePrefix.count).prefix { $0 != UInt8(ascii: " ") }
                if let help = texts[String(decoding: nameBytes, as: UTF8.self)] {
                    out.append(contentsOf: "# HELP ".utf8)
                    out.append(contentsOf: nameBytes)
                    out.append(UInt8(ascii: " "))
                    out.append(contentsOf: help.utf8)
                    out.append(UInt8(ascii: "\n"))
                }
            }
            previousWasHelp = line.starts(with: Array("# HELP ".utf8))
            out.append(contentsOf: line)
            start = end
        }
        return out
    }
}
