import Glibc
import ProxyCore
import ProxyEventLoop
import ProxyHTTP1
import ProxyTLS

/// One client connection: TLS on the socket, HTTP/1.1 requests parsed sans-IO, each forwarded to an origin (or
/// answered by the built-in page), responses streamed back in order.
///
/// Edge-triggered: readiness is remembered in `canRead`/`canWrite` and cleared only on EAGAIN/WANT_*, and
/// `pump()` does all the work it can. Backpressure is structural: bytes move only into buffers with room, so a
/// slow reader on either side stops the other side's reads, and no body is ever held whole.
final class ClientConnection: EventHandler, TimerHandler {
    enum Phase {
        case handshaking
        case open
        case closing
    }

    unowned let worker: Worker
    let fd: Int32
    let peer: SocketAddress
    let snapshot: RuntimeSnapshot
    private(set) var tls: TLSStream?
    let tlsState: TLSConnectionState
    private(set) var phase = Phase.handshaking
    private var canRead = true
    private var canWrite = true
    var peerEOF = false
    private(set) var closed = false
    private var inBuf: ByteBuffer?
    private var outBuf: ByteBuffer?
    /// HTTP state (request parser + the inline exchange, ~800 bytes) is allocated when the first request byte
    /// arrives, so a connection that only completed its handshake holds as little as possible.
    private final class HTTPState {
        var parser: RequestParser
        var ex = Exchange()
        init(limits: HTTP1Limits) { parser = RequestParser(limits: limits) }
    }
    private var http: HTTPState?
    private var httpState: HTTPState {
        if let h = http { return h }
        let h = HTTPState(limits: snapshot.limits)
        http = h
        return h
    }
    private var parser: RequestParser {
        _read { yield httpState.parser }
        _modify { yield &httpState.parser }
    }
    /// The parser must be called again even without new bytes (after head/body events).
    private var parserPending = false
    /// Close once the current response is flushed (client asked, error, drain, or unframed response).
    private var closeAfterResponse = false
    private var draining = false
    private var handshakeDone = false
    private var acceptedAt: UInt64
    private var deadline: UInt64 = 0
    /// When an idle keep-alive connection drops its HTTP state (0: not scheduled).
    private var compactAt: UInt64 = 0
    var timerSlot = TimerSlot()
    /// Bytes of a new request head received but not yet complete (header-read timeout applies).
    private var headInProgress = false
    private(set) var tlsVersion: Int32 = 0
    private(set) var outcome: TicketOutcome = .full
    private var requestsServed = 0

    /// The current exchange, stored inline in the HTTP state (no per-request allocation). Reading it before the
    /// first request sees an idle exchange.
    var ex: Exchange {
        _read {
            if let h = http { yield h.ex } else { yield Exchange.idle }
        }
        _modify { yield &httpState.ex }
    }
    /// Built on the first proxied request (needs the handshake's fingerprint), reused for the rest.
    private var forwarding: ForwardingContext?
    private var cachedPeerText: [UInt8]?
    /// Set when ALPN chose h2: that driver owns the connection's I/O from then on (ClientConnection+H2.swift).
    var h2: H2Connection?

    init(worker: Worker, fd: Int32, peer: SocketAddress) {
        self.worker = worker
        self.fd = fd
        self.peer = peer
        self.snapshot = worker.snapshot
        self.tlsState = TLSConnectionState(worker: worker.tlsWorker, contextSet: worker.snapshot.tls)
        self.acceptedAt = worker.loop.now
    }

    /// Creates the TLS session and registers the socket. False when the connection was refused (fd closed).
    func start() -> Bool {
        guard let t = snapshot.tls.accept(fd: fd, state: tlsState) else {
            Socket.close(fd)
            return false
        }
        tls = t
        do {
            try worker.loop.register(
                fd: fd,
                interest: EventLoop.readable | EventLoop.writable | EventLoop.readHangup | EventLoop.edgeTriggered,
                handler: self
            )
        } catch {
            t.free()
            tls = nil
            Socket.close(fd)
            return false
        }
        setDeadline(acceptedAt &+ snapshot.timeouts.handshake)
        return true
    }

    // MARK: events

    func handleEvent(_ events: UInt32) {
        if let h2 {
            h2.handleEvent(events)
            return
        }
        if events & (EventLoop.readable | EventLoop.readHangup | EventLoop.hangup | EventLoop.error) != 0 {
            canRead = true
        }
        if events & (EventLoop.writable | EventLoop.hangup | EventLoop.error) != 0 { canWrite = true }
        pump()
    }

    func upstreamReady() { pump() }

    func timerFired(now: UInt64) {
        guard !closed else { return }
        if compactAt != 0 && now >= compactAt {
            compactAt = 0
            compactIfIdle()
        }
        guard deadline != 0 else { return }
        if now >= deadline {
            onTimeout(now: now)
        } else {
            worker.loop.schedule(at: compactAt != 0 ? min(compactAt, deadline) : deadline, self)
        }
    }

    /// A keep-alive connection idle for a second gives back its HTTP state, forwarding context and TLS record
    /// buffers (about 2 KiB): busy connections keep them (no allocation per request), idle ones stay small.
    private func compactIfIdle() {
        guard phase == .open, !ex.active, !headInProgress, !parserPending, inBuf?.isEmpty ?? true,
            outBuf?.isEmpty ?? true
        else { return }
        http = nil
        forwarding = nil
        worker.compactedSinceTrim += 1
        if let b = inBuf {
            worker.bufferPool.release(b)
            inBuf = nil
        }
        tls?.releaseBuffers()
    }

    /// Moves the timer only when the deadline comes earlier; a later deadline is picked up when the pending timer
    /// fires (so a keep-alive request costs no heap operation).
    private func setDeadline(_ d: UInt64) {
        deadline = d
        if d != 0 && (!timerSlot.isPending || timerSlot.deadline > d) {
            worker.loop.schedule(at: d, self)
        }
    }

    private func onTimeout(now: UInt64) {
        switch phase {
        case .handshaking:
            worker.logger.debug("handshake timeout from \(peer)")
            abort()
        case .open where ex.active && ex.upstream != nil && !ex.responseEnded:
            // Upstream too slow: 504 if nothing was sent yet, otherwise the response must not look complete.
            worker.metrics.upstreamError("timeout")
            if ex.responseHeadSent {
                abort()
            } else {
                failExchange(status: 504)
                pump()  // a timer is not an I/O event: write the answer now
            }
        case .open where headInProgress:
            sendErrorAndClose(status: 408)
            pump()
        default:
            // Idle keep-alive, or a client that stopped reading/sending: close.
            closeNow()
        }
    }

    // MARK: the pump

    private func pump() {
        guard !closed else { return }
        if phase == .handshaking {
            guard continueHandshake() else { return }
        }
        var rounds = 0
        while !closed {
            rounds += 1
            var progress = false
            if flushClient() { progress = true }
            if closed { return }
            if ex.active && ex.upstream != nil {
                if driveUpstream() { progress = true }
                if closed { return }
            }
            if readClient() { progress = true }
            if closed { return }
            if processClientInput() { progress = true }
            if closed { return }
            if phase == .closing, outBuf?.isEmpty ?? true {
                closeNow()
                return
            }
            if !progress || rounds > 64 { break }
        }
        if rounds > 64 && !closed {
            // Fairness: let other connections run; the edge-triggered flags keep our state.
            worker.loop.schedule(at: 0, YieldTimer(self))
        }
        refreshDeadline()
    }

    /// Re-entry after a fairness yield.
    fileprivate func resume() { pump() }

    private func continueHandshake() -> Bool {
        guard let tls else { return false }
        switch tls.handshake() {
        case .done:
            phase = .open
            handshakeDone = true
            // The handshake may have completed on any wake-up (even EPOLLOUT alone), and OpenSSL's last socket
            // read succeeded: the request may already sit in its read-ahead buffer or the socket with no edge
            // left to announce it. Always try to read once (found by the bench harness: ~0.3% of TLS 1.2
            // resumptions waited for the client's close).
            canRead = true
            tlsVersion = tls.version
            outcome = tlsState.finalOutcome(resumed: tls.resumed)
            worker.metrics.handshake(version: tlsVersion, outcome: outcome)
            if tlsVersion == 0x0304 && tls.resumed && tlsState.ticketsEnabled && tlsState.tls13Tickets > 1
                && outcome != .staleResumedNoRenewal
            {
                tls.issueExtraTickets(tlsState.tls13Tickets - 1)
            }
            setDeadline(worker.loop.now &+ snapshot.timeouts.idle)
            if startH2IfNegotiated() { return false }
            return true
        case .wantRead:
            canRead = false
            return false
        case .wantWrite:
            canWrite = false
            return false
        case .failed(let why):
            worker.metrics.handshakeFailures.increment()
            worker.logger.debug("TLS handshake with \(peer) failed: \(why)")
            abort()
            return false
        }
    }

    /// Writes pending response bytes through TLS. Returns true when bytes moved.
    private func flushClient() -> Bool {
        guard let out = outBuf, !out.isEmpty, canWrite, let tls else { return false }
        var moved = false
        while !out.isEmpty {
            switch tls.write(out.readable) {
            case .written(let n):
                out.consume(n)
                worker.metrics.bytesOut.increment(by: Int64(n))
                moved = true
            case .wantWrite:
                canWrite = false
                return moved
            case .wantRead:
                canRead = false
                return moved
            case .failed:
                closeNow()
                return moved
            }
        }
        if out.isEmpty && !ex.active && phase != .closing {
            worker.bigBufferPool.release(out)
            outBuf = nil
        }
        return moved
    }

    /// Reads decrypted bytes from the client while there is room. Returns true when bytes arrived.
    private func readClient() -> Bool {
        guard canRead, !peerEOF, phase == .open, let tls else { return false }
        if inBuf == nil { inBuf = worker.bufferPool.acquire() }
        let buf = inBuf!
        var moved = false
        while buf.freeCount > 0 {
            switch tls.read(into: buf.writable) {
            case .bytes(let n):
                buf.commit(n)
                worker.metrics.bytesIn.increment(by: Int64(n))
                moved = true
            case .wantRead:
                canRead = false
                releaseInBufIfEmpty()
                if !ex.active && inBuf == nil { tls.releaseBuffers() }  // idle: hold no record buffers
                return moved
            case .wantWrite:
                canWrite = false
                return moved
            case .closed:
                peerEOF = true
                onClientEOF()
                return moved
            case .failed(let why):
                worker.logger.debug("TLS read from \(peer) failed: \(why)")
                closeNow()
                return moved
            }
        }
        return moved
    }

    private func releaseInBufIfEmpty() {
        if let b = inBuf, b.isEmpty, !parserPending {
            worker.bufferPool.release(b)
            inBuf = nil
        }
    }

    private func onClientEOF() {
        if ex.active && !ex.requestEnded {
            // The client went away mid-request: nothing to answer.
            closeNow()
        } else if !ex.active {
            closeNow()
        } else {
            // Request complete, response in flight: finish it, then close.
            closeAfterResponse = true
        }
    }

    // MARK: requests

    /// Feeds buffered client bytes to the parser. Returns true when anything was consumed or completed.
    private func processClientInput() -> Bool {
        guard phase == .open, !closeAfterResponse || ex.active else { return false }
        var progress = false
        while !closed {
            // One request at a time: after its end, the next (pipelined) head waits for the response.
            if ex.active && ex.requestEnded { return progress }
            let have = inBuf?.readableCount ?? 0
            if have == 0 && !parserPending { return progress }
            var limit = have
            if ex.active {
                // Body bytes: give the parser only what the destination can take now (backpressure).
                let room = ex.bodyRoom(worker: worker)
                if room <= 0 { return progress }
                limit = min(have, room)
            }
            let event: ParseEvent
            if let b = inBuf {
                event = parser.parse(UnsafeRawBufferPointer(start: b.base + b.start, count: limit))
            } else {
                event = parser.parse(UnsafeRawBufferPointer(start: nil, count: 0))
            }
            switch event {
            case .needMore:
                if limit > 0 {
                    inBuf!.consume(limit)
                    if !ex.active { headInProgress = true }
                    progress = true
                }
                parserPending = false
                if !ex.active { releaseInBufIfEmpty() }
                return progress
            case .head(let consumed):
                inBuf?.consume(consumed)
                parserPending = true
                headInProgress = false
                progress = true
                startExchange()
            case .body(let range, let consumed):
                let b = inBuf!
                forwardRequestBody(
                    UnsafeRawBufferPointer(start: b.base + b.start + range.lowerBound, count: range.count)
                )
                b.consume(consumed)
                parserPending = true
                progress = true
            case .end(let consumed):
                inBuf?.consume(consumed)
                parserPending = false
                progress = true
                requestEnded()
            case .informational:
                parserPending = true
            case .error(let e):
                parserPending = false
                worker.logger.debug("bad request from \(peer): \(e)")
                if ex.active && ex.responseHeadSent {
                    abort()
                } else {
                    if ex.active { ex.dropUpstream(worker: worker, reusable: false) }
                    ex.active = false
                    sendErrorAndClose(status: Int(e.status))
                }
                return true
            }
        }
        return progress
    }

    private func startExchange() {
        let head = parser.head
        ex.begin(head: head, now: worker.loop.now)
        requestsServed += 1
        if !head.keepAlive || draining { closeAfterResponse = true }
        if snapshot.origins.isEmpty {
            ex.local = true
            return
        }
        if head.expectsContinue {
            // We answer the expectation ourselves and do not forward it: the origin sees a plain request.
            ensureOutBuf().append("HTTP/1.1 100 Continue\r\n\r\n")
        }
        ex.upOut = worker.bigBufferPool.acquire()
        guard HTTPGlue.writeUpstreamRequestHead(head, into: ex.upOut!, connection: self) else {
            failExchange(status: 431)
            return
        }
        connectUpstream()
    }

    private func forwardRequestBody(_ bytes: UnsafeRawBufferPointer) {
        ex.requestBodyBytes += bytes.count
        guard !ex.local, let out = ex.upOut else { return }
        if ex.requestChunked {
            HTTPGlue.appendChunk(bytes, to: out)
        } else {
            out.append(bytes)
        }
    }

    private func requestEnded() {
        ex.requestEnded = true
        if ex.local {
            respondWithBuiltinPage()
            return
        }
        if ex.requestChunked, let out = ex.upOut { out.append("0\r\n\r\n") }
    }

    // MARK: upstream

    private func connectUpstream() {
        let origins = snapshot.origins
        while ex.attempts < origins.count * 2 {
            let oi = worker.roundRobin % origins.count
            worker.roundRobin &+= 1
            ex.attempts += 1
            if let pooled = worker.takeIdleUpstream(origin: oi) {
                attach(pooled)
                return
            }
            let origin = origins[oi]
            for addr in origin.addresses {
                do {
                    let u = try UpstreamConnection.connect(worker: worker, origin: oi, address: addr)
                    attach(u)
                    // The connect timeout applies only while the connect is pending; a connect that completed at
                    // once (common on loopback) is already under the read timeout set by attach.
                    if !u.connected { ex.upstreamDeadline = worker.loop.now &+ snapshot.timeouts.upstreamConnect }
                    return
                } catch {
                    worker.metrics.upstreamError("connect")
                    worker.logger.debug("connect to \(addr) failed: \(error)")
                }
            }
        }
        failExchange(status: 502)
    }

    private func attach(_ u: UpstreamConnection) {
        u.owner = self
        worker.loop.cancelTimer(u)  // no idle timeout while in use
        ex.upstream = u
        ex.originIndex = u.origin
        ex.upstreamDeadline = worker.loop.now &+ snapshot.timeouts.upstreamRead
    }

    /// Moves bytes between the origin and our buffers. Returns true when anything moved.
    private func driveUpstream() -> Bool {
        guard let u = ex.upstream else { return false }
        var progress = false
        if !u.connected {
            guard u.canWrite || u.canRead else { return false }
            let e = u.finishConnect()
            if e != 0 {
                worker.metrics.upstreamError("connect")
                worker.logger.debug("connect to \(u.address) failed: \(String(cString: strerror(e)))")
                retryOrFail(u, status: 502)
                return true
            }
            ex.upstreamDeadline = worker.loop.now &+ snapshot.timeouts.upstreamRead
            progress = true
        }
        // Request bytes toward the origin.
        if let out = ex.upOut, u.canWrite {
            while ex.upSent < out.readableCount {
                let pending = UnsafeRawBufferPointer(
                    start: out.base + out.start + ex.upSent,
                    count: out.readableCount - ex.upSent
                )
                guard let r = u.write(pending) else {
                    retryOrFail(u, status: 502)
                    return true
                }
                guard case .processed(let n) = r else { break }
                ex.upSent += n
                progress = true
            }
            // Keep the bytes of a retryable request until the origin answers; otherwise free the space.
            if !ex.retryable && ex.upSent > 0 {
                out.consume(ex.upSent)
                ex.upSent = 0
            }
        }
        // Response bytes from the origin.
        fill: while u.canRead && !ex.responseEnded {
            switch u.fillInput() {
            case .failed:
                upstreamDied(u)
                return true
            case .full:
                break fill
            case .read:
                progress = true
                ex.originAnswered(readDeadline: worker.loop.now &+ snapshot.timeouts.upstreamRead)
            case .blocked, .eof:
                break
            }
            if processUpstreamInput() { progress = true }
            if closed || ex.upstream == nil { return true }
        }
        if processUpstreamInput() { progress = true }
        if closed || ex.upstream == nil { return true }
        if u.peerClosed && !ex.responseEnded && (u.inBuf?.isEmpty ?? true) {
            // EOF: ends a read-until-close body, otherwise the origin died.
            let ev = ex.respParser.finish()
            if case .end = ev {
                responseEnded(reusable: false)
            } else {
                upstreamDied(u)
            }
            return true
        }
        return progress
    }

    /// Parses buffered origin bytes into the client's output buffer. Returns true when anything happened.
    private func processUpstreamInput() -> Bool {
        guard let u = ex.upstream else { return false }
        var progress = false
        while !closed && !ex.responseEnded {
            let have = u.inBuf?.readableCount ?? 0
            if have == 0 && !ex.respParserPending { break }
            let out = ensureOutBuf()
            var limit = have
            if ex.responseHeadSent {
                let room = out.freeCount - 32
                if room <= 0 { break }
                limit = min(have, room)
            }
            let ev: ParseEvent
            if let b = u.inBuf {
                ev = ex.respParser.parse(
                    UnsafeRawBufferPointer(start: b.base + b.start, count: limit),
                    requestIsHEAD: ex.isHEAD
                )
            } else {
                ev = ex.respParser.parse(UnsafeRawBufferPointer(start: nil, count: 0), requestIsHEAD: ex.isHEAD)
            }
            switch ev {
            case .needMore:
                if limit > 0 { u.inBuf!.consume(limit) }
                ex.respParserPending = false
                return progress || limit > 0
            case .informational(let consumed):
                // 1xx from the origin (we answered Expect ourselves): not forwarded.
                u.inBuf?.consume(consumed)
                ex.respParserPending = true
                progress = true
            case .head(let consumed):
                u.inBuf?.consume(consumed)
                ex.respParserPending = true
                progress = true
                if !sendResponseHead() { return true }
            case .body(let range, let consumed):
                let b = u.inBuf!
                let bytes = UnsafeRawBufferPointer(start: b.base + b.start + range.lowerBound, count: range.count)
                if ex.responseChunked { HTTPGlue.appendChunk(bytes, to: out) } else { out.append(bytes) }
                ex.responseBodyBytes += range.count
                b.consume(consumed)
                ex.respParserPending = true
                progress = true
            case .end(let consumed):
                u.inBuf?.consume(consumed)
                ex.respParserPending = false
                if ex.responseChunked { out.append("0\r\n\r\n") }
                responseEnded(reusable: ex.respParser.head.keepAlive && (u.inBuf?.isEmpty ?? true))
                return true
            case .error(let e):
                worker.logger.debug("bad response from \(u.address): \(e)")
                worker.metrics.upstreamError("bad_response")
                ex.respParserPending = false
                if ex.responseHeadSent { abort() } else { failExchange(status: 502) }
                return true
            }
        }
        return progress
    }

    private func sendResponseHead() -> Bool {
        let resp = ex.respParser.head
        ex.status = Int(resp.status)
        if !ex.requestEnded {
            // The origin answered before the whole request body arrived: the connection cannot be reused.
            closeAfterResponse = true
        }
        let out = ensureOutBuf()
        let framing = HTTPGlue.writeClientResponseHead(
            resp,
            requestVersion: ex.version,
            isHEAD: ex.isHEAD,
            close: closeAfterResponse,
            into: out,
            scratch: &worker.scratch
        )
        switch framing {
        case .none:
            failExchange(status: 502)
            return false
        case .some(let f):
            ex.responseChunked = f.chunked
            if f.closeDelimited { closeAfterResponse = true }
            ex.responseHeadSent = true
            return true
        }
    }

    private func responseEnded(reusable: Bool) {
        ex.responseEnded = true
        finishExchange(upstreamReusable: reusable && ex.requestEnded)
    }

    private func retryOrFail(_ u: UpstreamConnection, status: Int) {
        ex.dropUpstream(worker: worker, reusable: false)
        let neverReached = !u.connected || (u.reused && ex.retryable)
        if neverReached && ex.retryable && ex.attempts < snapshot.origins.count * 2 {
            ex.upSent = 0
            connectUpstream()
        } else {
            failExchange(status: status)
        }
    }

    private func upstreamDied(_ u: UpstreamConnection) {
        if !ex.responseHeadSent {
            if u.reused && ex.retryable && ex.attempts < snapshot.origins.count * 2 {
                retryOrFail(u, status: 502)
                return
            }
            worker.metrics.upstreamError("reset_before_headers")
            failExchange(status: 502)
        } else {
            worker.metrics.upstreamError("reset_mid_body")
            worker.logger.debug("origin \(u.address) closed mid-response; aborting client \(peer)")
            ex.dropUpstream(worker: worker, reusable: false)
            logExchange()
            abort()
        }
    }

    /// Answers the current exchange with an error status (no origin response was sent yet).
    private func failExchange(status: Int) {
        ex.dropUpstream(worker: worker, reusable: false)
        ex.status = status
        logExchange()
        ex.reset(worker: worker)
        sendErrorAndClose(status: status)
    }

    private func finishExchange(upstreamReusable: Bool) {
        ex.dropUpstream(worker: worker, reusable: upstreamReusable && !draining)
        logExchange()
        ex.reset(worker: worker)
        if closeAfterResponse || draining {
            phase = .closing
        } else {
            setDeadline(worker.loop.now &+ snapshot.timeouts.idle)
            // Between requests an idle keep-alive connection gives its input buffer back to the pool, and after
            // a second of idleness its HTTP state too.
            releaseInBufIfEmpty()
            compactAt = worker.loop.now &+ 1_000_000_000
            if !timerSlot.isPending || timerSlot.deadline > compactAt { worker.loop.schedule(at: compactAt, self) }
        }
    }

    // MARK: local responses

    private func respondWithBuiltinPage() {
        let out = ensureOutBuf()
        let body = BuiltinPage.render(connection: self, head: parser.head)
        HTTPGlue.writeSimpleResponse(
            status: 200,
            contentType: body.contentType,
            body: body.bytes,
            close: closeAfterResponse,
            isHEAD: ex.isHEAD,
            into: out,
            scratch: &worker.scratch
        )
        ex.status = 200
        ex.responseBodyBytes = body.bytes.count
        ex.responseEnded = true
        finishExchange(upstreamReusable: false)
    }

    private func sendErrorAndClose(status: Int) {
        let out = ensureOutBuf()
        out.clear()
        HTTPGlue.writeErrorResponse(status: status, into: out, scratch: &worker.scratch)
        worker.metrics.request(status: status)
        closeAfterResponse = true
        phase = .closing
    }

    private func ensureOutBuf() -> ByteBuffer {
        if let b = outBuf { return b }
        let b = worker.bigBufferPool.acquire()
        outBuf = b
        return b
    }

    // MARK: logging

    private func logExchange() {
        worker.metrics.request(status: ex.status)
        guard worker.accessLog != nil else { return }
        AccessLogLine.append(
            connection: self,
            exchange: ex,
            to: &worker.logLines,
            clock: &worker.logClock,
            now: monotonicNanos()
        )
    }

    // MARK: deadlines and closing

    private func refreshDeadline() {
        guard !closed else { return }
        let now = worker.loop.now
        switch phase {
        case .handshaking:
            break
        case .closing:
            setDeadline(now &+ snapshot.timeouts.idle)
        case .open:
            if ex.active && ex.upstream != nil && !ex.responseEnded {
                deadline = ex.upstreamDeadline
                setDeadline(ex.upstreamDeadline)
            } else if headInProgress {
                if deadline == 0 || deadline > now &+ snapshot.timeouts.headerRead {
                    setDeadline(now &+ snapshot.timeouts.headerRead)
                }
            } else if !ex.active {
                if deadline < now { setDeadline(now &+ snapshot.timeouts.idle) }
            } else {
                setDeadline(now &+ snapshot.timeouts.idle)
            }
        }
    }

    /// Called by the worker on drain: idle connections close now, busy ones after their response.
    func drain() {
        if let h2 {
            h2.drain()
            return
        }
        draining = true
        closeAfterResponse = true
        if phase == .open && !ex.active && !headInProgress && (outBuf?.isEmpty ?? true) {
            closeNow()
        }
    }

    /// Graceful close: close_notify, then close. When the client already closed (its close_notify or EOF), no
    /// reply is sent, as nginx does: the client has usually closed its socket, so our alert would only draw a
    /// TCP RST (measured: one RST per connection and 2–3x lower handshake throughput under load).
    func closeNow() {
        guard !closed else { return }
        if handshakeDone && !peerEOF { tls?.shutdown() }
        release(abortive: false)
    }

    /// Abortive close (RST, no close_notify): a truncated response must never look complete.
    func abort() { release(abortive: true) }

    func forceClose() { release(abortive: true) }

    private func release(abortive: Bool) {
        guard !closed else { return }
        closed = true
        worker.loop.cancelTimer(self)
        h2?.teardown()
        h2 = nil
        ex.dropUpstream(worker: worker, reusable: false)
        ex.reset(worker: worker)
        worker.loop.forgetClosing(fd: fd)
        tls?.free()
        tls = nil
        if abortive { Socket.abort(fd) } else { Socket.close(fd) }
        if let b = inBuf { worker.bufferPool.release(b) }
        if let b = outBuf { worker.bigBufferPool.release(b) }
        inBuf = nil
        outBuf = nil
        worker.connectionClosed(fd: fd)
    }
}

/// A zero-delay timer that re-enters a connection's pump after a fairness yield.
private final class YieldTimer: TimerHandler {
    var timerSlot = TimerSlot()
    let c: ClientConnection
    init(_ c: ClientConnection) { self.c = c }
    func timerFired(now: UInt64) { c.resume() }
}

extension ClientConnection {
    /// The per-connection rewrite settings toward the origin: client address, stripped spoofable headers and,
    /// when enabled, the fingerprint headers (computed once per connection).
    func forwardingContext() -> ForwardingContext {
        if let f = forwarding { return f }
        var extra: [UInt8] = []
        let h = snapshot.fingerprintHeaders
        if h.enabled {
            let s = tlsState
            func line(_ name: String, _ value: String?) {
                guard let value, !value.isEmpty else { return }
                extra += Array(name.utf8) + [58, 32] + Array(value.utf8) + [13, 10]
            }
            line(h.ja3, s.ja3Hash)
            line(h.ja4, s.ja4)
            // Only an enforced policy reaches the origin: observe mode changes nothing.
            line(h.policy, s.policyEnforced ? s.policyName : nil)
            line(h.tag, s.policyEnforced ? s.tag : nil)
        }
        var f = snapshot.forwardingTemplate  // shares the per-snapshot arrays (copy-on-write)
        f.clientAddress = Array(peer.host.utf8)
        f.extraHeaderLines = extra
        forwarding = f
        return f
    }

    var tlsVersionStatic: StaticString { tls?.versionName ?? "unknown" }
    var cipherNamePointer: UnsafePointer<CChar>? { tls?.cipherName }
    var serverNamePointer: UnsafePointer<CChar>? { tls?.serverNamePointer }
    /// The client address as text, formatted once per connection.
    var peerText: [UInt8] {
        if let t = cachedPeerText { return t }
        let t = Array(peer.description.utf8)
        cachedPeerText = t
        return t
    }
    var tlsVersionName: String { tlsVersionStatic.description }
    var cipherName: String? { tls?.cipherName.map { String(cString: $0) } }
    var alpnName: String? { tls?.alpn }
    var serverName: String? { tls?.serverName }
    var resumed: Bool { tls?.resumed ?? false }
}
