import ProxyCore
import ProxyHTTP1

/// Bytes kept free in a destination buffer for chunk framing when re-chunking a body: `<up to 16 hex>\r\n` and
/// the chunk's closing `\r\n`. The one framing reserve for request bodies (toward the origin) and HTTP/1 response
/// bodies (toward the client).
public let chunkFramingReserve = 24

/// Timeouts of one exchange with an origin, in nanoseconds (nginx's `proxy_connect_timeout`,
/// `proxy_send_timeout`, `proxy_read_timeout` split).
public struct ForwarderTimeouts: Sendable, Equatable {
    /// A pending connect.
    public var connect: UInt64 = 5_000_000_000
    /// Request bytes waiting for the origin to accept them (its socket buffer stays full this long).
    public var send: UInt64 = 60_000_000_000
    /// Between two reads from the origin, while the request has been sent (or the response is streaming) and the
    /// client has room for more. Time spent waiting for the client (slow upload, full client buffers) never counts.
    public var read: UInt64 = 60_000_000_000
    /// A tunnel (after 101) in which no byte moved in either direction (HAProxy's `timeout tunnel`, nginx's
    /// `proxy_read_timeout` on an upgraded connection): both sides are closed.
    public var tunnelIdle: UInt64 = 60_000_000_000
    public init() {}
    public init(connect: UInt64, send: UInt64, read: UInt64, tunnelIdle: UInt64 = 60_000_000_000) {
        self.connect = connect
        self.send = send
        self.read = read
        self.tunnelIdle = tunnelIdle
    }
}

/// The one origin forwarder: drives one request/response exchange with an origin over HTTP/1.1 for whichever
/// protocol session the client speaks (h2o's `lib/core/proxy.c`, pingora's `proxy_common` are the model).
///
/// It owns the connect, the request bytes toward the origin (head and body, re-chunked when the length is
/// unknown), response parsing, retry/failover, the origin-side timeouts and the origin side of backpressure.
/// The session hands it a request head and body bytes and receives the response through `ForwarderSink`.
/// Sans-IO with respect to sockets: it talks to `OriginTransport`/`OriginConnector`, so a unit test drives it
/// with a scripted origin. One forwarder per HTTP/1 connection or HTTP/2 stream, reused across exchanges.
///
/// Tunnels: when the session marks the request as an upgrade (`begin(upgrade: true)`) and the origin answers
/// `101 Switching Protocols`, the exchange becomes a byte tunnel in the same buffers and with the same
/// backpressure: the session's request-body calls carry the client's bytes (unframed), the sink's body calls the
/// origin's. Each side's end is passed on as a half-close (`endTunnelUpstream` → `shutdownWrite` toward the
/// origin; origin EOF → `forwarderTunnelOriginDone`), and the tunnel ends when both have, or after
/// `timeouts.tunnelIdle` without a byte moving. Its origin connection is never pooled again.
public final class OriginForwarder {
    /// Where the exchange is. `sending` and the response states can overlap (an origin may answer before the
    /// request body ended); the state follows the response side once a head arrived.
    public enum State: Equatable, Sendable {
        case idle
        case connecting
        /// Connected; request bytes (head or body) are still to be written.
        case sending
        /// The whole request was written; waiting for the response head.
        case awaitingHead
        /// The response head was delivered; body bytes flow.
        case streaming
        /// A 101 was delivered: raw bytes flow both ways until both sides ended.
        case tunnel
        case done
        case failed
    }

    /// How a failed attempt ended, for the retry rule.
    public enum FailedAttempt: Equatable, Sendable {
        /// The connect failed: nothing reached the origin.
        case connectFailed
        /// A pooled (reused) connection was dead before it accepted any byte of this request: nothing reached
        /// the origin.
        case deadBeforeSend
        /// The connection failed after request bytes were written, before any response byte: the origin may have
        /// seen the request.
        case failedAfterSend(reused: Bool)
        /// No response head within the read timeout.
        case timedOutBeforeHead
        /// Response bytes had arrived.
        case responseStarted
    }

    /// What the retry rule decided.
    public enum RetryDecision: Equatable, Sendable {
        case fail
        /// Try again, on any server (a fresh or pooled connection).
        case retry
        /// Try again on a server not tried yet.
        case retryOtherServer
    }

    /// The one retry rule (both protocols). A request is re-sent only when its bytes are still held
    /// (`replayable`), no response byte arrived, and either nothing reached an origin, or the method is
    /// idempotent (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE). A reused keep-alive connection that
    /// fails before the response is the classic race with the origin's idle close: retried on any server
    /// (idempotent only, as Go's and browsers' clients do); a fresh connection that fails or a hung origin is
    /// retried only on another server, so one bad origin is not hit twice.
    public static func retryDecision(_ attempt: FailedAttempt, idempotent: Bool, replayable: Bool) -> RetryDecision {
        guard replayable else { return .fail }
        switch attempt {
        case .connectFailed, .deadBeforeSend: return .retry
        case .failedAfterSend(let reused):
            guard idempotent else { return .fail }
            return reused ? .retry : .retryOtherServer
        case .timedOutBeforeHead: return idempotent ? .retryOtherServer : .fail
        case .responseStarted: return .fail
        }
    }

    public private(set) var state = State.idle
    // SAFETY: the sink (a client connection or HTTP/2 stream) owns this forwarder and detaches (`abandon`/`reset`)
    // before it is released, so the reference never dangles; unowned(unsafe) avoids refcounting per event.
    public unowned(unsafe) var sink: (any ForwarderSink)?
    public let connector: any OriginConnector
    private let bufferPool: BufferPool
    public var timeouts: ForwarderTimeouts

    /// The origin connection in use.
    public private(set) var transport: (any OriginTransport)?
    /// The request toward the origin; `upSent` bytes of it were written but are kept while `replayable`.
    private var upOut: ByteBuffer?
    private var upSent = 0
    /// The request's bytes are all still held (a retry can re-send them).
    public private(set) var replayable = true
    public private(set) var idempotent = false
    public private(set) var isHEAD = false
    public private(set) var requestChunked = false
    /// The client's request ended (all body bytes handed over).
    public private(set) var requestEnded = false
    private var finalChunkQueued = false
    /// Request-body bytes handed over by the session.
    public private(set) var requestBodyBytes = 0

    private var parser = ResponseParser()
    private var parserPending = false
    /// A response byte arrived on the current connection (the request reached an origin).
    private var answered = false
    public private(set) var status = 0
    public private(set) var responseBodyBytes = 0
    /// Trailer fields of the last chunked response (valid after `forwarderResponseEnd` until the next exchange).
    public var responseTrailers: HTTPHeaders { parser.trailers }
    /// The origin is not read because the sink has no room.
    public private(set) var pausedBySink = false

    /// The request asks to switch protocols: a 101 answer makes the exchange a tunnel.
    public private(set) var upgradeRequested = false
    /// The client's side of the tunnel ended (it sends nothing more).
    public private(set) var tunnelClientEnded = false
    /// The origin's write side was shut down after the client's end.
    private var tunnelUpShut = false
    /// The origin's EOF was passed on to the sink.
    public private(set) var tunnelOriginEnded = false
    public var isTunnel: Bool { state == .tunnel }

    /// Attempts so far and the servers they went to (capacity reused across exchanges).
    public private(set) var attempts = 0
    public private(set) var triedServers: [Int] = []
    /// The next attempt must go to a server not in `triedServers`.
    public private(set) var needsOtherServer = false
    /// The server of the last attempt (-1: none).
    public private(set) var server = -1
    /// The connector could not open a socket for lack of local resources (descriptors, memory, local ports): no
    /// origin is at fault and none would do better, so the exchange ends with 503 instead of 502.
    public var connectFailedLocally = false
    /// Routing input for the connector: which pool (set by the session at `begin`), and a hash key for
    /// consistent hashing (0 when unused).
    public var pool = 0
    public var hashKey: UInt64 = 0
    /// The client connection this forwarder serves (set once by the session that creates it).
    // SAFETY: the client connection owns its sessions and their forwarders, and abandons them before it is freed.
    public unowned(unsafe) var client: (any OriginClient)?

    private var now: UInt64 = 0
    private var phaseStarted: UInt64 = 0
    private var lastRead: UInt64 = 0
    private var lastWrite: UInt64 = 0

    public init(connector: any OriginConnector, bufferPool: BufferPool, timeouts: ForwarderTimeouts) {
        self.connector = connector
        self.bufferPool = bufferPool
        self.timeouts = timeouts
    }

    /// True from `begin` until the exchange is done or failed.
    public var isActive: Bool {
        switch state {
        case .idle, .done, .failed: return false
        default: return true
        }
    }

    // MARK: the session's side

    /// Starts an exchange. The session then writes the request head with `appendHead` and calls `start`.
    /// `upgrade`: the head carries `Connection: upgrade` + `Upgrade` (the request itself must be bodiless).
    public func begin(
        method: HTTPMethod,
        isHEAD: Bool,
        requestChunked: Bool,
        requestEnded: Bool,
        upgrade: Bool = false,
        now: UInt64
    ) {
        precondition(transport == nil, "begin while an origin connection is attached")
        state = .idle
        upgradeRequested = upgrade
        tunnelClientEnded = false
        tunnelUpShut = false
        tunnelOriginEnded = false
        self.now = now
        idempotent = method.isIdempotent  // classified once, by the session that parsed the request
        self.isHEAD = isHEAD
        self.requestChunked = requestChunked
        self.requestEnded = requestEnded
        finalChunkQueued = false
        requestBodyBytes = 0
        replayable = true
        upSent = 0
        if upOut == nil { upOut = bufferPool.acquire() } else { upOut!.clear() }
        parser.resetUnlessIdle()
        parserPending = false
        answered = false
        status = 0
        responseBodyBytes = 0
        pausedBySink = false
        attempts = 0
        triedServers.removeAll(keepingCapacity: true)
        needsOtherServer = false
        connectFailedLocally = false
        server = -1
        hashKey = 0
    }

    /// Appends request-head bytes (already serialised for HTTP/1.1). False when they do not fit (→ 431).
    public func appendHead(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { upOut!.append($0) }
    }

    /// Connects (or takes a pooled connection) and starts sending. The sink hears of failure through
    /// `forwarderFailed` (possibly before this returns).
    public func start(now: UInt64) {
        self.now = now
        if requestEnded { queueFinalChunk() }
        connectNext(failStatus: 502, reason: .noServer)
    }

    /// Request-body bytes (tunnel: client bytes) the forwarder can take now (0: wait for `forwarderOriginReady`).
    /// An upgrade request takes none until the origin switched: what the client sends early waits in the session.
    public func requestBodyRoom() -> Int {
        guard let out = upOut, isActive else { return 0 }
        if upgradeRequested {
            guard state == .tunnel, !tunnelClientEnded else { return 0 }
            return out.freeCount
        }
        var room = out.freeCount - upSent - (requestChunked ? chunkFramingReserve : 0)
        if room <= 0 && upSent > 0 && replayable && answered == false {
            // The body outgrows the buffer: give up the ability to replay this request to make room.
            releaseKeptBytes()
            room = out.freeCount - (requestChunked ? chunkFramingReserve : 0)
        }
        return max(0, room)
    }

    /// Hands over request-body bytes (at most `requestBodyRoom()`); they are re-chunked when the length is unknown.
    public func sendRequestBody(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0, let out = upOut else { return }
        requestBodyBytes += bytes.count
        if requestChunked { Self.appendChunk(bytes, to: out) } else { out.append(bytes) }
    }

    /// Tunnel: the client sends nothing more (FIN, END_STREAM). Once its bytes are written the origin's write side
    /// is shut down; the origin's answer still flows.
    public func endTunnelUpstream() {
        guard state == .tunnel, !tunnelClientEnded else { return }
        tunnelClientEnded = true
        if let t = transport { finishTunnelSides(t) }
    }

    /// The client's request ended; `trailers` are complete field lines (`Name: value\r\n`...) for a chunked body.
    public func endRequest(trailers: [UInt8] = []) {
        requestEnded = true
        requestTrailers.removeAll(keepingCapacity: true)
        // (Appending even nothing to the never-allocated empty array allocated a buffer on every request.)
        if !trailers.isEmpty { requestTrailers.append(contentsOf: trailers) }
        queueFinalChunk()
    }

    /// Trailer field lines for the final chunk of a re-chunked request body.
    private var requestTrailers: [UInt8] = []

    /// Request-body bytes of the client that will not be forwarded any more (the response ended early, or the
    /// exchange failed): the session should discard them.
    public var discardsRequestBody: Bool { !isActive || upOut == nil }

    /// The earliest time the exchange needs `checkTimeout` (0: no origin-side deadline now; waiting for the client).
    public var deadline: UInt64 {
        switch state {
        case .connecting: return phaseStarted &+ timeouts.connect
        case .sending:
            if let t = transport, !t.canWrite, pendingWrite > 0 { return lastWrite &+ timeouts.send }
            return answered && !pausedBySink ? lastRead &+ timeouts.read : 0
        case .awaitingHead: return max(lastRead, lastWrite) &+ timeouts.read
        case .streaming: return pausedBySink ? 0 : lastRead &+ timeouts.read
        case .tunnel: return max(lastRead, lastWrite) &+ timeouts.tunnelIdle
        case .idle, .done, .failed: return 0
        }
    }

    /// Fails or retries the exchange when its deadline passed.
    public func checkTimeout(now: UInt64) {
        self.now = now
        let d = deadline
        guard d != 0, now >= d, let t = transport else { return }
        switch state {
        case .connecting:
            connector.report(t, .connectFailed)
            attemptFailed(.connectFailed, reason: .timeout, status: 504)
        case .streaming:
            fail(status: nil, reason: .timeout)
        case .tunnel:
            fail(status: nil, reason: .tunnelIdle)
        default:
            connector.report(t, .failedBeforeResponse)
            attemptFailed(answered ? .responseStarted : .timedOutBeforeHead, reason: .timeout, status: 504)
        }
    }

    /// The client went away or the session gives up: detaches the origin (not reusable), no sink calls.
    public func abandon() {
        if let t = transport {
            transport = nil
            t.setOwner(nil)
            connector.release(t, reusable: false)
        }
        if isActive { state = .failed }
        releaseBuffers()
    }

    /// Nothing attached and nothing in progress: the forwarder can serve another client connection (after `begin`).
    public var isRecyclable: Bool { transport == nil && upOut == nil && !isActive && sink == nil && client == nil }

    /// Bytes of response-head storage this forwarder holds on to between exchanges.
    public var retainedCapacity: Int { parser.retainedCapacity }

    /// After the exchange ended: returns the request buffer to the pool (the forwarder can be reused).
    public func releaseBuffers() {
        if let b = upOut {
            bufferPool.release(b)
            upOut = nil
        }
        upSent = 0
    }

    /// Called by the transport on readiness events.
    public func transportReady() { sink?.forwarderOriginReady() }

    // MARK: driving

    /// Moves bytes between the origin and the session as far as buffers allow. Returns true when anything moved.
    @discardableResult
    public func drive(now: UInt64) -> Bool {
        self.now = now
        guard let t = transport else { return false }
        var progress = false
        if state == .connecting {
            guard t.canWrite || t.canRead else { return false }
            let e = t.finishConnect()
            if e != 0 {
                connector.report(t, .connectFailed)
                attemptFailed(.connectFailed, reason: .connect, status: 502)
                return true
            }
            connected()
            progress = true
        }
        if writeRequest(t) { progress = true }
        guard transport === t, isActive else { return true }
        if readResponse(t) { progress = true }
        return progress
    }

    private var pendingWrite: Int { (upOut?.readableCount ?? 0) - upSent }

    private func connected() {
        lastWrite = now
        lastRead = now
        state = .sending
    }

    /// Writes pending request bytes. Returns true when bytes moved or the attempt ended.
    private func writeRequest(_ t: any OriginTransport) -> Bool {
        guard let out = upOut else { return false }
        var progress = false
        while t.canWrite && upSent < out.readableCount {
            let pending = UnsafeRawBufferPointer(
                start: out.base + out.start + upSent,
                count: out.readableCount - upSent
            )
            switch t.write(pending) {
            case .wrote(let n):
                if upSent == 0 && n > 0 { wroteSomething = true }
                upSent += n
                lastWrite = now
                progress = true
            case .blocked:
                break
            case .failed:
                if state == .tunnel {
                    // The origin is gone mid-tunnel (not a health matter: it had switched protocols).
                    fail(status: nil, reason: .resetMidBody)
                    return true
                }
                // EPIPE/ECONNRESET: a reused connection that accepted nothing was already dead.
                connector.report(t, .failedBeforeResponse)
                let attempt = failedAttempt(t)
                attemptFailed(attempt, reason: .resetBeforeHead, status: 502)
                return true
            }
        }
        if !replayable && upSent > 0 {
            out.consume(upSent)
            upSent = 0
        }
        if state == .tunnel {
            finishTunnelSides(t)
            return progress
        }
        if requestEnded && !finalChunkQueued { queueFinalChunk() }
        if state == .sending && requestEnded && finalChunkQueued && pendingWrite == 0 {
            state = .awaitingHead
            lastRead = now
        }
        return progress
    }

    /// Whether any byte of this request was accepted by the current connection.
    private var wroteSomething = false

    /// Reads and parses origin bytes while the sink has room. Returns true when anything happened.
    private func readResponse(_ t: any OriginTransport) -> Bool {
        // Bytes left over from an earlier pause go first (the sink may have room again).
        var progress = processInput(t)
        while t.canRead && !pausedBySink && isActive && transport === t {
            let r = t.fillInput()
            switch r {
            case .failed:
                originDied(t)
                return true
            case .read:
                progress = true
                lastRead = now
                if !answered { originAnswered() }
            case .eof where state == .tunnel:
                lastRead = now
            case .full, .blocked, .eof:
                break
            }
            if processInput(t) { progress = true }
            // Still full after processing: the head is larger than the buffer allows, or the sink is paused.
            if r == .full && (t.inBuf?.freeCount ?? 1) == 0 { break }
        }
        guard isActive, transport === t else { return true }
        if state == .tunnel {
            if t.peerClosed && (t.inBuf?.isEmpty ?? true) && !tunnelOriginEnded {
                tunnelOriginEnded = true
                sink?.forwarderTunnelOriginDone()
                if transport === t { finishTunnelSides(t) }
                return true
            }
            return progress
        }
        if t.peerClosed && (t.inBuf?.isEmpty ?? true) {
            // EOF: ends a close-delimited body; otherwise the origin died.
            if case .end = parser.finish() {
                responseEnded(reusable: false)
            } else {
                originDied(t)
            }
            return true
        }
        return progress
    }

    private func sinkRoom() -> Int { sink?.forwarderBodyRoom ?? 0 }

    /// The first response byte: the request reached the origin, so it is no longer replayable.
    private func originAnswered() {
        answered = true
        if replayable { releaseKeptBytes() }
    }

    private func releaseKeptBytes() {
        replayable = false
        if let out = upOut, upSent > 0 {
            out.consume(upSent)
            upSent = 0
        }
    }

    /// Parses buffered origin bytes into the sink. Returns true when anything happened.
    private func processInput(_ t: any OriginTransport) -> Bool {
        var progress = false
        pausedBySink = false
        // The transport's buffer, fetched once (an existential getter: a retain and release per access).
        let inBuf = t.inBuf
        while isActive && transport === t {
            if state == .tunnel { return relayTunnel(inBuf) || progress }
            let have = inBuf?.readableCount ?? 0
            if have == 0 && !parserPending { break }
            var limit = have
            if state == .streaming {
                let room = sinkRoom()
                if room <= 0 {
                    pausedBySink = true
                    break
                }
                limit = min(have, room)
            }
            let ev: ParseEvent
            if let b = inBuf {
                ev = parser.parse(UnsafeRawBufferPointer(start: b.base + b.start, count: limit), requestIsHEAD: isHEAD)
            } else {
                ev = parser.parse(UnsafeRawBufferPointer(start: nil, count: 0), requestIsHEAD: isHEAD)
            }
            switch ev {
            case .needMore:
                if limit > 0 { inBuf!.consume(limit) }
                parserPending = false
                return progress || limit > 0
            case .informational(let consumed):
                // 1xx interim responses are not forwarded (the proxy answered Expect itself).
                inBuf?.consume(consumed)
                parserPending = true
                progress = true
            case .head(let consumed):
                inBuf?.consume(consumed)
                parserPending = true
                progress = true
                deliverHead(t)
            case .body(let range, let consumed):
                let b = inBuf!
                let bytes = UnsafeRawBufferPointer(start: b.base + b.start + range.lowerBound, count: range.count)
                // Consume first (indices only; the bytes stay in place): the sink may end the exchange.
                b.consume(consumed)
                responseBodyBytes += range.count
                sink?.forwarderResponseBody(bytes)
                parserPending = true
                progress = true
            case .end(let consumed):
                inBuf?.consume(consumed)
                parserPending = false
                responseEnded(reusable: parser.head.keepAlive && (inBuf?.isEmpty ?? true))
                return true
            case .error:
                parserPending = false
                connector.report(t, .failedBeforeResponse)
                fail(status: state == .streaming ? nil : 502, reason: .badResponse)
                return true
            }
        }
        return progress
    }

    private func deliverHead(_ t: any OriginTransport) {
        let head = parser.head
        connector.report(t, .responded(status: head.status))
        if head.status == 101 {
            // Only a request that asked may be switched, and only to a protocol the origin names (RFC 9110 §15.2.2).
            guard upgradeRequested, head.headers.contains("upgrade") else {
                fail(status: 502, reason: .unsupported)
                return
            }
            startTunnel(head)
            return
        }
        status = head.status
        state = .streaming
        guard let sink, sink.forwarderResponseHead(head, isHEAD: isHEAD) else {
            status = 0
            state = .awaitingHead
            fail(status: 502, reason: .badResponse)
            return
        }
    }

    // MARK: tunnel

    private func startTunnel(_ head: ResponseHead) {
        status = 101
        state = .tunnel
        // Nothing is replayed from here on; client bytes are forwarded as they are.
        releaseKeptBytes()
        requestChunked = false
        requestBodyBytes = 0
        lastRead = now
        lastWrite = now
        guard let sink, sink.forwarderResponseHead(head, isHEAD: false) else {
            status = 0
            state = .awaitingHead
            fail(status: 502, reason: .badResponse)
            return
        }
    }

    /// Origin bytes to the sink as far as it has room. True when bytes moved.
    private func relayTunnel(_ inBuf: ByteBuffer?) -> Bool {
        guard let b = inBuf, b.readableCount > 0 else { return false }
        let room = sinkRoom()
        guard room > 0 else {
            pausedBySink = true
            return false
        }
        let n = min(room, b.readableCount)
        let bytes = UnsafeRawBufferPointer(start: b.base + b.start, count: n)
        b.consume(n)  // indices only: the bytes stay in place during the call
        responseBodyBytes += n
        sink?.forwarderResponseBody(bytes)
        if b.readableCount > 0 { pausedBySink = true }
        return true
    }

    /// Half-closes the origin once the client ended and its bytes are written; ends the tunnel once both sides
    /// have ended.
    private func finishTunnelSides(_ t: any OriginTransport) {
        guard state == .tunnel, transport === t else { return }
        if tunnelClientEnded && !tunnelUpShut && pendingWrite == 0 {
            tunnelUpShut = true
            t.shutdownWrite()
        }
        guard tunnelUpShut && tunnelOriginEnded else { return }
        state = .done
        transport = nil
        t.setOwner(nil)
        connector.release(t, reusable: false)
        releaseBuffers()
        sink?.forwarderResponseEnd(trailers: parser.trailers)
    }

    private func responseEnded(reusable: Bool) {
        let sentAll = requestEnded && finalChunkQueued && pendingWrite == 0
        state = .done
        if let t = transport {
            transport = nil
            t.setOwner(nil)
            connector.release(t, reusable: reusable && sentAll)
        }
        // The client's unfinished upload will not be forwarded: free its buffer.
        if !sentAll { releaseBuffers() }
        sink?.forwarderResponseEnd(trailers: parser.trailers)
    }

    private func originDied(_ t: any OriginTransport) {
        if state == .streaming || state == .tunnel {
            fail(status: nil, reason: .resetMidBody)
            return
        }
        connector.report(t, .failedBeforeResponse)
        attemptFailed(failedAttempt(t), reason: .resetBeforeHead, status: 502)
    }

    /// Classifies a connection failure before the response head.
    private func failedAttempt(_ t: any OriginTransport) -> FailedAttempt {
        if answered { return .responseStarted }
        if t.wasReused && !wroteSomething { return .deadBeforeSend }
        return .failedAfterSend(reused: t.wasReused)
    }

    // MARK: attempts

    private func connectNext(failStatus: Int, reason: ForwardFailure) {
        while attempts < connector.maxAttempts {
            guard let t = connector.acquire(for: self) else { break }
            attempts += 1
            server = t.server
            if !triedServers.contains(t.server) { triedServers.append(t.server) }
            transport = t
            t.setOwner(self)
            wroteSomething = false
            answered = false
            parser.resetUnlessIdle()
            parserPending = false
            phaseStarted = now
            if t.isConnected {
                connected()
                drive(now: now)
            } else {
                state = .connecting
            }
            return
        }
        state = .failed
        releaseBuffers()
        if connectFailedLocally {
            sink?.forwarderFailed(status: 503, reason: .localResources)
        } else {
            sink?.forwarderFailed(status: failStatus, reason: reason)
        }
    }

    private func attemptFailed(_ attempt: FailedAttempt, reason: ForwardFailure, status: Int) {
        if let t = transport {
            transport = nil
            t.setOwner(nil)
            connector.release(t, reusable: false)
        }
        switch Self.retryDecision(attempt, idempotent: idempotent, replayable: replayable) {
        case .fail:
            fail(status: status, reason: reason)
        case .retry:
            upSent = 0
            connectNext(failStatus: status, reason: reason)
        case .retryOtherServer:
            upSent = 0
            needsOtherServer = true
            connectNext(failStatus: status, reason: reason)
        }
    }

    /// Ends the exchange with a failure; `status` nil when the response was under way.
    private func fail(status: Int?, reason: ForwardFailure) {
        if let t = transport {
            transport = nil
            t.setOwner(nil)
            connector.release(t, reusable: false)
        }
        state = .failed
        releaseBuffers()
        sink?.forwarderFailed(status: self.status != 0 ? nil : status, reason: reason)
    }

    // MARK: framing

    /// Queues the last chunk (with trailers) of a re-chunked request body once there is room for it.
    private func queueFinalChunk() {
        guard !finalChunkQueued, let out = upOut else {
            if upOut == nil { finalChunkQueued = true }
            return
        }
        if requestChunked {
            guard out.freeCount - upSent >= 5 + requestTrailers.count else { return }
            out.append("0\r\n")
            requestTrailers.withUnsafeBytes { _ = out.append($0) }
            out.append("\r\n")
        }
        finalChunkQueued = true
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Appends one chunk (`<hex>\r\n<bytes>\r\n`); the caller kept `chunkFramingReserve` bytes free.
    public static func appendChunk(_ bytes: UnsafeRawBufferPointer, to buf: ByteBuffer) {
        guard bytes.count > 0 else { return }
        var tmp: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &tmp) { t in
            var n = bytes.count
            var i = 16
            repeat {
                i -= 1
                t[i] = hexDigits[n & 15]
                n >>= 4
            } while n > 0
            buf.append(UnsafeRawBufferPointer(rebasing: t[i..<16]))
        }
        buf.append("\r\n")
        buf.append(bytes)
        buf.append("\r\n")
    }
}
