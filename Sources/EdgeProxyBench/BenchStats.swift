/// Why a connection did not complete.
enum ErrorKind: String, CaseIterable, Sendable {
    /// socket()/connect() failed or the connection was refused/reset before the handshake.
    case connect
    /// The TLS handshake failed (alert, bad message, peer closed during it).
    case handshake
    /// A TLS read or write failed after the handshake.
    case tlsIO = "tls_io"
    /// The server closed the connection before the last response was complete.
    case closedEarly = "closed_early"
    /// The response was not HTTP/1.1 this tool can frame.
    case http = "http_parse"
    /// The per-connection deadline (--timeout) passed.
    case timeout
}

/// Counters for one scope (the measurement window, or the whole run).
struct Counters {
    var connections = 0
    /// Handshakes completed, whether or not the connection then completed (what the server counts).
    var handshakes = 0
    var handshakesResumed = 0
    /// NewSessionTickets received on every connection whose handshake completed.
    var handshakeTickets = 0
    var full = 0
    var resumed = 0
    /// Connections that presented a ticket.
    var attempts = 0
    var tickets = 0
    var ticketsOnFull = 0
    var ticketsOnResumed = 0
    var sessionCallbacks = 0
    var requests = 0
    var badStatus = 0
    var errors = [Int](repeating: 0, count: ErrorKind.allCases.count)

    mutating func add(_ o: Counters) {
        connections += o.connections
        handshakes += o.handshakes
        handshakesResumed += o.handshakesResumed
        handshakeTickets += o.handshakeTickets
        full += o.full
        resumed += o.resumed
        attempts += o.attempts
        tickets += o.tickets
        ticketsOnFull += o.ticketsOnFull
        ticketsOnResumed += o.ticketsOnResumed
        sessionCallbacks += o.sessionCallbacks
        requests += o.requests
        badStatus += o.badStatus
        for i in errors.indices { errors[i] += o.errors[i] }
    }

    var errorTotal: Int { errors.reduce(0, +) }
}

/// One worker's results: window and whole-run counters, per-shape counters and latency samples (ms).
struct WorkerStats {
    var window = Counters()
    var total = Counters()
    var byShape: [Counters]
    var handshakeMs: [Float] = []
    var requestMs: [Float] = []
    var connectionMs: [Float] = []
    /// First message seen per error kind (OpenSSL reason or errno text).
    var errorSamples: [String: String] = [:]
    /// "full"/"resumed" (prefixed by the shape name for non-default shapes) → version/cipher/ALPN seen first.
    var negotiated: [String: String] = [:]
    // hold mode
    var held = 0
    var holdFailed = 0
    var holdClosed = 0

    init(shapes: Int) {
        byShape = Array(repeating: Counters(), count: shapes)
        handshakeMs.reserveCapacity(1 << 16)
        connectionMs.reserveCapacity(1 << 16)
        requestMs.reserveCapacity(1 << 16)
    }

    mutating func merge(_ o: WorkerStats) {
        window.add(o.window)
        total.add(o.total)
        for i in byShape.indices { byShape[i].add(o.byShape[i]) }
        handshakeMs += o.handshakeMs
        requestMs += o.requestMs
        connectionMs += o.connectionMs
        for (k, v) in o.errorSamples where errorSamples[k] == nil { errorSamples[k] = v }
        for (k, v) in o.negotiated where negotiated[k] == nil { negotiated[k] = v }
        held += o.held
        holdFailed += o.holdFailed
        holdClosed += o.holdClosed
    }
}

/// p50/p90/p99/max/mean of a sample set, in ms.
struct LatencySummary: Encodable {
    var count: Int
    var p50: Double
    var p90: Double
    var p99: Double
    var max: Double
    var mean: Double

    init(_ samples: [Float]) {
        let s = samples.sorted()
        count = s.count
        func at(_ q: Double) -> Double {
            guard !s.isEmpty else { return 0 }
            // nearest rank: the smallest sample with at least q of the samples at or below it
            let rank = Swift.max(1, Int((q * Double(s.count)).rounded(.up)))
            return Double(s[Swift.min(rank, s.count) - 1])
        }
        p50 = at(0.50)
        p90 = at(0.90)
        p99 = at(0.99)
        max = Double(s.last ?? 0)
        mean = s.isEmpty ? 0 : s.reduce(0.0) { $0 + Double($1) } / Double(s.count)
    }
}
