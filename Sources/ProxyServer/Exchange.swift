import ProxyCore
import ProxyEventLoop
import ProxyHTTP1

/// What a session records of the request/response exchange it is working on (for the access log, metrics and its
/// own framing decisions), stored inline in the connection or HTTP/2 stream and reset between requests (byte
/// arrays keep their capacity). The origin side of the exchange is the session's `OriginForwarder`.
struct Exchange {
    /// What an exchange reads as before a connection's first request (nothing active).
    static let idle = Exchange()

    var active = false
    /// Answered by the proxy itself (built-in page, or a local error) rather than an origin.
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
    /// The origin (server index) that answered or was tried last; -1: none.
    var originIndex = -1
    /// The pool (index in the worker's upstream snapshot) `originIndex` is an endpoint of.
    var originPool = -1
    var responseHeadSent = false
    var responseChunked = false
    var responseEnded = false
    /// Response-body bytes taken from the origin (or the local answer) for the client.
    var responseBodyBytes = 0
    /// The response did not complete toward the client (aborted, reset, cut by shutdown).
    var truncated = false
    /// The exchange became a tunnel (101): logged with `"tunnel":true` when the tunnel ends.
    var tunnel = false
    var status = 0
    var startedAt: UInt64 = 0
    /// Request fields copied for the access log (`host`, `user_agent`, `referer`; capacity reused, cut at 512 bytes).
    var logHost: [UInt8] = []
    var logUserAgent: [UInt8]? = nil
    var logReferer: [UInt8]? = nil
    /// The origin address whose response head arrived and its status (access log `upstream_addr`/`_status`).
    var answeredBy: SocketAddress? = nil
    var upstreamStatus = 0

    /// `logFields`: copy the request fields only the access log prints (off when there is no access log: two
    /// header lookups and copies per request that nothing reads).
    mutating func begin(head: RequestHead, now: UInt64, logFields: Bool) {
        start(
            method: head.method,
            methodBytes: head.methodBytes,
            target: head.target,
            isHEAD: head.method == .head,
            version: head.version,
            requestChunked: head.isChunked,
            requestEnded: false,
            now: now,
            logFields: logFields
        )
        if logFields { captureLogFields(head.headers, host: head.host ?? []) }
    }

    /// Copies the request fields the access log may print (before the head's bytes are reused).
    mutating func captureLogFields(_ headers: HTTPHeaders, host: some Collection<UInt8>) {
        logHost.removeAll(keepingCapacity: true)
        logHost.append(contentsOf: host.prefix(512))
        Self.copy(headers.first("user-agent"), into: &logUserAgent)
        Self.copy(headers.first("referer"), into: &logReferer)
    }

    /// The origin's response head arrived over `transport` (an `UpstreamConnection` in production).
    mutating func originAnswered(status: Int, transport: AnyObject?) {
        upstreamStatus = status
        answeredBy = (transport as? UpstreamConnection)?.address
    }

    private static func copy(_ v: ArraySlice<UInt8>?, into dst: inout [UInt8]?) {
        guard let v else {
            dst = nil
            return
        }
        var d = dst ?? []
        dst = nil
        d.removeAll(keepingCapacity: true)
        d.append(contentsOf: v.prefix(512))
        dst = d
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
        now: UInt64,
        logFields: Bool
    ) {
        active = true
        local = false
        self.method = method
        self.isHEAD = isHEAD
        self.version = version
        if logFields {
            // Only the access log reads these copies; without one they are not made (two array clears and
            // appends per request).
            methodBytes.removeAll(keepingCapacity: true)
            methodBytes.append(contentsOf: m)
            target.removeAll(keepingCapacity: true)
            target.append(contentsOf: t.prefix(2048))
        }
        self.requestChunked = requestChunked
        self.requestEnded = requestEnded
        requestBodyBytes = 0
        originIndex = -1
        originPool = -1
        responseHeadSent = false
        responseChunked = false
        responseEnded = false
        responseBodyBytes = 0
        truncated = false
        tunnel = false
        status = 0
        startedAt = now
        answeredBy = nil
        upstreamStatus = 0
    }
}
