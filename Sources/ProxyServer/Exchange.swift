import ProxyCore
import ProxyHTTP1

/// The request/response exchange a client connection is working on, stored inline in the connection and reset
/// between requests (buffers go back to the worker's pools; byte arrays keep their capacity).
struct Exchange {
    /// What an exchange reads as before a connection's first request (nothing active).
    // SAFETY: never mutated after initialisation; readers only borrow it on their own thread.
    nonisolated(unsafe) static let idle = Exchange()

    var active = false
    /// Answered by the built-in page (no origin configured).
    var local = false
    var method: HTTPMethod = .get
    var isHEAD = false
    var version: HTTPVersion = .http1_1
    /// Method and target copied for the access log (capacity reused).
    var methodBytes: [UInt8] = []
    var target: [UInt8] = []
    var requestChunked = false
    var requestEnded = false
    var requestBodyBytes = 0
    /// Idempotent and bodiless: may be re-sent to another origin while no response byte has arrived.
    var retryable = false
    var attempts = 0
    var originIndex = -1
    var upstream: UpstreamConnection?
    /// Request bytes toward the origin; `upSent` of them were written but are kept while `retryable`.
    var upOut: ByteBuffer?
    var upSent = 0
    var upstreamDeadline: UInt64 = 0
    var respParser = ResponseParser()
    var respParserPending = false
    var responseHeadSent = false
    var responseChunked = false
    var responseEnded = false
    var responseBodyBytes = 0
    var status = 0
    var startedAt: UInt64 = 0

    mutating func begin(head: RequestHead, now: UInt64) {
        let retryable: Bool
        switch head.method {
        case .get, .head, .options, .trace, .put, .delete: retryable = !head.hasBody
        default: retryable = false
        }
        start(
            method: head.method,
            methodBytes: head.methodBytes,
            target: head.target,
            isHEAD: head.method == .head,
            version: head.version,
            requestChunked: head.isChunked,
            requestEnded: false,
            retryable: retryable,
            now: now
        )
    }

    /// Resets the exchange for a new request (HTTP/1 `begin` and HTTP/2 `beginH2` differ only in how they
    /// derive these values). Byte arrays keep their capacity: no allocation per request once warmed up.
    mutating func start(
        method: HTTPMethod,
        methodBytes m: some Collection<UInt8>,
        target t: some Collection<UInt8>,
        isHEAD: Bool,
        version: HTTPVersion,
        requestChunked: Bool,
        requestEnded: Bool,
        retryable: Bool,
        now: UInt64
    ) {
        active = true
        local = false
        self.method = method
        self.isHEAD = isHEAD
        self.version = version
        methodBytes.removeAll(keepingCapacity: true)
        methodBytes.append(contentsOf: m)
        target.removeAll(keepingCapacity: true)
        target.append(contentsOf: t.prefix(2048))
        self.requestChunked = requestChunked
        self.requestEnded = requestEnded
        requestBodyBytes = 0
        self.retryable = retryable
        attempts = 0
        originIndex = -1
        upSent = 0
        if !respParser.isIdle { respParser = ResponseParser() }
        respParserPending = false
        responseHeadSent = false
        responseChunked = false
        responseEnded = false
        responseBodyBytes = 0
        status = 0
        startedAt = now
    }

    /// How many request-body bytes may be handed to the parser now.
    func bodyRoom(worker: Worker) -> Int {
        if local { return Int.max }
        guard let out = upOut else { return 0 }
        // Room for chunk framing ("<hex>\r\n" + "\r\n") when re-chunking.
        return out.freeCount - chunkFramingReserve
    }

    /// Response bytes arrived: the read deadline restarts, and the request reached the origin, so it is no longer
    /// retryable (the bytes kept for a retry are released).
    mutating func originAnswered(readDeadline: UInt64) {
        upstreamDeadline = readDeadline
        if retryable {
            retryable = false
            if let out = upOut, upSent > 0 {
                out.consume(upSent)
                upSent = 0
            }
        }
    }

    /// Detaches the origin connection: back to the pool when reusable, else closed.
    mutating func dropUpstream(worker: Worker, reusable: Bool) {
        guard let u = upstream else { return }
        upstream = nil
        if reusable && !u.closed && !u.peerClosed {
            worker.returnIdleUpstream(u)
        } else {
            u.close()
        }
    }

    mutating func reset(worker: Worker) {
        active = false
        if let b = upOut {
            worker.bigBufferPool.release(b)
            upOut = nil
        }
        upSent = 0
    }
}

/// Bytes kept free in a destination buffer for chunk framing (`<hex>\r\n` + `\r\n`) when re-chunking.
let chunkFramingReserve = 24
