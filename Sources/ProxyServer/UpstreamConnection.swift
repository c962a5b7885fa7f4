import Glibc
import ProxyCore
import ProxyEventLoop
import ProxyForwarder
import ProxyUpstreams

/// A TCP connection to an origin, plain or TLS (`tls`, see UpstreamTLS.swift). While in use it forwards its readiness
/// events to the client connection that owns it; while idle in the worker's pool it only waits to be reused or closed
/// by the origin.
final class UpstreamConnection: EventHandler, TimerHandler, OriginTransport {
    // SAFETY: a worker lives as long as the process and outlives its connections; unowned(unsafe) avoids an
    // unowned-retain on every access on the request path (swift_unownedRetainStrong in perf).
    unowned(unsafe) let worker: Worker
    /// `worker.loop`, held directly (reading the worker's implicitly unwrapped `var` retained and released the
    /// loop on every clock read of the request path).
    unowned(unsafe) let loop: EventLoop
    let fd: Int32
    /// Index of the endpoint (server address) in `pool.endpoints`: the forwarder's "server".
    let origin: Int
    let address: SocketAddress
    /// The pool snapshot and address this connection belongs to (health, outstanding, idle pooling).
    let pool: PoolSnapshot
    let endpoint: EndpointState
    /// The forwarder using this connection (nil while idle in the pool).
    // SAFETY: a forwarder detaches (setOwner(nil)) before it releases the connection or is released itself, so
    // the reference never dangles.
    unowned(unsafe) var owner: OriginForwarder?
    var connected: Bool
    /// True once the connection served an earlier request (a failure before any response byte may be a stale
    /// keep-alive connection, not a dead origin).
    var reused = false
    var canRead = true
    var canWrite = true
    var peerClosed = false
    /// The origin's FIN (EPOLLRDHUP) was reported: keep reading until EOF even after a short read, because no
    /// further edge will announce it (found by close-delimited responses whose FIN came with the last bytes).
    var sawHangup = false
    var closed = false
    var inBuf: ByteBuffer?
    /// The client connection (serial) whose identity this connection carries in its PROXY protocol header: it is
    /// pooled for that client only (0: an ordinary connection, shared by all clients).
    var privateTo: UInt64 = 0
    /// A PROXY protocol header still to be written before any request byte (`proxy_protocol` pools).
    private var preamble: [UInt8] = []
    private var preambleSent = 0
    /// TLS toward an `https://` origin (nil: plain TCP). The connection counts as connected after the handshake.
    var tls: UpstreamTLS?
    /// The TCP connect of a TLS connection failed with this errno (reported by finishConnect).
    var tcpFailed: Int32 = 0
    private var idleDeadline: UInt64 = 0
    var timerSlot = TimerSlot()
    /// Latency histograms of this connection's pool (LatencyMetrics): connect, and first response byte of each
    /// request, measured on the loop clock from `readySince` (connected, or handed to a forwarder while connected).
    private let latency: (connect: HistogramCells, firstByte: HistogramCells)
    private let connectStartedAt: UInt64
    private var readySince: UInt64 = 0
    private var awaitingFirstByte = false

    init(worker: Worker, fd: Int32, pool: PoolSnapshot, origin: Int, connected: Bool) {
        self.worker = worker
        self.loop = worker.loop
        self.fd = fd
        self.origin = origin
        self.pool = pool
        self.endpoint = pool.endpoints[origin].state
        self.address = endpoint.address
        self.connected = connected
        self.canWrite = connected
        latency = worker.metrics.latency.upstreamCells(pool: pool.name)
        connectStartedAt = loop.now
        if connected { latency.connect.record(nanoseconds: 0) }
    }

    /// Starts a non-blocking connect to `address` and registers with the loop; with `tls`, also the handshake.
    static func connect(
        worker: Worker,
        pool: PoolSnapshot,
        origin: Int,
        tls: UpstreamTLSClient? = nil
    ) throws(SyscallError) -> UpstreamConnection {
        let (fd, connected) = try Socket.connect(pool.endpoints[origin].state.address)
        let u = UpstreamConnection(
            worker: worker,
            fd: fd,
            pool: pool,
            origin: origin,
            connected: connected && tls == nil
        )
        do {
            try worker.loop.register(
                fd: fd,
                interest: EventLoop.readable | EventLoop.writable | EventLoop.readHangup | EventLoop.edgeTriggered,
                handler: u
            )
        } catch {
            Socket.close(fd)
            throw error
        }
        if let tls {
            do throws(SyscallError) { try u.attachTLS(tls, tcpConnected: connected) } catch {
                u.close()
                throw error
            }
        }
        return u
    }

    func handleEvent(_ events: UInt32) {
        if let t = tls, !t.established {
            tlsHandshakeEvent(t, events)
            return
        }
        if events & (EventLoop.readable | EventLoop.readHangup | EventLoop.hangup | EventLoop.error) != 0 {
            canRead = true
        }
        if events & (EventLoop.readHangup | EventLoop.hangup | EventLoop.error) != 0 { sawHangup = true }
        if events & (EventLoop.writable | EventLoop.error | EventLoop.hangup) != 0 { canWrite = true }
        if let t = tls { tlsCrossReadiness(t, events) }
        if let owner {
            owner.transportReady()
        } else if !closed,
            events & (EventLoop.readable | EventLoop.readHangup | EventLoop.hangup | EventLoop.error) != 0,
            tls.map({ tlsIdleUnusable($0) }) ?? Socket.peekClosedOrData(fd)
        {
            // Idle in the pool: the origin closed it (or sent unsolicited bytes). Either way it is unusable.
            // (Edge-triggered EPOLLOUT on an idle connection is normal and ignored.)
            worker.removeIdleUpstream(self)
            close()
        }
    }

    /// Completes a pending connect. Returns the errno when it failed.
    func finishConnect() -> Int32 {
        if let t = tls { return tlsFinishConnect(t) }
        let e = Socket.pendingError(fd)
        if e == 0 {
            connected = true
            recordConnected()
        }
        return e
    }

    func recordConnected() {
        let now = loop.now
        latency.connect.record(nanoseconds: now &- connectStartedAt)
        if owner != nil { readySince = now }
    }

    func read(into buf: UnsafeMutableRawBufferPointer) -> IOResult<Int>? {
        if let t = tls { return tlsRead(t, into: buf) }
        do {
            let r = try Socket.read(fd, buf)
            if case .wouldBlock = r { canRead = false }
            return r
        } catch {
            return nil
        }
    }

    /// Reads what the socket has into `inBuf` (32 KiB, taken from the worker's pool when needed), once: a 16 KiB body
    /// and its head come in one read.
    /// Edge-triggered: a short read drained the socket, so `canRead` drops without the extra EAGAIN read.
    func fillInput() -> TransportRead {
        if inBuf == nil { inBuf = worker.bigBufferPool.acquire() }
        let b = inBuf!
        if b.freeCount == 0 { return .full }
        let room = b.writable
        guard let r = read(into: room) else { return .failed }
        switch r {
        case .wouldBlock:
            return .blocked
        case .processed(0):
            peerClosed = true
            canRead = false
            return .eof
        case .processed(let n):
            // TLS: a record is at most 16 KiB and OpenSSL may hold more; the socket is drained when OpenSSL holds
            // nothing and its last socket read was short (the BIO notes it).
            if !sawHangup && (tls.map { $0.stream.socketEmptied } ?? (n < room.count)) { canRead = false }
            b.commit(n)
            if awaitingFirstByte {
                awaitingFirstByte = false
                latency.firstByte.record(nanoseconds: loop.now &- readySince)
            }
            return .read(n)
        }
    }

    /// Makes `header` the first bytes this new connection sends (the PROXY protocol header).
    func sendFirst(_ header: [UInt8]) {
        preamble = header
        preambleSent = 0
    }

    /// Writes what is left of the PROXY protocol header, raw (TLS connections: before the handshake). nil when it
    /// is all written; otherwise what the caller's write must report.
    func flushPreamble() -> TransportWrite? {
        // Written whole before the first request byte. A fresh connection's send buffer is empty, so this is
        // one write in practice; a short one leaves the rest for the next writable event.
        do {
            while preambleSent < preamble.count {
                let r = try preamble.withUnsafeBytes {
                    try Socket.write(fd, UnsafeRawBufferPointer(rebasing: $0[preambleSent...]))
                }
                switch r {
                case .wouldBlock:
                    canWrite = false
                    return .blocked
                case .processed(let n):
                    preambleSent += n
                }
            }
            preamble = []
            preambleSent = 0
            return nil
        } catch {
            return .failed
        }
    }

    func write(_ buf: UnsafeRawBufferPointer) -> TransportWrite {
        if preambleSent < preamble.count, let r = flushPreamble() { return r }
        if let t = tls { return tlsWrite(t, buf) }
        do {
            switch try Socket.write(fd, buf) {
            case .wouldBlock:
                canWrite = false
                return .blocked
            case .processed(let n):
                return .wrote(n)
            }
        } catch {
            return .failed
        }
    }

    /// Tunnel half-close: FIN toward the origin (TLS origins: close_notify first), reading goes on (a tunnel's
    /// connection is never pooled again).
    func shutdownWrite() {
        guard !closed else { return }
        if let t = tls, t.established { t.stream.shutdown() }
        Socket.shutdownWrite(fd)
    }

    // MARK: OriginTransport

    var isConnected: Bool { connected }
    var wasReused: Bool { reused }
    var server: Int { origin }
    func setOwner(_ forwarder: OriginForwarder?) {
        owner = forwarder
        // A forwarder takes the connection for a request: its first response byte is that request's.
        awaitingFirstByte = forwarder != nil
        if forwarder != nil && connected { readySince = loop.now }
    }

    /// A pooled connection is usable only if the origin has not closed it (or sent unsolicited bytes) meanwhile.
    /// Events seen while it was idle already closed it; `peek` also asks the socket, for a FIN that arrived after
    /// the loop's last epoll_wait (one syscall).
    func isUsable(peek: Bool) -> Bool {
        guard !closed, !peerClosed, !sawHangup else { return false }
        return !peek || !Socket.peekClosedOrData(fd)
    }

    /// Taken from the idle pool. The idle timer is left pending rather than cancelled (a heap operation per
    /// request): when it fires on a busy connection it does nothing, and `becomeIdle` re-arms it.
    func becomeBusy() { idleDeadline = 0 }

    func becomeIdle(deadline: UInt64) {
        owner = nil
        awaitingFirstByte = false
        reused = true
        if let b = inBuf {
            worker.bigBufferPool.release(b)
            inBuf = nil
        }
        idleDeadline = deadline
        // A pending timer with an earlier deadline re-arms itself for `idleDeadline` when it fires.
        if !timerSlot.isPending || timerSlot.deadline > deadline { loop.schedule(at: deadline, self) }
    }

    func timerFired(now: UInt64) {
        guard !closed, owner == nil, idleDeadline != 0 else { return }
        if now >= idleDeadline {
            worker.removeIdleUpstream(self)
            close()
        } else {
            loop.schedule(at: idleDeadline, self)
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        owner = nil
        loop.cancelTimer(self)
        loop.forgetClosing(fd: fd)
        if let t = tls { tlsClose(t) }
        Socket.close(fd)
        if let b = inBuf {
            worker.bigBufferPool.release(b)
            inBuf = nil
        }
    }
}
