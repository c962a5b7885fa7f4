import COpenSSL
import CProxyShims
import Glibc
import ProxyCore
import ProxyEventLoop

/// One load slot: connect → TLS handshake → k × (GET, read response) → close_notify + close → again, until the
/// worker stops starting connections. Keeps the session of the slot's last connection (per hello shape) so the
/// next one can present its ticket. Loop thread only.
final class BenchConnection: EventHandler, TimerHandler {
    private enum State {
        case idle, connecting, handshaking, writing, reading, holding, dead
    }

    unowned let worker: BenchWorker
    var timerSlot = TimerSlot()
    private var state = State.idle
    private var fd: Int32 = -1
    private var ssl: OpaquePointer?
    /// The context (hello shape) of the current connection.
    private(set) var context: ClientTLSContext
    /// Last resumable session per shape (owned references).
    private var sessions: [OpaquePointer?]
    private var presented = false
    private var scanner = ResponseScanner()
    private var requestsDone = 0
    private var handshakeDone = false
    private var t0: UInt64 = 0
    private var tRequest: UInt64 = 0
    // per-connection counts, written by the OpenSSL callbacks
    var tickets = 0
    var sessionCallbacks = 0

    init(worker: BenchWorker) {
        self.worker = worker
        self.context = worker.contexts[0]
        self.sessions = Array(repeating: nil, count: worker.contexts.count)
    }

    deinit {
        closeNow()
        for s in sessions { if let s { SSL_SESSION_free(s) } }
    }

    var isDead: Bool { state == .dead }
    var isIdle: Bool { state == .idle }

    /// Opens the next connection of this slot.
    func start() {
        let (shapeIndex, wantResume) = worker.nextConnectionChoice()
        context = worker.contexts[shapeIndex]
        tickets = 0
        sessionCallbacks = 0
        requestsDone = 0
        handshakeDone = false
        scanner.reset()
        t0 = monotonicNanos()
        let opened: (fd: Int32, connected: Bool)
        do {
            opened = try Socket.connect(worker.config.address)
        } catch {
            fail(.connect, error.description)
            return
        }
        fd = opened.fd
        guard let s = SSL_new(context.ctx) else {
            fail(.connect, "SSL_new failed")
            return
        }
        ssl = s
        SSL_set_fd(s, fd)
        SSL_set_connect_state(s)
        // SAFETY: unretained; this object outlives the SSL it owns (closeNow frees it first).
        SSL_set_ex_data(s, ClientTLSContext.connectionIndex, Unmanaged.passUnretained(self).toOpaque())
        if let sni = worker.config.sni { _ = cps_SSL_set_tlsext_host_name(s, sni) }
        if context.shape.statusRequest { _ = cps_SSL_set_tlsext_status_type(s, TLSEXT_STATUSTYPE_ocsp) }
        presented = false
        if wantResume, let sess = sessions[shapeIndex] {
            SSL_set_session(s, sess)
            presented = true
        }
        do {
            try worker.loop.register(
                fd: fd,
                interest: EventLoop.readable | EventLoop.writable | EventLoop.readHangup | EventLoop.edgeTriggered,
                handler: self
            )
        } catch {
            fail(.connect, error.description)
            return
        }
        state = opened.connected ? .handshaking : .connecting
        worker.loop.schedule(at: t0 &+ worker.timeoutNanos, self)
    }

    func handleEvent(_ events: UInt32) { drive() }

    func timerFired(now: UInt64) {
        if state == .idle {  // back-off after a failed connect ended
            start()
            return
        }
        guard state != .dead && state != .holding else { return }
        fail(.timeout, "no progress within --timeout")
    }

    private func drive() {
        while true {
            switch state {
            case .connecting:
                let err = Socket.pendingError(fd)
                if err != 0 {
                    fail(.connect, String(cString: strerror(err)))
                    return
                }
                state = .handshaking
            case .handshaking:
                let r = SSL_do_handshake(ssl)
                if r == 1 {
                    handshakeDone = true
                    let now = monotonicNanos()
                    worker.recordHandshake(ms: Float(Double(now &- t0) / 1e6))
                    if worker.config.requests == 0 {
                        complete()
                        return
                    }
                    tRequest = now
                    state = .writing
                    continue
                }
                if wouldBlock(r) { return }
                fail(.handshake, tlsErrorText(r))
                return
            case .writing:
                let req = worker.request
                let r = req.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
                if r > 0 {
                    state = .reading
                    continue
                }
                if wouldBlock(r) { return }
                fail(.tlsIO, tlsErrorText(r))
                return
            case .reading, .holding:
                let r = SSL_read(ssl, worker.readBuffer.baseAddress, Int32(worker.readBuffer.count))
                if r > 0 {
                    if state == .holding { continue }
                    switch scanner.feed(UnsafeRawBufferPointer(rebasing: worker.readBuffer[0..<Int(r)])) {
                    case .needMore:
                        continue
                    case .invalid:
                        fail(.http, "unframeable response")
                        return
                    case .complete:
                        let now = monotonicNanos()
                        requestsDone += 1
                        worker.recordRequest(ms: Float(Double(now &- tRequest) / 1e6), status: scanner.status)
                        if requestsDone >= worker.config.requests {
                            complete()
                            return
                        }
                        if scanner.closeDelimited {
                            fail(.closedEarly, "server sent Connection: close before request \(requestsDone + 1)")
                            return
                        }
                        scanner.reset()
                        tRequest = now
                        state = .writing
                        continue
                    }
                }
                if wouldBlock(r) { return }
                if state == .holding {
                    ERR_clear_error()
                    worker.holdClosed()
                    closeNow()
                    state = .dead
                    return
                }
                let e = SSL_get_error(ssl, r)
                if e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
                    fail(.closedEarly, "server closed after \(requestsDone) of \(worker.config.requests) responses")
                } else {
                    fail(.tlsIO, tlsErrorText(r))
                }
                return
            case .idle, .dead:
                return
            }
        }
    }

    /// True (and nothing to do) when OpenSSL waits for the socket.
    @inline(__always)
    private func wouldBlock(_ r: Int32) -> Bool {
        let e = SSL_get_error(ssl, r)
        return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE
    }

    private func tlsErrorText(_ r: Int32) -> String {
        let e = SSL_get_error(ssl, r)
        let code = ERR_get_error()
        ERR_clear_error()
        if code != 0 {
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buf, buf.count)
            return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        if e == SSL_ERROR_SYSCALL { return errno == 0 ? "unexpected EOF" : String(cString: strerror(errno)) }
        return "SSL_get_error \(e)"
    }

    private func complete() {
        guard let ssl else { return }
        let reused = SSL_session_reused(ssl) == 1
        if worker.config.mode != .full || worker.config.hold != nil {
            // SSL_get1_session is the newest session: after a full handshake (1.2), after the last
            // NewSessionTicket read (1.3) or after an inline renewal in a resumed 1.2 handshake.
            if let sess = SSL_get1_session(ssl) {
                if SSL_SESSION_is_resumable(sess) == 1 {
                    if let old = sessions[context.index] { SSL_SESSION_free(old) }
                    sessions[context.index] = sess
                } else {
                    SSL_SESSION_free(sess)
                }
            }
        }
        worker.recordConnection(
            shape: context.index,
            reused: reused,
            presented: presented,
            tickets: tickets,
            sessionCallbacks: sessionCallbacks,
            requests: requestsDone,
            ms: Float(Double(monotonicNanos() &- t0) / 1e6),
            ssl: ssl
        )
        worker.loop.cancelTimer(self)
        if worker.config.hold != nil {
            state = .holding
            worker.connectionHeld()
            return
        }
        _ = SSL_shutdown(ssl)  // close_notify; the reply is not awaited
        closeNow()
        state = .idle
        worker.slotFinished(self, backoff: false)
    }

    private func fail(_ kind: ErrorKind, _ message: String) {
        ERR_clear_error()
        worker.recordError(kind, message)
        abandon()
        worker.loop.cancelTimer(self)
        closeNow()
        state = .idle
        if worker.config.hold != nil {
            state = .dead
            worker.holdFailed()
            return
        }
        // A refused connect fails again at once: wait a little instead of spinning (and never recurse).
        worker.slotFinished(self, backoff: kind == .connect)
    }

    /// Counts the handshake of a connection that ends without completing (the server counted it).
    func abandon() {
        guard handshakeDone, let ssl else { return }
        handshakeDone = false
        worker.recordAbandonedHandshake(reused: SSL_session_reused(ssl) == 1, tickets: tickets)
    }

    /// Frees the SSL and closes the socket (no close_notify).
    func closeNow() {
        if let s = ssl {
            SSL_free(s)
            ssl = nil
        }
        if fd >= 0 {
            worker.loop.deregister(fd: fd)
            Socket.close(fd)
            fd = -1
        }
    }

    /// Ends this slot for good (drain deadline, or hold mode's end).
    func kill() {
        worker.loop.cancelTimer(self)
        closeNow()
        state = .dead
    }
}
