import Foundation

/// The JSON a run writes (--json) — see bench/README.md for the fields. Built once at the end, off the hot path.
struct BenchReport: Encodable {
    struct Scope: Encodable {
        var connections: Int
        /// Handshakes completed, including those of connections that failed later (the server's view).
        var handshakes: Int
        var handshakesResumed: Int
        /// handshakes_resumed / handshakes
        var handshakeResumedFraction: Double
        /// NewSessionTickets received per completed handshake (all connections)
        var ticketsPerHandshake: Double
        var full: Int
        var resumed: Int
        var resumeAttempts: Int
        /// resumed / connections
        var resumedFraction: Double
        /// resumed / connections that presented a ticket
        var resumedFractionOfAttempts: Double?
        /// NewSessionTicket messages received (wire count) per connection
        var ticketsPerConnection: Double
        var ticketsPerFull: Double?
        var ticketsPerResumed: Double?
        var tickets: Int
        /// OpenSSL new-session callbacks per connection (TLS 1.2 resumptions never call it)
        var sessionCallbacksPerConnection: Double
        var requests: Int
        var badStatus: Int
        var errors: [String: Int]
        var errorTotal: Int

        init(_ c: Counters) {
            connections = c.connections
            handshakes = c.handshakes
            handshakesResumed = c.handshakesResumed
            handshakeResumedFraction = c.handshakes > 0 ? Double(c.handshakesResumed) / Double(c.handshakes) : 0
            ticketsPerHandshake = c.handshakes > 0 ? Double(c.handshakeTickets) / Double(c.handshakes) : 0
            full = c.full
            resumed = c.resumed
            resumeAttempts = c.attempts
            resumedFraction = c.connections > 0 ? Double(c.resumed) / Double(c.connections) : 0
            resumedFractionOfAttempts = c.attempts > 0 ? Double(c.resumed) / Double(c.attempts) : nil
            tickets = c.tickets
            ticketsPerConnection = c.connections > 0 ? Double(c.tickets) / Double(c.connections) : 0
            ticketsPerFull = c.full > 0 ? Double(c.ticketsOnFull) / Double(c.full) : nil
            ticketsPerResumed = c.resumed > 0 ? Double(c.ticketsOnResumed) / Double(c.resumed) : nil
            sessionCallbacksPerConnection =
                c.connections > 0 ? Double(c.sessionCallbacks) / Double(c.connections) : 0
            requests = c.requests
            badStatus = c.badStatus
            var e: [String: Int] = [:]
            for (i, k) in ErrorKind.allCases.enumerated() { e[k.rawValue] = c.errors[i] }
            errors = e
            errorTotal = c.errorTotal
        }
    }

    struct Settings: Encodable {
        var target: String
        var sni: String?
        var connections: Int
        var threads: Int
        var durationS: Double
        var warmupS: Double
        var mode: String
        var resumeRatio: Double
        var tls: String
        var requestsPerConnection: Int
        var path: String
        var schannelShare: Double
        var shapes: [String]
        var holdS: Double?
    }

    struct Latency: Encodable {
        var handshake: LatencySummary
        var request: LatencySummary
        var connection: LatencySummary
    }

    struct Hold: Encodable {
        var held: Int
        var failed: Int
        var closedByPeer: Int
    }

    var tool = "edgeproxy-bench"
    var settings: Settings
    var windowS: Double
    var elapsedS: Double
    var connPerS: Double
    var reqPerS: Double
    /// Counters for connections that completed inside the measurement window.
    var window: Scope
    /// Counters for the whole run (warm-up, window and drain): what the server saw.
    var total: Scope
    var byShape: [String: Scope]
    var latencyMs: Latency
    var errorSamples: [String: String]
    var negotiated: [String: String]
    var unfinishedAtEnd: Int
    var clientCPUS: Double
    var hold: Hold?

    /// The one-line summary scripts grep (`RESULT key=value ...`).
    var resultLine: String {
        func f(_ v: Double?, _ d: Int = 4) -> String { v.map { String(format: "%.\(d)f", $0) } ?? "-" }
        var parts = [
            "RESULT", "mode=\(settings.mode)", "tls=\(settings.tls)", "conc=\(settings.connections)",
            "window_s=\(f(windowS, 2))", "conns=\(window.connections)", "conns_per_s=\(f(connPerS, 1))",
            "req_per_s=\(f(reqPerS, 1))", "resumed_frac=\(f(window.resumedFraction))",
            "tickets_per_conn=\(f(window.ticketsPerConnection, 3))",
            "tickets_per_full=\(f(window.ticketsPerFull, 3))", "tickets_per_resumed=\(f(window.ticketsPerResumed, 3))",
            "hs_p50_ms=\(f(latencyMs.handshake.p50, 3))", "hs_p99_ms=\(f(latencyMs.handshake.p99, 3))",
            "conn_p50_ms=\(f(latencyMs.connection.p50, 3))", "conn_p90_ms=\(f(latencyMs.connection.p90, 3))",
            "conn_p99_ms=\(f(latencyMs.connection.p99, 3))", "conn_max_ms=\(f(latencyMs.connection.max, 3))",
            "errors=\(window.errorTotal)", "bad_status=\(window.badStatus)",
            "total_conns=\(total.connections)", "total_handshakes=\(total.handshakes)",
            "total_handshakes_resumed=\(total.handshakesResumed)", "total_resumed=\(total.resumed)",
            "total_tickets=\(total.tickets)",
            "total_errors=\(total.errorTotal)", "client_cpu_s=\(f(clientCPUS, 2))",
        ]
        for (k, v) in window.errors.sorted(by: { $0.key < $1.key }) where v > 0 { parts.append("err_\(k)=\(v)") }
        if let hold {
            parts += ["held=\(hold.held)", "hold_failed=\(hold.failed)", "hold_closed=\(hold.closedByPeer)"]
        }
        return parts.joined(separator: " ")
    }

    func json() throws -> Data {
        let enc = JSONEncoder()
        enc.keyEncodingStrategy = .convertToSnakeCase
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try enc.encode(self)
    }
}
