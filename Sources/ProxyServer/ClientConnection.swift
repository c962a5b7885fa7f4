import Glibc
import ProxyCore
import ProxyEventLoop
import ProxyForwarder
import ProxyHTTP1
import ProxyTLS

/// One client connection: TLS on the socket, HTTP/1.1 requests parsed sans-IO, each forwarded to an origin (or
/// answered by the built-in page), responses streamed back in order.
///
/// Edge-triggered: readiness is remembered in `canRead`/`canWrite` and cleared only on EAGAIN/WANT_*, and
/// `pump()` does all the work it can. Backpressure is structural: bytes move only into buffers with room, so a
/// slow reader on either side stops the other side's reads, and no body is ever held whole.
final class ClientConnection: EventHandler, TimerHandler, DeferredWork {
    enum Phase {
        case handshaking
        case open
        case closing
    }

    // SAFETY: a worker lives as long as the process and outlives its connections; unowned(unsafe) avoids an
    // unowned-retain on every access on the request path (swift_unownedRetainStrong in perf).
    unowned(unsafe) let worker: Worker
    /// `worker.loop`, held directly (reading the worker's implicitly unwrapped `var` retained and released the
    /// loop on every clock read of the request path).
    unowned(unsafe) let loop: EventLoop
    let fd: Int32
    /// The client: the socket's peer, or the address a PROXY protocol header named (`listen_proxy_protocol`).
    private(set) var peer: SocketAddress
    /// `listen_proxy_protocol`: the PROXY header has not been read yet (it comes before the TLS ClientHello).
    private var awaitingProxyHeader = false
    let snapshot: RuntimeSnapshot
    private(set) var tls: TLSStream?
    let tlsState: ServerTLSState
    private(set) var phase = Phase.handshaking
    private var canRead = true
    private var canWrite = true
    var peerEOF = false
    /// The client's EOF was read behind request bytes not yet parsed: `onClientEOF` waits for them (see `pump`).
    private var eofUndecided = false
    /// A hang-up edge (EPOLLRDHUP, EPOLLHUP, EPOLLERR) was reported: from then on reads go on until EAGAIN or EOF
    /// even when the socket looked emptied (`TLSStream.socketEmptied`), because no later edge announces the EOF.
    private(set) var sawHangup = false
    private(set) var closed = false
    var deferredSlot = DeferredSlot()
    /// Closed for the protocol, the socket still open: draining the client's last bytes (see `closeNow`).
    private var lingering = false
    private var lingerBytes = 0
    private var inBuf: ByteBuffer?
    private var outBuf: ByteBuffer?
    /// HTTP state (request parser + the inline exchange, ~800 bytes) is taken when the first request byte
    /// arrives, so a connection that only completed its handshake holds as little as possible. It comes from the
    /// worker's spares when there is one (`Worker.takeHTTPState`) and goes back there when the connection closes or
    /// idles, so that a new connection does not allocate it, its head buffer and its field array again.
    /// What `ex` reads before the first request: an idle exchange, never written (writes go to `httpState`).
    private nonisolated(unsafe) static let idleExchange: UnsafeMutablePointer<Exchange> = {
        let p = UnsafeMutablePointer<Exchange>.allocate(capacity: 1)
        p.initialize(to: Exchange.idle)
        return p
    }()
    private var http: ClientHTTPState? {
        didSet { exchangePointer = http?.exchange }
    }
    /// `http?.exchange`, kept beside it so that `ex` costs no retain of the state object per access.
    private var exchangePointer: UnsafeMutablePointer<Exchange>?
    private var httpState: ClientHTTPState {
        if let h = http { return h }
        let h = worker.takeHTTPState(limits: snapshot.limits)
        http = h
        return h
    }

    /// Gives the HTTP state back to the worker (the connection closed, or idled for a second).
    private func dropHTTPState() {
        guard let h = http else { return }
        http = nil
        worker.recycle(h)
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
    /// Upgrade drain: keep-alive connections are closed only after a response that says `Connection: close` (or
    /// once idle for a second), never while a client may be sending its next request.
    private var drainGently = false
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
    /// The last time bytes moved to or from the client (its side of the exchange's timeouts).
    private var lastClientProgress: UInt64 = 0
    /// The origin side of this connection's exchanges (created with the first proxied request).
    private var fwd: OriginForwarder?
    /// The response framing toward this client for the current exchange.
    private var encoder = HTTP1ResponseEncoder()
    /// The current exchange is a tunnel (the origin's 101 was forwarded): the client's bytes go to the forwarder
    /// unparsed, the origin's come back as they are (OriginForwarder's tunnel). Counted in the tunnel gauge.
    private var tunnel = false
    /// Tunnel: the origin ended its side; close_notify follows once the bytes before its EOF are flushed.
    private var tunnelOriginDone = false
    private var tunnelClientShut = false
    /// Tunnel: the client's EOF was passed to the forwarder.
    private var tunnelClientEndSent = false

    /// The current exchange, stored inline in the HTTP state (no per-request allocation). Reading it before the
    /// first request sees an idle exchange.
    var ex: Exchange {
        unsafeAddress { UnsafePointer(exchangePointer ?? Self.idleExchange) }
        unsafeMutableAddress { exchangePointer ?? httpState.exchange }
    }
    /// Built on the first proxied request (needs the handshake's fingerprint), reused for the rest.
    private var forwarding: ForwardingBox?
    private var cachedPeerText: [UInt8]?
    /// This connection's number in its worker (never reused): the key of its private origin connections.
    let serial: UInt64
    /// Some origin connection carries this client's identity (PROXY protocol): close those that are idle when
    /// this connection closes.
    var hasPrivateOrigins = false
    /// Set when ALPN chose h2: that driver owns the connection's I/O from then on (ClientConnection+H2.swift).
    var h2: H2Connection?

    init(worker: Worker, fd: Int32, peer: SocketAddress) {
        self.worker = worker
        self.loop = worker.loop
        self.fd = fd
        self.peer = peer
        self.snapshot = worker.snapshot
        self.tlsState = ServerTLSState(worker: worker.tlsWorker, contextSet: worker.snapshot.tls, peer: peer)
        self.acceptedAt = loop.now
        worker.clientSerials &+= 1
        self.serial = worker.clientSerials
    }

    /// Reads the PROXY protocol header that must start the connection (`listen_proxy_protocol`): peeks, parses,
    /// then consumes exactly the header, so the TLS record after it is untouched. A peer not allowed to send one,
    /// or a malformed or oversized header, closes the connection (counted; nginx and HAProxy do the same). True
    /// once the header was consumed.
    private func readProxyHeader() -> Bool {
        var buf = [UInt8](repeating: 0, count: ProxyProtocol.maxLength)
        let n = buf.withUnsafeMutableBytes { Socket.peek(fd, $0) }
        switch n {
        case -1:
            canRead = false
            return false
        case -2, 0:
            closeNow()
            return false
        default: break
        }
        switch buf.withUnsafeBytes({ ProxyProtocol.parse(UnsafeRawBufferPointer(rebasing: $0[..<n])) }) {
        case .needMore:
            if peerClosedBeforeTLS || n >= ProxyProtocol.maxLength {
                closeNow()
            } else {
                canRead = false  // edge-triggered: the rest brings a new edge
            }
            return false
        case .invalid(let why):
            worker.metrics.proxyProtocol.rejected(reason: "malformed")
            worker.logger.debug("PROXY protocol from \(peer): \(why); closing")
            closeNow()
            return false
        case .header(let length, let version, let source):
            guard Socket.discard(fd, count: length) else {
                closeNow()
                return false
            }
            awaitingProxyHeader = false
            worker.metrics.proxyProtocol.accepted(version: version)
            if let source, let a = SocketAddress(literal: source.host, port: Int(source.port)) {
                peer = a
                tlsState.peer = a  // the detector counts the client's prefix, not the balancer's
            }
            return true
        }
    }

    /// Registers the socket and starts the handshake timer. The TLS session is created later, when the first TLS
    /// record has arrived (`createTLSWhenHelloArrives`): a connection that sends nothing costs only this object,
    /// its slot and timer, not OpenSSL's ~40 KB. False when the connection was refused (fd closed).
    func start() -> Bool {
        if let allowed = snapshot.proxyProtocolFrom {
            let from = peer.addressBytes
            guard allowed.contains(where: { $0.contains(from) }) else {
                // Only the load balancers may connect: anyone else could claim any client address.
                worker.metrics.proxyProtocol.rejected(reason: "source")
                worker.logger.debug("connection from \(peer) refused: not in proxy_protocol_from")
                Socket.close(fd)
                return false
            }
            awaitingProxyHeader = true
        }
        do {
            try loop.register(
                fd: fd,
                interest: EventLoop.readable | EventLoop.writable | EventLoop.readHangup | EventLoop.edgeTriggered,
                handler: self
            )
        } catch {
            Socket.close(fd)
            return false
        }
        setDeadline(acceptedAt &+ snapshot.timeouts.handshake)
        return true
    }

    /// The peer shut down its side before the TLS session was created.
    private var peerClosedBeforeTLS = false

    /// Before the first TLS record is complete: peek (consume nothing) and create the SSL only once it is there.
    /// True when the TLS session exists now.
    private func createTLSWhenHelloArrives() -> Bool {
        guard canRead else { return false }
        if awaitingProxyHeader && !readProxyHeader() { return false }
        switch Socket.firstRecordState(fd, scratch: worker.peekBuffer) {
        case .incomplete where peerClosedBeforeTLS:
            closeNow()  // the first record can never complete
            return false
        case .incomplete:
            canRead = false  // edge-triggered: the next bytes bring a new edge
            return false
        case .closedEmpty:
            closeNow()  // connected and left without a byte: nothing to answer
            return false
        case .failed:
            abort()
            return false
        case .ready:
            guard let t = snapshot.tls.accept(fd: fd, state: tlsState) else {
                abort()
                return false
            }
            tls = t
            return true
        }
    }

    // MARK: events

    func handleEvent(_ events: UInt32) {
        if lingering {
            drainLingering()
            return
        }
        if events & (EventLoop.readHangup | EventLoop.hangup | EventLoop.error) != 0 { sawHangup = true }
        if let h2 {
            h2.handleEvent(events)
            return
        }
        if events & (EventLoop.readable | EventLoop.readHangup | EventLoop.hangup | EventLoop.error) != 0 {
            canRead = true
        }
        if tls == nil && events & (EventLoop.readHangup | EventLoop.hangup) != 0 { peerClosedBeforeTLS = true }
        if events & (EventLoop.writable | EventLoop.hangup | EventLoop.error) != 0 { canWrite = true }
        pump()
    }

    func timerFired(now: UInt64) {
        if lingering {
            finishLingering(abortive: false)
            return
        }
        guard !closed else { return }
        if compactAt != 0 && now >= compactAt {
            compactAt = 0
            compactIfIdle()
        }
        guard deadline != 0 else { return }
        if now >= deadline {
            onTimeout(now: now)
        } else {
            loop.schedule(at: compactAt != 0 ? min(compactAt, deadline) : deadline, self)
        }
    }

    /// A keep-alive connection idle for a second gives back its HTTP state, forwarding context and TLS record
    /// buffers (about 2 KiB): busy connections keep them (no allocation per request), idle ones stay small.
    private func compactIfIdle() {
        guard phase == .open, !ex.active, !headInProgress, !parserPending, inBuf?.isEmpty ?? true,
            outBuf?.isEmpty ?? true
        else { return }
        if drainGently {
            closeNow()
            return
        }
        dropHTTPState()
        forwarding = nil
        if let f = fwd, !f.isActive {
            fwd = nil
            giveBack(f)
        }
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
            loop.schedule(at: d, self)
        }
    }

    private func onTimeout(now: UInt64) {
        switch phase {
        case .handshaking:
            worker.logger.debug("handshake timeout from \(peer)")
            // A FIN, not an RST: the lingering close reads what the client still sends (issue 15, item 10).
            closeNow()
        case .open where tunnel:
            // Only the tunnel's idle deadline applies (no byte moved either way): the forwarder closes both sides.
            if let f = fwd, f.isActive, f.deadline != 0, now >= f.deadline { f.checkTimeout(now: now) }
            pump()
        case .open where ex.active && !ex.local:
            if let f = fwd, f.isActive, f.deadline != 0, now >= f.deadline {
                // The origin is too slow: the forwarder retries, answers 504, or aborts a started response.
                f.checkTimeout(now: now)
            } else if !ex.responseHeadSent {
                // The client stalled its upload (nginx's client_body_timeout): 408.
                worker.logger.debug("request body from \(peer) stalled")
                failExchange(status: 408)
            } else {
                // The client stopped reading a response: it must not look complete.
                ex.truncated = true
                logExchange()
                ex.active = false
                abort()
                return
            }
            pump()  // a timer is not an I/O event: write the answer now
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
            if tunnelOriginDone && !tunnelClientShut && (outBuf?.isEmpty ?? true) {
                // The origin's half-close, passed on once its last bytes are out: close_notify (TLS 1.3 and
                // OpenSSL keep reading after it), the client's bytes still flow to the origin.
                tunnelClientShut = true
                tls?.shutdown()
            }
            if ex.active, let f = fwd, f.isActive {
                if f.drive(now: loop.now) { progress = true }
                if closed { return }
            }
            if readClient() { progress = true }
            if closed { return }
            if processClientInput() { progress = true }
            if closed { return }
            if eofUndecided && ((ex.active && ex.requestEnded) || ((inBuf?.isEmpty ?? true) && !parserPending)) {
                eofUndecided = false
                onClientEOF()
                if closed { return }
            }
            if phase == .closing, outBuf?.isEmpty ?? true {
                closeNow()
                return
            }
            if !progress { break }
            if rounds > 16 {
                // Fairness: the rest waits for the next tick, after the other connections' events; the
                // edge-triggered flags keep our state. A round can move a megabyte or more (the forwarder reads
                // the origin for as long as the client's output has room), so 16 rounds is the slice.
                loop.continueNextTick(self)
                break
            }
        }
        refreshDeadline()
    }

    /// The next slice, in the loop tick after the one that stopped (nothing when the connection closed meanwhile).
    func continueDeferred() { pump() }

    private func continueHandshake() -> Bool {
        if tls == nil && !createTLSWhenHelloArrives() { return false }
        guard let tls else { return false }
        switch tls.handshake() {
        case .done:
            phase = .open
            handshakeDone = true
            // The handshake may have completed on any wake-up (even EPOLLOUT alone), and OpenSSL's last socket
            // read succeeded: the request may already sit in its read-ahead buffer or the socket with no edge
            // left to announce it (found by the bench harness: ~0.3% of TLS 1.2 resumptions waited for the
            // client's close). So read once, unless that read emptied the socket and OpenSSL holds nothing: then
            // the request's bytes bring an edge of their own. (A request that came in one read with the client's
            // Finished sits in OpenSSL's buffer, which does not count as emptied.)
            canRead = sawHangup || !tls.socketEmptied
            tlsVersion = tls.version
            outcome = tlsState.finalOutcome(resumed: tls.resumed)
            worker.metrics.handshake(version: tlsVersion, outcome: outcome, nanoseconds: loop.now &- acceptedAt)
            tls.issueExtraTickets(tlsState.extraTicketsAfterHandshake(version: tlsVersion, resumed: tls.resumed))
            setDeadline(loop.now &+ snapshot.timeouts.idle)
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
            // OpenSSL has written its fatal alert: close with a FIN after it and linger, so a client that is still
            // writing reads the alert instead of a reset (issue 15, item 10; tlsfuzzer's ExpectClose).
            closeNow()
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
                lastClientProgress = loop.now
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
                lastClientProgress = loop.now
                moved = true
                if !sawHangup && tls.socketEmptied {
                    // Everything that arrived is read: the next bytes bring an edge (no SSL_read to see EAGAIN).
                    canRead = false
                    return moved
                }
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
                if !tunnel && (!(inBuf?.isEmpty ?? true) || parserPending) {
                    // The EOF came with the request's last bytes (a client that half-closes after sending):
                    // decided once they are parsed, so a complete request is answered whatever the timing.
                    eofUndecided = true
                } else {
                    onClientEOF()
                }
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
        } else if ex.active {
            // Request complete, response in flight: finish it, then close.
            closeAfterResponse = true
        } else if !(outBuf?.isEmpty ?? true) {
            // The last answer (a built-in page or an error) is still being written: close once it is out.
            phase = .closing
        } else {
            closeNow()
        }
    }

    // MARK: requests

    /// Feeds buffered client bytes to the parser. Returns true when anything was consumed or completed.
    private func processClientInput() -> Bool {
        if tunnel { return relayClientToOrigin() }
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
                let room = bodyRoom()
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
                lastClientProgress = loop.now
                startExchange()
                if phase != .open { return true }
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
                    fwd?.abandon()
                    abort()
                } else {
                    fwd?.abandon()
                    ex.active = false
                    sendErrorAndClose(status: Int(e.status))
                }
                return true
            }
        }
        return progress
    }

    /// Tunnel: the client's bytes to the forwarder as far as it has room (the rest waits in `inBuf`, and reading
    /// the client stops once that is full); its EOF once everything before it was handed over.
    private func relayClientToOrigin() -> Bool {
        guard phase == .open, let f = fwd, f.isTunnel else { return false }
        var moved = false
        if let b = inBuf, b.readableCount > 0 {
            let n = min(b.readableCount, f.requestBodyRoom())
            if n > 0 {
                f.sendRequestBody(UnsafeRawBufferPointer(start: b.base + b.start, count: n))
                b.consume(n)
                ex.requestBodyBytes += n
                moved = true
            }
        }
        if peerEOF && (inBuf?.isEmpty ?? true) && !tunnelClientEndSent {
            tunnelClientEndSent = true
            f.endTunnelUpstream()  // may end the tunnel now (forwarderResponseEnd)
            moved = true
        }
        return moved
    }

    private func startExchange() {
        // The head stays in the parser and is passed on borrowed (nothing parses while the exchange starts):
        // copying it out retained and released its two arrays twice per request (callgrind).
        guard let h = http else { return }
        startExchange(h.parser.head)
    }

    private func startExchange(_ head: RequestHead) {
        ex.begin(head: head, now: loop.now, logFields: worker.accessLog != nil)
        requestsServed += 1
        if !head.keepAlive || draining { closeAfterResponse = true }
        if let status = RequestPolicy.reject(method: head.method, authority: nil) {
            ex.local = true
            failExchange(status: status)
            return
        }
        if worker.upstreams.snapshot.isEmpty {
            ex.local = true
            return
        }
        let route = worker.route(
            sni: serverNamePointer,
            host: head.effectiveHost,
            target: head.originFormTarget,
            headers: head.headers,
            peer: peer
        )
        let pool: Int
        let hashKey: UInt64
        let websocket: Bool
        switch route {
        case .reject(let status):
            ex.local = true
            failExchange(status: status)
            return
        case .pool(let p, let key, let ws):
            (pool, hashKey, websocket) = (p, key, ws)
        }
        // An upgrade the route allows is forwarded with the proxy's own Connection/Upgrade fields; any other
        // Upgrade is stripped as hop-by-hop (ProtocolUpgrade).
        let upgrade = websocket ? ProtocolUpgrade.requested(head) : nil
        if head.expectsContinue {
            // We answer the expectation ourselves and do not forward it: the origin sees a plain request.
            ensureOutBuf().append("HTTP/1.1 100 Continue\r\n\r\n")
        }
        let f = forwarder
        f.begin(
            method: head.method,
            isHEAD: ex.isHEAD,
            requestChunked: head.isChunked,
            requestEnded: !head.hasBody,
            upgrade: upgrade != nil,
            now: loop.now
        )
        f.pool = pool
        f.hashKey = hashKey
        worker.scratch.removeAll(keepingCapacity: true)
        forwardingContext().appendRequestHead(
            head,
            framing: head.outboundFraming,
            upgrade: upgrade,
            to: &worker.scratch
        )
        guard f.appendHead(worker.scratch) else {
            f.abandon()
            failExchange(status: 431)
            return
        }
        f.start(now: loop.now)
    }

    /// The connection's forwarder, created with its first proxied request and reused for the rest.
    private var forwarder: OriginForwarder {
        if let f = fwd { return f }
        let f = worker.takeForwarder(timeouts: snapshot.forwarderTimeouts)
        f.sink = self
        f.client = self
        fwd = f
        return f
    }

    /// Detaches a forwarder this connection is done with and offers it to the worker for the next connection.
    private func giveBack(_ f: OriginForwarder) {
        f.sink = nil
        f.client = nil
        f.releaseBuffers()
        worker.recycle(f)
    }

    /// How many request-body bytes may be handed to the parser now.
    private func bodyRoom() -> Int {
        if ex.local { return Int.max }
        guard let f = fwd, f.isActive else { return Int.max }  // nothing to forward to: parse and discard
        return f.requestBodyRoom()
    }

    private func forwardRequestBody(_ bytes: UnsafeRawBufferPointer) {
        ex.requestBodyBytes += bytes.count
        guard !ex.local, let f = fwd, f.isActive else { return }
        f.sendRequestBody(bytes)
    }

    private func requestEnded() {
        ex.requestEnded = true
        if ex.local {
            respondWithBuiltinPage()
            return
        }
        if let f = fwd, f.isActive { f.endRequest() }
    }

    /// Answers the current exchange with an error status (no origin response was sent yet).
    private func failExchange(status: Int) {
        fwd?.abandon()
        ex.status = status
        ex.local = true
        logExchange()  // counts the request (with its pool and duration)
        ex.active = false
        sendErrorAndClose(status: status, counted: true)
    }

    private func finishExchange() {
        logExchange()
        ex.active = false
        fwd?.releaseBuffers()
        if closeAfterResponse || (draining && !drainGently) {
            phase = .closing
        } else {
            setDeadline(loop.now &+ snapshot.timeouts.idle)
            // Between requests an idle keep-alive connection gives its input buffer back to the pool, and after
            // a second of idleness its HTTP state too.
            releaseInBufIfEmpty()
            compactAt = loop.now &+ 1_000_000_000
            if !timerSlot.isPending || timerSlot.deadline > compactAt { loop.schedule(at: compactAt, self) }
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
        finishExchange()
    }

    /// `counted`: the caller already counted the request (`logExchange`); a proxy-made error counted twice before.
    private func sendErrorAndClose(status: Int, counted: Bool = false) {
        let out = ensureOutBuf()
        out.clear()
        HTTPGlue.writeErrorResponse(status: status, into: out, scratch: &worker.scratch)
        if !counted { worker.metrics.request(status: status) }
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
        if tunnel {
            tunnel = false
            worker.metrics.tunnelClosed()
        }
        worker.metrics.request(status: ex.status, pool: ex.originPool, nanoseconds: loop.now &- ex.startedAt)
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
        let now = loop.now
        switch phase {
        case .handshaking:
            break
        case .closing:
            setDeadline(now &+ snapshot.timeouts.idle)
        case .open:
            if tunnel, let f = fwd, f.isActive {
                setDeadline(f.deadline)  // the tunnel's idle deadline, for both directions
            } else if ex.active && !ex.local {
                // The origin's deadline (connect, send, read) and, while the client uploads or does not read
                // what we owe it, the client's: progress in either direction restarts its clock.
                var d = fwd.map { $0.isActive ? $0.deadline : 0 } ?? 0
                if !ex.requestEnded || !(outBuf?.isEmpty ?? true) {
                    let c = lastClientProgress &+ snapshot.timeouts.idle
                    d = d == 0 ? c : min(d, c)
                }
                deadline = d == 0 ? now &+ snapshot.timeouts.idle : d
                setDeadline(deadline)
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
    func drain(closeIdle: Bool = true) {
        if let h2 {
            h2.drain()
            return
        }
        draining = true
        let idle = phase == .open && !ex.active && !headInProgress && (outBuf?.isEmpty ?? true)
        if !closeIdle {
            // The next request (or the one in flight, if its head is not sent yet) is answered with
            // Connection: close; a connection already idle for a second (compacted) goes now.
            drainGently = true
            if ex.active && !ex.responseHeadSent { closeAfterResponse = true }
            if idle && compactAt == 0 && http == nil { closeNow() }
            return
        }
        closeAfterResponse = true
        if idle { closeNow() }
    }

    /// Graceful close: close_notify, then close. When the client already closed (its close_notify or EOF), no
    /// reply is sent, as nginx does: the client has usually closed its socket, so our alert would only draw a
    /// TCP RST (measured: one RST per connection and 2–3x lower handshake throughput under load).
    ///
    /// While the client may still be sending (HTTP/2 WINDOW_UPDATEs, an unread request body, pipelined bytes),
    /// the close lingers (nginx's lingering close): FIN after the bytes already queued, then the client's bytes
    /// are read and dropped until it closes or `lingerNanos` pass. A plain close() with unread input sends an RST
    /// that makes the client's kernel discard the end of the response it has not read yet (found by an HTTP/2
    /// download cut ~1.6 MB before its end at shutdown).
    func closeNow() {
        guard !closed else { return }
        if handshakeDone && !peerEOF { tls?.shutdown() }
        if peerEOF {
            release(abortive: false)
        } else {
            startLingering()
        }
    }

    /// How long a closing connection keeps draining the client's bytes, and how many it drops at most.
    static let lingerNanos: UInt64 = 5_000_000_000
    static let lingerMaxBytes = 64 << 20

    private func startLingering() {
        lingering = true
        lingerBytes = 0
        releaseState()
        Socket.shutdownWrite(fd)
        loop.schedule(at: loop.now &+ Self.lingerNanos, self)
        drainLingering()
    }

    /// Reads and drops what the client sends; closes at its EOF, on an error, or past the byte bound.
    private func drainLingering() {
        var sink: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        while lingering {
            let r: IOResult<Int>
            do {
                r = try withUnsafeMutableBytes(of: &sink) { try Socket.read(fd, $0) }
            } catch {
                finishLingering(abortive: false)
                return
            }
            switch r {
            case .wouldBlock:
                return
            case .processed(0):
                finishLingering(abortive: false)
                return
            case .processed(let n):
                lingerBytes += n
                if lingerBytes > Self.lingerMaxBytes {
                    finishLingering(abortive: true)
                    return
                }
            }
        }
    }

    private func finishLingering(abortive: Bool) {
        guard lingering else { return }
        lingering = false
        loop.cancelTimer(self)
        loop.forgetClosing(fd: fd)
        if abortive { Socket.abort(fd) } else { Socket.close(fd) }
        worker.connectionClosed(fd: fd)
    }

    /// Abortive close (RST, no close_notify): a truncated response must never look complete.
    func abort() {
        if lingering {
            finishLingering(abortive: true)
        } else {
            release(abortive: true)
        }
    }

    func forceClose() { abort() }

    private func release(abortive: Bool) {
        guard !closed else { return }
        releaseState()
        loop.cancelTimer(self)
        loop.forgetClosing(fd: fd)
        if abortive { Socket.abort(fd) } else { Socket.close(fd) }
        worker.connectionClosed(fd: fd)
    }

    /// Frees everything but the socket (closed by the caller, at once or after lingering).
    private func releaseState() {
        closed = true
        loop.cancelTimer(self)
        h2?.teardown()
        h2 = nil
        if ex.active && !ex.local && ex.status != 0 && !ex.responseEnded {
            ex.truncated = !tunnel
        }
        fwd?.abandon()
        if tunnel && ex.active {
            // A tunnel cut by the connection's end (client reset, drain timeout) is logged when it ends, as always.
            logExchange()
        }
        if let f = fwd {
            fwd = nil
            giveBack(f)
        }
        if hasPrivateOrigins { worker.closePrivateIdleUpstreams(of: serial) }
        ex.active = false
        tls?.free()
        tls = nil
        if let b = inBuf { worker.bufferPool.release(b) }
        if let b = outBuf { worker.bigBufferPool.release(b) }
        inBuf = nil
        outBuf = nil
        dropHTTPState()
    }
}

/// A client connection's HTTP/1 state: its request parser and the current exchange. Reused across connections
/// through the worker's spares (`Worker.takeHTTPState`, `Worker.recycle`).
final class ClientHTTPState {
    var parser: RequestParser
    /// The exchange at a fixed address, read and written through `ClientConnection.ex`'s addressors. (The
    /// `_read`/`_modify` coroutines they replace allocated a coroutine frame with malloc on each of the ~30 reads
    /// of a request: 30 % of the HTTP/1 64 B row's mallocs, callgrind.)
    let exchange: UnsafeMutablePointer<Exchange>
    init(limits: HTTP1Limits) {
        parser = RequestParser(limits: limits)
        exchange = .allocate(capacity: 1)
        exchange.initialize(to: Exchange())
    }
    deinit {
        exchange.deinitialize(count: 1)
        exchange.deallocate()
    }

    /// Back to the state of a new connection's, keeping the parser's buffer capacity.
    func reset(limits: HTTP1Limits) {
        parser.reset(limits: limits)
        exchange.pointee = Exchange()
    }
}

/// One connection's `ForwardingContext`, built once (see `forwardingContext()`).
final class ForwardingBox {
    let context: ForwardingContext
    init(_ context: consuming ForwardingContext) { self.context = context }

    /// `HTTP1Writer.appendTranslatedRequestHead` with this context, read in place (a method's `self.context` is
    /// borrowed; the same call made from outside copied the struct).
    func appendTranslatedRequestHead(
        method: ArraySlice<UInt8>,
        target: ArraySlice<UInt8>,
        authority: ArraySlice<UInt8>,
        headers: HTTPHeaders,
        framing: OutboundFraming,
        upgrade: ArraySlice<UInt8>? = nil,
        upgradeFields: [UInt8] = [],
        to out: inout [UInt8]
    ) {
        HTTP1Writer.appendTranslatedRequestHead(
            method: method,
            target: target,
            authority: authority,
            headers: headers,
            framing: framing,
            forwarding: context,
            upgrade: upgrade,
            upgradeFields: upgradeFields,
            to: &out
        )
    }

    /// `HTTP1Writer.appendRequestHead` with this context, read in place.
    func appendRequestHead(
        _ head: RequestHead,
        framing: OutboundFraming,
        upgrade: ArraySlice<UInt8>?,
        to out: inout [UInt8]
    ) {
        HTTP1Writer.appendRequestHead(head, framing: framing, forwarding: context, upgrade: upgrade, to: &out)
    }
}

extension ClientConnection {
    /// The per-connection rewrite settings toward the origin: client address, stripped spoofable headers and,
    /// when enabled, the fingerprint headers (computed once per connection).
    ///
    /// Returned boxed: a `let` in a final class is passed on borrowed, where returning the struct itself copied
    /// (retained and released) its seven arrays on every request.
    func forwardingContext() -> ForwardingBox {
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
        let t = snapshot.forwardingTemplate
        var via = t.via
        if h2 != nil, via.starts(with: "1.1 ".utf8) {
            // Via names the protocol the request was received with (RFC 9110 §7.6.3): "2" for HTTP/2 clients.
            via = Array("2 ".utf8) + via.dropFirst(4)
        }
        // Built field by field from the template (whose arrays it shares): copying the template and then
        // setting the client's fields copied every array twice (callgrind: 21 retains per connection).
        let box = ForwardingBox(
            ForwardingContext(
                clientAddress: peer.hostBytes,
                proto: t.proto,
                appendXForwardedFor: t.appendXForwardedFor,
                setXForwardedProto: t.setXForwardedProto,
                appendForwarded: t.appendForwarded,
                via: via,
                stripped: t.stripped,
                extraHeaderLines: extra,
                defaultHost: t.defaultHost
            )
        )
        forwarding = box
        return box
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

/// The HTTP/1 session's side of the forwarder: translates the origin's response into HTTP/1.x bytes for this
/// client (same length, re-chunked, or close-delimited for HTTP/1.0), in the connection's output buffer.
extension ClientConnection: ForwarderSink {
    func forwarderResponseHead(_ head: ResponseHead, isHEAD: Bool) -> Bool {
        ex.status = head.status
        if let f = fwd { (ex.originIndex, ex.originPool) = (f.server, f.pool) }
        if worker.accessLog != nil { ex.originAnswered(status: head.status, transport: fwd?.transport) }
        if head.status == 101 {
            // The connection becomes the tunnel; it closes when the tunnel ends.
            tunnel = true
            ex.tunnel = true
            tunnelOriginDone = false
            tunnelClientShut = false
            tunnelClientEndSent = false
            closeAfterResponse = true
            worker.metrics.tunnelOpened()
        }
        if !ex.requestEnded {
            // The origin answered before the whole request body arrived: the connection cannot be reused.
            closeAfterResponse = true
        }
        let out = ensureOutBuf()
        guard
            encoder.head(
                head,
                requestVersion: ex.version,
                isHEAD: isHEAD,
                close: closeAfterResponse,
                into: out,
                scratch: &worker.scratch
            )
        else { return false }
        ex.responseChunked = encoder.chunked
        if encoder.closeDelimited { closeAfterResponse = true }
        ex.responseHeadSent = true
        return true
    }

    var forwarderBodyRoom: Int { encoder.room(in: ensureOutBuf()) }

    func forwarderResponseBody(_ bytes: UnsafeRawBufferPointer) {
        encoder.body(bytes, into: ensureOutBuf())
        ex.responseBodyBytes += bytes.count
    }

    func forwarderResponseEnd(trailers: HTTPHeaders) {
        // The one place a response ends, whether the origin framed it or closed it (close-delimited): the
        // re-chunked body always gets its last chunk.
        encoder.end(into: ensureOutBuf())
        ex.responseEnded = true
        finishExchange()
    }

    func forwarderFailed(status: Int?, reason: ForwardFailure) {
        if reason.isCountedBySession { worker.metrics.upstreamError(reason.rawValue) }
        if let f = fwd { (ex.originIndex, ex.originPool) = (f.server, f.pool) }
        if reason == .tunnelIdle {
            // Nothing moved either way for timeouts.tunnel_idle: a normal end for a tunnel (logged, not truncated);
            // the origin is closed already, the client gets close_notify and a FIN.
            worker.logger.debug("tunnel for \(peer) idle: closing both sides")
            logExchange()
            ex.active = false
            closeNow()
            return
        }
        if let status {
            worker.logger.debug("origin exchange for \(peer) failed (\(reason.rawValue)): answering \(status)")
            failExchange(status: status)
        } else {
            // Mid-response: the client must not take a truncated body for a complete one.
            worker.logger.debug("origin failed mid-response (\(reason.rawValue)); aborting client \(peer)")
            ex.truncated = true
            logExchange()
            ex.active = false
            abort()
        }
    }

    func forwarderOriginReady() { pump() }

    func forwarderTunnelOriginDone() { tunnelOriginDone = true }
}
