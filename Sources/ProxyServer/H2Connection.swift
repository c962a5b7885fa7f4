import Glibc
import ProxyConfig
import ProxyCore
import ProxyEventLoop
import ProxyForwarder
import ProxyHTTP1
import ProxyHTTP2
import ProxyTLS

/// The HTTP/2 side of a client connection (ALPN `h2`): one nghttp2 server session over the connection's TLS
/// stream, each stream forwarded to an origin over the worker's HTTP/1.1 keep-alive pool (one upstream
/// connection per active stream) or answered by the built-in page.
///
/// The `ClientConnection` keeps the socket, TLS and the fingerprint state (so the access log, the built-in page
/// and the forwarding headers read them as for HTTP/1) and forwards its readiness events here.
///
/// Backpressure, per stream: request-body bytes wait in the stream's staging buffer, which never holds more than
/// the stream window; the window re-opens (`consume`) only as bytes move on toward the origin. Response bytes wait
/// in the stream's response buffer; the origin is read only while that buffer has room, and nghttp2 pulls from it
/// as the client's flow-control window allows. A slow stream therefore holds at most its two buffers and never
/// blocks the others; the connection's own output buffer is shared and drained by the TLS writes.
final class H2Connection: H2SessionHandler, TimerHandler, DeferredWork {
    // SAFETY: the client connection owns this session (and tears it down before it goes); the worker lives as
    // long as the process. unowned(unsafe): no unowned-retain per access on the request path.
    unowned(unsafe) let conn: ClientConnection
    unowned(unsafe) let worker: Worker
    /// `worker.loop`, held directly: reading the worker's implicitly unwrapped `var` retained and released the loop
    /// on each of the ~10 clock reads of a request.
    unowned(unsafe) let loop: EventLoop
    let snapshot: RuntimeSnapshot
    private var session: H2ServerSession!
    var timerSlot = TimerSlot()
    private var deadline: UInt64 = 0
    private var canRead = true
    private var canWrite = true
    private var inBuf: ByteBuffer?
    private var outBuf: ByteBuffer?
    private var streams = StreamTable<H2Stream>()
    private var freeStreams: [H2Stream] = []
    private var freeStages: [ByteBuffer] = []
    /// Streams whose response buffer drained while their origin was paused: driven after the next send.
    private var wakeList: [H2Stream] = []
    private var goingAway = false
    /// When the final GOAWAY of a graceful shutdown is due (0: sent, or not going away).
    private var finalGoAwayAt: UInt64 = 0
    private var lastActivity: UInt64
    private var lastWrite: UInt64
    private var flusher: H2FlushTimer!
    private let headers = H2HeaderBlock()
    private var closed = false
    private let metrics: H2Metrics
    var deferredSlot = DeferredSlot()

    init(conn: ClientConnection) {
        self.conn = conn
        self.worker = conn.worker
        self.loop = conn.worker.loop
        self.snapshot = conn.snapshot
        self.lastActivity = conn.worker.loop.now
        self.lastWrite = lastActivity
        self.metrics = conn.worker.metrics.h2
        self.flusher = H2FlushTimer(self)
        self.session = H2ServerSession(settings: snapshot.http2.session, handler: self)
        metrics.connections.increment()
    }

    // MARK: I/O

    func handleEvent(_ events: UInt32) {
        if events & (EventLoop.readable | EventLoop.readHangup | EventLoop.hangup | EventLoop.error) != 0 {
            canRead = true
        }
        if events & (EventLoop.writable | EventLoop.hangup | EventLoop.error) != 0 { canWrite = true }
        pump()
    }

    /// Reads, feeds the session, drives woken streams, writes; until nothing moves, or for 32 rounds: then the
    /// rest goes on in the loop's next tick, after the other connections' events.
    func pump() {
        var rounds = 0
        while !closed {
            rounds += 1
            var progress = false
            if readClient() { progress = true }
            if closed { return }
            if produce() { progress = true }
            if flushClient() { progress = true }
            if closed { return }
            if finishedOrFailed() { return }
            if !progress { break }
            if rounds > 32 {
                loop.continueNextTick(self)
                break
            }
        }
        if closed { return }
        refreshDeadline()
    }

    /// The next slice, in the loop tick after the one that stopped (nothing once torn down: `closed` is set
    /// before the client connection lets go of this object, and the loop's reference keeps it alive until here).
    func continueDeferred() {
        if !closed { pump() }
    }

    /// Coalesces writes: streams woken by their origins in one loop tick are flushed together after the events.
    func scheduleFlush() {
        // Never after teardown: the timer holds the connection unowned and would outlive it.
        if !closed && !flusher.timerSlot.isPending { loop.schedule(at: 0, flusher) }
    }

    private func readClient() -> Bool {
        guard canRead, !conn.peerEOF, session.failure == nil, let tls = conn.tls else { return false }
        // Stop reading while the client does not read what we already owe it (it cannot grow our output).
        if let out = outBuf, !canWrite, out.readableCount > 0 { return false }
        if inBuf == nil { inBuf = worker.bufferPool.acquire() }
        let buf = inBuf!
        var moved = false
        for _ in 0..<8 {
            switch tls.read(into: buf.writable) {
            case .bytes(let n):
                buf.commit(n)
                worker.metrics.bytesIn.increment(by: Int64(n))
                moved = true
                lastActivity = loop.now
                let failure = session.receive(buf.readable, now: loop.now)
                buf.clear()
                if let failure {
                    onFailure(failure)
                    return true
                }
                if closed { return true }
                if !conn.sawHangup && tls.socketEmptied {
                    // Everything that arrived is read: the next bytes bring an edge (no SSL_read to see EAGAIN).
                    canRead = false
                    releaseInBuf()
                    return true
                }
            case .wantRead:
                canRead = false
                releaseInBuf()
                return moved
            case .wantWrite:
                canWrite = false
                return moved
            case .closed:
                conn.peerEOF = true
                releaseInBuf()
                return true
            case .failed(let why):
                worker.logger.debug("TLS read from \(conn.peer) failed: \(why)")
                conn.peerEOF = true
                releaseInBuf()
                return true
            }
        }
        return moved
    }

    private func releaseInBuf() {
        if let b = inBuf {
            worker.bufferPool.release(b)
            inBuf = nil
        }
    }

    private func onFailure(_ f: H2Failure) {
        metrics.failure(f)
        if f != .protocolError && f != .badPreface {
            worker.logger.debug("HTTP/2 client \(conn.peer) closed for abuse: \(f.label)")
        }
    }

    /// Serialises frames into the output buffer; drives streams whose response buffers gained room.
    private func produce() -> Bool {
        var progress = false
        var rounds = 0
        while rounds < 16 {
            rounds += 1
            let out = ensureOutBuf()
            let sent = session.send(into: out)
            if sent { progress = true }
            if wakeList.isEmpty { break }
            let woken = wakeList
            wakeList.removeAll(keepingCapacity: true)
            for s in woken where s.id != 0 { drive(s) }
            if closed { return progress }
            if !sent && !session.wantsWrite { break }
        }
        return progress
    }

    /// Writes the output through TLS. A failed write closes the connection.
    private func flushClient() -> Bool {
        guard let out = outBuf, !out.isEmpty, canWrite, let tls = conn.tls else {
            if let out = outBuf, out.isEmpty, !session.wantsWrite {
                worker.bigBufferPool.release(out)
                outBuf = nil
            }
            return false
        }
        var moved = false
        while !out.isEmpty {
            switch tls.write(out.readable) {
            case .written(let n):
                out.consume(n)
                worker.metrics.bytesOut.increment(by: Int64(n))
                moved = true
                lastWrite = loop.now
            case .wantWrite:
                canWrite = false
                return moved
            case .wantRead:
                canRead = false
                return moved
            case .failed:
                conn.peerEOF = true
                close()
                return moved
            }
        }
        return moved
    }

    /// TLS records carry at most this many bytes (OpenSSL's default maximum fragment).
    private static let recordSize = 16384

    /// A flush from inside a stream's delivery (`responseBody`): only whole TLS records' worth of the output, the
    /// tail kept at the front for the frames that follow. A frame flushed alone made two records, the second a few
    /// bytes (16,393 bytes: 16,384 + 9); this way records stay full. A failed write only marks the peer gone, so
    /// that the next pump closes the connection: the callers above must not have it torn down under them. The
    /// pump's flush writes everything.
    private func flushWholeRecords() {
        guard let out = outBuf, canWrite, let tls = conn.tls else { return }
        var left = out.readableCount & ~(Self.recordSize - 1)
        while left > 0 {
            switch tls.write(UnsafeRawBufferPointer(start: out.base + out.start, count: left)) {
            case .written(let n):
                out.consume(n)
                left -= n
                worker.metrics.bytesOut.increment(by: Int64(n))
                lastWrite = loop.now
            case .wantWrite:
                canWrite = false
                return
            case .wantRead:
                canRead = false
                return
            case .failed:
                conn.peerEOF = true
                return
            }
        }
    }

    private func ensureOutBuf() -> ByteBuffer {
        if let b = outBuf { return b }
        let b = worker.bigBufferPool.acquire()
        outBuf = b
        return b
    }

    /// Closes when the session is over (GOAWAY exchanged and streams done, a failure flushed, or the peer gone).
    private func finishedOrFailed() -> Bool {
        if conn.peerEOF {
            close()
            return true
        }
        let flushed = (outBuf?.isEmpty ?? true) && !session.wantsWrite
        if session.failure != nil {
            if flushed {
                close()
                return true
            }
            return false
        }
        // Not before the final GOAWAY of a graceful shutdown: after the notice, nghttp2 no longer wants to read
        // once no stream is open, but the client's last streams may still be on the wire.
        if flushed && !session.wantsRead && finalGoAwayAt == 0 {
            close()
            return true
        }
        return false
    }

    private func close() {
        guard !closed else { return }
        conn.closeNow()  // calls teardown()
    }

    /// Called by the client connection while it releases: abandons every stream.
    func teardown() {
        guard !closed else { return }
        closed = true
        loop.cancelTimer(self)
        loop.cancelTimer(flusher)
        for s in streams {
            if !s.logged && s.headReceived {
                s.fwd?.abandon()
                if !(s.ex.responseEnded && s.respBuf == nil) { s.ex.truncated = true }
                logStream(s)
            }
            s.release(worker: worker)
        }
        streams.removeAll()
        freeStreams.removeAll()
        freeStages.removeAll()
        wakeList.removeAll()
        releaseInBuf()
        if let b = outBuf { worker.bigBufferPool.release(b) }
        outBuf = nil
        // The session holds an unowned reference to us; drop it now rather than at deinit order's mercy.
        session = nil
    }

    /// Graceful: GOAWAY now; streams in flight finish, then the connection closes.
    func drain() {
        guard !closed else { return }
        beginGoingAway()
        pump()
    }

    /// Graceful GOAWAY in two steps (RFC 9113 §6.8): a shutdown notice now, the final GOAWAY naming the last
    /// processed stream a second later, so requests the client sent before it saw the notice are still served
    /// (one final GOAWAY at once refused those in flight: h2load counted them failed at every reload). The
    /// connection then closes with a lingering close, so the last responses are not lost to an RST.
    private func beginGoingAway() {
        guard !goingAway, !closed else { return }
        goingAway = true
        session.shutdownNotice()
        finalGoAwayAt = loop.now &+ 1_000_000_000
        setDeadline(finalGoAwayAt)
        scheduleFlush()
    }

    // MARK: timers

    func timerFired(now: UInt64) {
        guard !closed else { return }
        checkTimeouts(now: now)
        if !closed { pump() }
    }

    private func setDeadline(_ d: UInt64) {
        deadline = d
        if !timerSlot.isPending || timerSlot.deadline > d { loop.schedule(at: d, self) }
    }

    private func refreshDeadline() {
        let now = loop.now
        if streams.isEmpty {
            setDeadline(max(lastActivity, lastWrite) &+ snapshot.timeouts.idle)
        } else {
            // Streams in flight: check their origin deadlines and the zero-window rule often enough.
            let step = min(snapshot.http2.zeroWindowTimeout / 4, 1_000_000_000)
            // (A timer that fired before `deadline` leaves none pending: always keep one.)
            if !timerSlot.isPending || deadline <= now || deadline > now &+ step { setDeadline(now &+ step) }
        }
        if finalGoAwayAt != 0 && (!timerSlot.isPending || timerSlot.deadline > finalGoAwayAt) {
            loop.schedule(at: finalGoAwayAt, self)
        }
    }

    private func checkTimeouts(now: UInt64) {
        if finalGoAwayAt != 0 && now >= finalGoAwayAt {
            finalGoAwayAt = 0
            session.goAway()
            scheduleFlush()
        }
        if streams.isEmpty {
            if now >= max(lastActivity, lastWrite) &+ snapshot.timeouts.idle {
                // Idle: tell the client, then close once the GOAWAY is out.
                goingAway = true
                session.goAway()
                pump()
                if !closed { close() }
            }
            return
        }
        let stall = snapshot.http2.zeroWindowTimeout
        var expired: [H2Stream] = []
        var stalledUploads: [H2Stream] = []
        for s in streams {
            if let f = s.fwd, f.isActive, f.deadline != 0, now >= f.deadline {
                expired.append(s)
            } else if !s.ex.requestEnded && !s.ex.local && !s.upgrade
                && now &- s.lastClientData >= snapshot.timeouts.idle
            {
                // The client stopped sending a request body: the stream must not pin the connection.
                stalledUploads.append(s)
            } else if s.hasPendingResponse && now &- s.lastProgress >= stall {
                // The client leaves our response bytes unread (zero window or unread socket).
                metrics.failure(.zeroWindow)
                worker.logger.debug("HTTP/2 client \(conn.peer) stalled a stream for \(stall / 1_000_000_000)s")
                session.terminate(.enhanceYourCalm, failure: .zeroWindow)
                pump()
                if !closed { close() }
                return
            }
        }
        for s in expired where s.id != 0 {
            s.fwd?.checkTimeout(now: now)
        }
        for s in stalledUploads where s.id != 0 {
            worker.logger.debug("HTTP/2 client \(conn.peer) stalled a request body on stream \(s.id)")
            s.fwd?.abandon()
            s.ex.requestEnded = true  // nothing more is read for it: the stream is reset after the answer
            s.resetWhenAnswered = true
            if s.ex.responseHeadSent {
                s.ex.truncated = true
                session.resetStream(s.id, code: .noError)
            } else {
                respondLocal(s, status: 408)
            }
        }
        if !expired.isEmpty || !stalledUploads.isEmpty { pump() }
    }

    // MARK: session events

    func h2Request(stream id: Int32, head: H2RequestHead, endStream: Bool) {
        let s = acquireStream(id)
        s.ex.beginH2(head: head, endStream: endStream, now: loop.now, logFields: worker.accessLog != nil)
        s.headReceived = true
        metrics.streams.increment()
        if worker.snapshot !== snapshot && !goingAway {
            // Reloaded: finish what this connection started, then let the client reconnect onto the new settings.
            beginGoingAway()
        }
        let extended = head.isExtendedCONNECT
        if head.isCONNECT && (!extended || worker.upstreams.snapshot.isEmpty) {
            // Plain CONNECT is not a reverse proxy's business; extended CONNECT needs an origin to upgrade.
            respondLocal(s, status: 501)
            return
        }
        // (An extended CONNECT is judged as the GET it becomes: only its authority matters here.)
        let policyMethod: HTTPMethod = extended ? .get : head.methodKind
        if let status = RequestPolicy.reject(method: policyMethod, authority: head.authority) {
            respondLocal(s, status: status)
            return
        }
        if worker.upstreams.snapshot.isEmpty {
            s.ex.local = true
            let page = BuiltinPage.render(
                connection: conn,
                method: head.method,
                path: head.path,
                accept: head.first("accept"),
                protocolName: "HTTP/2"
            )
            respond(s, status: 200, contentType: page.contentType, body: page.bytes)
            return
        }
        let route = worker.route(
            sni: conn.serverNamePointer,
            host: head.authority.isEmpty ? head.first("host") : head.authority,
            target: head.path,
            headers: head.headers,
            peer: conn.peer
        )
        let routedPool: Int
        let hashKey: UInt64
        switch route {
        case .reject(let status):
            respondLocal(s, status: status)
            return
        case .pool(let p, let key, let websocket):
            (routedPool, hashKey) = (p, key)
            if extended && !(websocket && ProtocolUpgrade.isForwardableH2Protocol(head.protocolName)) {
                // The route does not tunnel (websocket = false), or the protocol cannot be an HTTP/1.1 Upgrade:
                // unlike an HTTP/1 Upgrade this cannot become a plain request (a 2xx would read as "tunnel open").
                respondLocal(s, status: 501)
                return
            }
        }
        if extended {
            startExtendedConnect(s, head, pool: routedPool, hashKey: hashKey)
            return
        }
        let framing: OutboundFraming
        if endStream {
            framing = .bodiless
        } else if let n = head.contentLength {
            framing = .contentLength(n)
        } else {
            framing = .chunked
        }
        s.ex.requestChunked = framing == .chunked
        let f = s.forwarder(
            connector: worker.originConnector,
            pool: worker.bigBufferPool,
            snapshot: snapshot,
            client: conn
        )
        f.begin(
            method: head.methodKind,
            isHEAD: head.isHEAD,
            requestChunked: framing == .chunked,
            requestEnded: endStream,
            now: loop.now
        )
        f.pool = routedPool
        f.hashKey = hashKey
        sendHeadAndStart(s, f, method: head.method, head: head, framing: framing)
    }

    /// Writes the request head toward the origin (HTTP/1.1, translated from `head`) into `f` and starts it; 431
    /// when the head does not fit. Shared by plain requests and extended CONNECT.
    private func sendHeadAndStart(
        _ s: H2Stream,
        _ f: OriginForwarder,
        method: ArraySlice<UInt8>,
        head: H2RequestHead,
        framing: OutboundFraming,
        upgrade: ArraySlice<UInt8>? = nil,
        upgradeFields: [UInt8] = []
    ) {
        worker.scratch.removeAll(keepingCapacity: true)
        conn.forwardingContext().appendTranslatedRequestHead(
            method: method,
            target: head.path,
            authority: head.authority,
            headers: head.headers,
            framing: framing,
            upgrade: upgrade,
            upgradeFields: upgradeFields,
            to: &worker.scratch
        )
        guard f.appendHead(worker.scratch) else {
            f.abandon()
            respondLocal(s, status: 431)
            return
        }
        f.start(now: loop.now)
        if f.isActive { drive(s) }
    }

    /// RFC 8441: an extended CONNECT becomes `GET` with `Connection: upgrade` and `Upgrade: <:protocol>` toward the
    /// origin (plus a fresh Sec-WebSocket-Key for WebSocket, which HTTP/2 clients do not send). Its DATA waits in
    /// the stream's stage (bounded by the stream window) until the origin answers 101; then the stream is the
    /// tunnel. The stream's END_STREAM is the client's half-close.
    private func startExtendedConnect(_ s: H2Stream, _ head: H2RequestHead, pool: Int, hashKey: UInt64) {
        s.upgrade = true
        s.requestEndSent = true  // the request toward the origin is bodiless; the stream's DATA is tunnel bytes
        let f = s.forwarder(
            connector: worker.originConnector,
            pool: worker.bigBufferPool,
            snapshot: snapshot,
            client: conn
        )
        let get: ArraySlice<UInt8> = Array("GET".utf8)[...]
        f.begin(
            method: .get,
            isHEAD: false,
            requestChunked: false,
            requestEnded: true,
            upgrade: true,
            now: loop.now
        )
        f.pool = pool
        f.hashKey = hashKey
        var keyField: [UInt8] = []
        if ProtocolUpgrade.isWebSocket(head.protocolName) && head.first("sec-websocket-key") == nil {
            var rng = SystemRandomNumberGenerator()
            keyField = ProtocolUpgrade.webSocketKeyField(using: &rng)
        }
        sendHeadAndStart(
            s,
            f,
            method: get,
            head: head,
            framing: .bodiless,
            upgrade: head.protocolName,
            upgradeFields: keyField
        )
    }

    func h2RequestRejected(stream id: Int32, status: Int) {
        let s = acquireStream(id)
        s.headReceived = true
        s.ex.startedAt = loop.now
        respondLocal(s, status: status)
    }

    func h2Data(stream id: Int32, bytes: UnsafeRawBufferPointer) {
        streams[id]?.lastClientData = loop.now
        guard let s = streams[id], let f = s.fwd, f.isActive, !s.ex.local else {
            // Nobody will forward these bytes (local answer, finished or failed stream): give the window back.
            streams[id]?.ex.requestBodyBytes += bytes.count
            session.consume(stream: id, count: bytes.count)
            return
        }
        if s.stage == nil { s.stage = acquireStage() }
        guard s.stage!.append(bytes) else {
            // Cannot happen while the peer respects our window (nghttp2 enforces it).
            session.resetStream(id, code: .flowControlError)
            return
        }
        wake(s)
    }

    /// Drives `s` after the current receive batch (DATA of several streams often arrives together).
    private func wake(_ s: H2Stream) {
        if !s.needsDrive {
            s.needsDrive = true
            wakeList.append(s)
        }
    }

    func h2Trailers(stream id: Int32, trailers: HTTPHeaders) {
        guard let s = streams[id], s.ex.requestChunked else { return }
        s.requestTrailers.removeAll(keepingCapacity: true)
        trailers.forEachForwardableTrailer { n, v in
            s.requestTrailers.append(contentsOf: n)
            s.requestTrailers.append(contentsOf: ": ".utf8)
            s.requestTrailers.append(contentsOf: v)
            s.requestTrailers.append(contentsOf: "\r\n".utf8)
        }
    }

    func h2EndStream(stream id: Int32) {
        guard let s = streams[id] else { return }
        s.ex.requestEnded = true
        if let f = s.fwd, f.isActive { wake(s) }
    }

    func h2StreamClosed(stream id: Int32, errorCode: UInt32) {
        guard let s = streams.removeValue(forKey: id) else { return }
        if errorCode != 0 && !(s.ex.responseEnded && s.respBuf == nil) { metrics.clientResets.increment() }
        if s.tunnel, let f = s.fwd, f.isTunnel {
            // Both END_STREAMs are through: hand the origin what the forwarder can still take of the client's
            // last bytes (and its half-close) before the stream's state goes.
            drive(s)
        }
        if let stage = s.stage, stage.readableCount > 0 {
            // Connection window: bytes we buffered but never forwarded.
            session.consume(stream: id, count: stage.readableCount)
        }
        s.fwd?.abandon()
        if s.headReceived && !s.logged {
            if !(s.ex.responseEnded && s.respBuf == nil) { s.ex.truncated = true }
            logStream(s)
        }
        if let st = s.stage {
            st.clear()
            freeStages.append(st)
            s.stage = nil
        }
        s.release(worker: worker)
        if freeStreams.count < 64 { freeStreams.append(s) }
    }

    func h2ResponseEndSent(stream id: Int32) {
        // The request body is still open (the origin answered early, or the upload stalled): after our
        // END_STREAM, RST_STREAM(NO_ERROR) tells the client to stop sending (RFC 9113 §8.1).
        if let s = streams[id], s.resetWhenAnswered { session.resetStream(id, code: .noError) }
    }

    func h2DataReady(stream id: Int32, max: Int) -> H2DataRead {
        guard let s = streams[id] else { return H2DataRead(count: 0, eof: true) }
        let available = s.borrowed?.count ?? s.respBuf?.readableCount ?? 0
        let n = min(max, available)
        if n == available && s.ex.responseEnded {
            s.responseComplete = true
            if n == 0 { dropEmptyResponseBuffer(s) }
            if s.hasTrailers, let f = s.fwd {
                headers.reset()
                f.responseTrailers.forEachForwardableTrailer { n, v in headers.append(name: n, value: v) }
                s.hasTrailers = false
                if headers.count > 0 {
                    session.submitTrailers(stream: id, headers: headers)
                    return H2DataRead(count: n, eof: true, trailersFollow: true)
                }
            }
            return H2DataRead(count: n, eof: true)
        }
        if n == 0 {
            s.deferred = true
            return .deferred
        }
        return H2DataRead(count: n)
    }

    func h2WriteData(stream id: Int32, count n: Int, into out: ByteBuffer) {
        guard let s = streams[id] else { return }
        if let b = s.borrowed {
            out.append(UnsafeRawBufferPointer(rebasing: b.prefix(n)))
            s.borrowed = UnsafeRawBufferPointer(rebasing: b.dropFirst(n))
        } else if let rb = s.respBuf {
            out.append(UnsafeRawBufferPointer(start: rb.base + rb.start, count: n))
            rb.consume(n)
            if s.ex.responseEnded { dropEmptyResponseBuffer(s) }
        } else {
            return
        }
        s.bytesDelivered += n
        s.lastProgress = loop.now
        if let f = s.fwd, f.pausedBySink { wake(s) }
    }

    /// Returns the stream's response buffer to the pool once nothing is left in it (after the response ended):
    /// `respBuf == nil` with `responseEnded` is how the rest of the connection knows the whole body left.
    private func dropEmptyResponseBuffer(_ s: H2Stream) {
        if let rb = s.respBuf, rb.isEmpty {
            worker.bigBufferPool.release(rb)
            s.respBuf = nil
        }
    }

    // MARK: streams

    private func acquireStream(_ id: Int32) -> H2Stream {
        let s = freeStreams.popLast() ?? H2Stream()
        s.h2 = self
        s.id = id
        s.lastClientData = loop.now
        s.lastProgress = loop.now
        streams.insert(s, for: id)
        return s
    }

    private func acquireStage() -> ByteBuffer {
        freeStages.popLast() ?? ByteBuffer(capacity: snapshot.http2.session.initialWindowSize)
    }

    /// Moves bytes between a stream and its origin. Called on origin readiness and after request events.
    func drive(_ s: H2Stream) {
        s.needsDrive = false
        guard let f = s.fwd, f.isActive else { return }
        moveRequestBody(s, f)
        f.drive(now: loop.now)
        // Each write to the origin makes room for more staged body.
        while f.isActive, let st = s.stage, st.readableCount > 0, f.requestBodyRoom() > 0 {
            moveRequestBody(s, f)
            f.drive(now: loop.now)
        }
        if f.isActive && s.ex.requestEnded && s.stage == nil && !s.requestEndSent {
            moveRequestBody(s, f)
            f.drive(now: loop.now)
        }
        if s.tunnel && f.isTunnel && s.ex.requestEnded && s.stage == nil && !s.tunnelEndSent {
            // The client's END_STREAM, after its last DATA: half-close toward the origin.
            s.tunnelEndSent = true
            f.endTunnelUpstream()
        }
    }

    /// Staged request-body bytes to the forwarder (re-chunked there when the length is unknown); re-opens the
    /// client's window for what moved.
    private func moveRequestBody(_ s: H2Stream, _ f: OriginForwarder) {
        if let st = s.stage, st.readableCount > 0 {
            let n = min(f.requestBodyRoom(), st.readableCount)
            if n > 0 {
                f.sendRequestBody(UnsafeRawBufferPointer(start: st.base + st.start, count: n))
                st.consume(n)
                s.ex.requestBodyBytes += n
                session.consume(stream: s.id, count: n)
            }
        }
        if let st = s.stage, st.isEmpty {
            freeStages.append(st)
            s.stage = nil
        }
        if s.ex.requestEnded && s.stage == nil && !s.requestEndSent {
            f.endRequest(trailers: s.requestTrailers)
            s.requestEndSent = true
        }
    }

    /// Origin reads at least this large are framed at once (`responseBody`). Framing one costs a `send` of its own
    /// (~2,500 instructions measured with h2_64, where every response took that way); the copy into the stream's
    /// buffer it saves costs about one instruction per byte.
    private static let directFramingMinimum = 4096

    /// Origin body bytes for `s` (valid during the call only). When they are many, none of the stream's bytes are
    /// waiting and nghttp2 is not mid-call, they are framed at once, straight from the origin's buffer into the
    /// output; only what the client's window (or a full socket) holds back stops in the stream's buffer. Otherwise
    /// they are buffered and framed with the other streams' on the next flush.
    fileprivate func responseBody(_ s: H2Stream, _ bytes: UnsafeRawBufferPointer, buffer rb: ByteBuffer) {
        var rest = bytes
        let id = s.id
        if rb.isEmpty && bytes.count >= Self.directFramingMinimum && !session.isBusy && !closed {
            // A round frames what fits; a whole frame must fit, so the output's whole records go out first when
            // it does not (an origin read of 32 KiB is two frames).
            for _ in 0..<4 {
                if let out = outBuf, out.freeCount < Self.recordSize + 9, canWrite { flushWholeRecords() }
                if conn.peerEOF || (outBuf?.freeCount ?? Int.max) < Self.recordSize + 9 { break }
                if s.deferred {
                    s.deferred = false
                    session.resumeData(stream: id)
                }
                s.borrowed = rest
                session.send(into: ensureOutBuf())
                let left = s.borrowed ?? rest
                s.borrowed = nil
                // Sending can close streams (a reset queued earlier): then the rest has nowhere to go.
                guard s.id == id, s.respBuf === rb else { return scheduleFlush() }
                let framed = rest.count - left.count
                rest = left
                if rest.isEmpty || framed == 0 { break }
            }
        }
        rb.append(rest)
        wakeData(s)
    }

    fileprivate func wakeData(_ s: H2Stream) {
        if s.deferred {
            s.deferred = false
            session.resumeData(stream: s.id)
        }
        scheduleFlush()
    }

    /// The origin's response head, translated to HTTP/2 fields. False when it cannot be (1xx other than the
    /// interim ones, which the forwarder drops; 101 never reaches here).
    fileprivate func submitResponseHead(_ s: H2Stream, _ resp: ResponseHead, isHEAD: Bool) -> Bool {
        if s.upgrade {
            if resp.status == 101 { return startTunnel(s, resp) }
            // A 2xx would tell the client its tunnel is open (RFC 8441 §5): the origin did not switch, so 502.
            if resp.status < 300 { return false }
        }
        guard H2ResponseTranslation.canTranslate(resp) else { return false }
        s.ex.status = resp.status
        if let f = s.fwd { (s.ex.originIndex, s.ex.originPool) = (f.server, f.pool) }
        headers.reset(status: resp.status)
        resp.forEachForwardableField { n, v in headers.append(name: n, value: v) }
        if let n = H2ResponseTranslation.contentLength(resp) {
            headers.append(name: "content-length", decimal: n)
        }
        headers.append(name: "via", value: "1.1 edgeproxy")
        let hasBody = H2ResponseTranslation.hasBody(resp, isHEAD: isHEAD)
        s.ex.responseHeadSent = true
        if !s.ex.requestEnded { s.resetWhenAnswered = true }
        session.submitResponse(stream: s.id, headers: headers, hasBody: hasBody)
        if hasBody && s.respBuf == nil { s.respBuf = worker.bigBufferPool.acquire() }
        scheduleFlush()
        return true
    }

    /// The origin switched protocols: the extended CONNECT is answered `:status 200` (RFC 8441 §5) with the
    /// origin's end-to-end fields (not Sec-WebSocket-Accept, which has no meaning over HTTP/2), and DATA follows.
    private func startTunnel(_ s: H2Stream, _ resp: ResponseHead) -> Bool {
        s.tunnel = true
        s.ex.tunnel = true
        s.ex.status = 200
        if let f = s.fwd { (s.ex.originIndex, s.ex.originPool) = (f.server, f.pool) }
        headers.reset(status: 200)
        resp.forEachForwardableField { n, v in
            let accept =
                n.count == 20
                && n.elementsEqual(
                    "sec-websocket-accept".utf8,
                    by: { ($0 &- 0x41) < 26 ? ($0 | 0x20) == $1 : $0 == $1 }
                )
            if !accept { headers.append(name: n, value: v) }
        }
        headers.append(name: "via", value: "1.1 edgeproxy")
        s.ex.responseHeadSent = true
        session.submitResponse(stream: s.id, headers: headers, hasBody: true)
        if s.respBuf == nil { s.respBuf = worker.bigBufferPool.acquire() }
        worker.metrics.tunnelOpened()
        scheduleFlush()
        return true
    }

    /// Tunnel: the origin ended its side; END_STREAM follows its last bytes.
    fileprivate func tunnelOriginDone(_ s: H2Stream) {
        guard let f = s.fwd else { return }
        responseEnded(s, trailers: f.responseTrailers)
    }

    fileprivate func responseEnded(_ s: H2Stream, trailers: HTTPHeaders) {
        s.ex.responseEnded = true
        s.hasTrailers = trailers.count > 0
        if !s.hasTrailers { dropEmptyResponseBuffer(s) }
        if !s.ex.requestEnded && !s.tunnel {
            // The origin answered before the request body ended: the rest of the upload is not forwarded; the
            // stream is reset with NO_ERROR once the response is out. (A tunnel's client side stays open: it is
            // a half-close.)
            s.resetWhenAnswered = true
        }
        if s.respBuf == nil && !s.hasTrailers && s.ex.status != 0 {
            // Bodiless response: the HEADERS frame carries END_STREAM.
            s.responseComplete = true
        }
        wakeData(s)
    }

    fileprivate func forwarderFailed(_ s: H2Stream, status: Int?, reason: ForwardFailure) {
        if reason.isCountedBySession { worker.metrics.upstreamError(reason.rawValue) }
        if let f = s.fwd { (s.ex.originIndex, s.ex.originPool) = (f.server, f.pool) }
        if reason == .tunnelIdle {
            // Nothing moved either way for timeouts.tunnel_idle: the origin is closed, the stream cancelled. As on
            // HTTP/1, that is a tunnel's normal end: logged as truncated only if response bytes are still waiting for
            // the client, and not counted as a client reset (the RST_STREAM is ours).
            s.ex.responseEnded = true
            dropEmptyResponseBuffer(s)
            s.fwd?.abandon()
            session.resetStream(s.id, code: .cancel)
            scheduleFlush()
            return
        }
        fail(s, status: status ?? 502)
    }

    /// Upstream failure on one stream: an error response when nothing was sent yet, else RST_STREAM (a truncated
    /// body must not look complete). Other streams are unaffected.
    private func fail(_ s: H2Stream, status: Int) {
        s.fwd?.abandon()
        if !s.ex.responseHeadSent {
            respondLocal(s, status: status)
        } else {
            s.ex.status = s.ex.status == 0 ? status : s.ex.status
            s.ex.truncated = true
            session.resetStream(s.id, code: .internalError)
            scheduleFlush()
        }
    }

    private func respondLocal(_ s: H2Stream, status: Int) {
        let reason = HTTP1Writer.reasonPhrase(status)
        respond(
            s,
            status: status,
            contentType: "text/plain; charset=utf-8",
            body: UnsafeRawBufferPointer(start: reason.utf8Start, count: reason.utf8CodeUnitCount)
        )
    }

    private func respond(_ s: H2Stream, status: Int, contentType: StaticString, body: [UInt8]) {
        body.withUnsafeBytes { respond(s, status: status, contentType: contentType, body: $0) }
    }

    private func respond(
        _ s: H2Stream,
        status: Int,
        contentType: StaticString,
        body: UnsafeRawBufferPointer
    ) {
        s.ex.status = status
        s.ex.responseHeadSent = true
        s.ex.responseEnded = true
        headers.reset(status: status)
        headers.append(name: "content-type", value: contentType)
        // As over HTTP/1 (HTTP1Writer.appendSimpleResponse): local answers and the built-in page are never cached.
        headers.append(name: "cache-control", value: "no-store")
        headers.append(name: "content-length", decimal: body.count)
        let hasBody = !s.ex.isHEAD && body.count > 0
        if hasBody {
            let b = worker.bigBufferPool.acquire()
            b.append(UnsafeRawBufferPointer(rebasing: body.prefix(b.capacity)))
            s.respBuf = b
            s.ex.responseBodyBytes = body.count
        }
        s.ex.local = true
        if !s.ex.requestEnded { s.resetWhenAnswered = true }
        session.submitResponse(stream: s.id, headers: headers, hasBody: hasBody)
        if !hasBody { s.responseComplete = true }
        scheduleFlush()
    }

    private func logStream(_ s: H2Stream) {
        s.logged = true
        if s.tunnel {
            s.tunnel = false
            worker.metrics.tunnelClosed()
        }
        // What reached the client, not what the origin sent: a stream cut by a reset or shutdown says so.
        s.ex.responseBodyBytes = s.bytesDelivered
        worker.metrics.request(
            status: s.ex.status,
            pool: s.ex.originPool,
            nanoseconds: loop.now &- s.ex.startedAt
        )
        guard worker.accessLog != nil else { return }
        AccessLogLine.append(
            connection: conn,
            exchange: s.ex,
            to: &worker.logLines,
            clock: &worker.logClock,
            now: monotonicNanos(),
            h2: true
        )
    }
}

/// One HTTP/2 stream's exchange: pooled per connection (no allocation per request once warm). It is the
/// forwarder's sink for this stream: the origin's response becomes HEADERS, DATA and trailers on the session.
final class H2Stream: ForwarderSink {
    // SAFETY: set while the stream is in use; the connection outlives its streams (teardown releases them).
    unowned(unsafe) var h2: H2Connection?
    var id: Int32 = 0
    var ex = Exchange()
    /// The origin side of this stream (created on its first proxied request, reused with the stream object).
    var fwd: OriginForwarder?
    var headReceived = false
    var logged = false
    /// Request-body bytes received, not yet moved toward the origin (at most the stream window).
    var stage: ByteBuffer?
    var requestTrailers: [UInt8] = []
    /// The end of the request (and its trailers) was handed to the forwarder.
    var requestEndSent = false
    var needsDrive = false
    /// Response-body bytes waiting for the client's window.
    var respBuf: ByteBuffer?
    /// During `H2Connection.responseBody` only: the origin's bytes being framed without a stop in `respBuf`
    /// (which is empty meanwhile); what is left of them.
    var borrowed: UnsafeRawBufferPointer?
    /// Response-body bytes handed to nghttp2 for the client.
    var bytesDelivered = 0
    /// The final DATA (END_STREAM) was handed to nghttp2.
    var responseComplete = false
    /// The request body is still open when the response ends: RST_STREAM(NO_ERROR) after it.
    var resetWhenAnswered = false
    /// nghttp2 paused this stream's DATA (nothing buffered); resume when bytes arrive.
    var deferred = false
    var hasTrailers = false
    /// An RFC 8441 extended CONNECT (forwarded as an HTTP/1.1 Upgrade); `tunnel` once the origin switched.
    var upgrade = false
    var tunnel = false
    /// The client's END_STREAM was passed to the tunnel as a half-close.
    var tunnelEndSent = false
    var lastProgress: UInt64 = 0
    /// When the client last sent request-body bytes for this stream.
    var lastClientData: UInt64 = 0

    /// Response bytes (or the end of the response) are waiting for the client.
    var hasPendingResponse: Bool { respBuf.map { !$0.isEmpty } ?? false }

    /// The stream's forwarder (kept across its exchanges), serving `client`: set here for every kind of request, so
    /// that none reaches the connector without the client a `proxy_protocol` pool must name (extended CONNECT once
    /// did).
    func forwarder(
        connector: any OriginConnector,
        pool: BufferPool,
        snapshot: RuntimeSnapshot,
        client: any OriginClient
    ) -> OriginForwarder {
        if let f = fwd {
            f.timeouts = snapshot.forwarderTimeouts
            f.client = client
            return f
        }
        let f = OriginForwarder(connector: connector, bufferPool: pool, timeouts: snapshot.forwarderTimeouts)
        f.sink = self
        f.client = client
        fwd = f
        return f
    }

    // MARK: ForwarderSink

    func forwarderResponseHead(_ head: ResponseHead, isHEAD: Bool) -> Bool {
        guard let h2, id != 0 else { return false }
        if h2.worker.accessLog != nil { ex.originAnswered(status: head.status, transport: fwd?.transport) }
        return h2.submitResponseHead(self, head, isHEAD: isHEAD)
    }

    var forwarderBodyRoom: Int {
        guard let h2, id != 0 else { return 0 }
        if respBuf == nil { respBuf = h2.worker.bigBufferPool.acquire() }
        return respBuf!.freeCount
    }

    func forwarderResponseBody(_ bytes: UnsafeRawBufferPointer) {
        guard let h2, id != 0, let rb = respBuf else { return }
        if rb.isEmpty { lastProgress = h2.loop.now }
        ex.responseBodyBytes += bytes.count
        h2.responseBody(self, bytes, buffer: rb)
    }

    func forwarderResponseEnd(trailers: HTTPHeaders) {
        guard let h2, id != 0 else { return }
        h2.responseEnded(self, trailers: trailers)
    }

    func forwarderFailed(status: Int?, reason: ForwardFailure) {
        guard let h2, id != 0 else { return }
        h2.forwarderFailed(self, status: status, reason: reason)
    }

    func forwarderOriginReady() {
        guard let h2, id != 0 else { return }
        h2.drive(self)
        h2.scheduleFlush()
    }

    func forwarderTunnelOriginDone() {
        guard let h2, id != 0 else { return }
        h2.tunnelOriginDone(self)
    }

    func release(worker: Worker) {
        fwd?.abandon()
        ex.active = false
        if let b = respBuf { worker.bigBufferPool.release(b) }
        respBuf = nil
        stage = nil  // sized to the stream window, not pooled by the worker
        id = 0
        h2 = nil
        headReceived = false
        logged = false
        requestTrailers.removeAll(keepingCapacity: true)
        requestEndSent = false
        needsDrive = false
        bytesDelivered = 0
        responseComplete = false
        resetWhenAnswered = false
        deferred = false
        hasTrailers = false
        upgrade = false
        tunnel = false
        tunnelEndSent = false
    }
}

/// Flushes an HTTP/2 connection after the current tick's events (coalescing stream wake-ups into one write).
final class H2FlushTimer: TimerHandler {
    var timerSlot = TimerSlot()
    // SAFETY: the connection cancels this timer in teardown, before it can go away.
    unowned(unsafe) let h2: H2Connection
    init(_ h2: H2Connection) { self.h2 = h2 }
    func timerFired(now: UInt64) { h2.pump() }
}

extension ClientConnection {
    /// After the handshake: when ALPN chose h2, hands the connection's I/O to an `H2Connection` and returns true.
    func startH2IfNegotiated() -> Bool {
        guard let tls, tls.alpn == "h2" else { return false }
        worker.loop.cancelTimer(self)  // the HTTP/2 driver keeps its own deadlines
        let h = H2Connection(conn: self)
        h2 = h
        h.pump()
        return true
    }
}

extension Exchange {
    /// Starts the exchange of one HTTP/2 stream (the HTTP/2 counterpart of `begin(head:now:)`).
    mutating func beginH2(head: H2RequestHead, endStream: Bool, now: UInt64, logFields: Bool) {
        start(
            method: .other,
            methodBytes: head.method,
            target: head.path,
            isHEAD: head.isHEAD,
            version: .http1_1,
            requestChunked: false,
            requestEnded: endStream,
            now: now,
            logFields: logFields
        )
        if logFields { captureLogFields(head.headers, host: head.authority) }
    }
}

/// HTTP/2 settings of a runtime snapshot.
public struct HTTP2Options: Sendable {
    public var session = H2Settings()
    /// Nanoseconds a stream may keep response bytes the client does not accept.
    public var zeroWindowTimeout: UInt64 = 30_000_000_000

    public init() {}

    public init(_ c: ProxyConfiguration.HTTP2, limits: ProxyConfiguration.Limits) {
        session.maxConcurrentStreams = c.maxConcurrentStreams
        session.maxHeaderListSize = c.maxHeaderListSize
        session.maxHeaderCount = limits.maxHeaders
        session.initialWindowSize = c.initialWindowSize
        session.resetBurst = c.rapidResetBurst
        session.resetRate = c.rapidResetRate
        session.controlBurst = c.controlFrameBurst
        session.controlRate = c.controlFrameRate
        session.maxContinuations = c.maxContinuations
        zeroWindowTimeout = UInt64(c.zeroWindowTimeout.milliseconds) * 1_000_000
    }
}
