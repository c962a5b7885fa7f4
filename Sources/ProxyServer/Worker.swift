import CProxyShims
import Glibc
import Logging
import ProxyCore
import ProxyDetector
import ProxyEventLoop
import ProxyForwarder
import ProxyHTTP1
import ProxyTLS
import ProxyTickets
import ProxyUpstreams

/// One worker thread: its own epoll loop, its own SO_REUSEPORT listener, its connections, its upstream pool.
///
/// Everything here is touched only on the worker's thread, except `messenger.send`, which is how the control
/// thread asks it to drain or to pick up new snapshots early.
final class Worker: EventHandler, @unchecked Sendable {
    // SAFETY: created on the main thread, then used only on the worker thread started by `start()`; other threads
    // use only `messenger` (thread-safe) and the immutable `index`.
    let index: Int
    let messenger: LoopMessenger
    private(set) var loop: EventLoop!
    let listenAddress: SocketAddress
    private var listenFd: Int32 = -1
    private let snapshots: SnapshotBox<RuntimeSnapshot>
    private var snapshotGeneration: UInt64 = 0
    private(set) var snapshot: RuntimeSnapshot
    private let ticketStore: TicketKeyStore?
    private var ringGeneration: UInt64 = 0
    private(set) var tlsWorker: TLSWorkerContext!
    private(set) var metrics: WorkerMetrics!
    /// The TLS layer's delegate (fingerprints, policies, detector); `tlsWorker` holds it unretained.
    private(set) var classifier: HandshakeClassifier!
    /// This worker's detector observations (SPSC to the control thread) and the published quarantine set.
    private let detectorQueue: ObservationQueue
    private let detectorBox: SnapshotBox<DetectorPublished>
    private var detectorGeneration: UInt64 = 0
    let bufferPool = BufferPool(bufferSize: 16 * 1024)
    let bigBufferPool = BufferPool(bufferSize: 32 * 1024)
    private var connections: [ClientConnection?] = []
    private(set) var connectionCount = 0
    /// Idle keep-alive connections per origin address; connections to addresses removed by re-resolution or
    /// reload are closed at the next tick (they drain).
    var idleUpstreams = IdleConnections<UpstreamConnection>()
    /// Idle origin connections private to one client connection (PROXY protocol pools), by its serial.
    var privateIdleUpstreams: [UInt64: [UpstreamConnection]] = [:]
    /// The last client connection serial handed out.
    var clientSerials: UInt64 = 0
    var roundRobin: Int
    /// Routes and pools (ProxyUpstreams): refreshed at the top of every tick, no lock per request.
    let upstreams: UpstreamSelector
    /// Client TLS contexts of pools with `https://` servers (shared), and this worker's per-pool view of them
    /// (sessions for resumption), rebuilt when the upstream snapshot changes (UpstreamTLS.swift).
    let upstreamTLSRegistry: UpstreamTLSRegistry
    var upstreamTLSClients: [UpstreamTLSClient?] = []
    private(set) lazy var upstreamTLSMetrics = UpstreamTLSMetrics(worker: String(index))
    /// Hands out origin connections to this worker's forwarders.
    private(set) lazy var originConnector = WorkerOriginConnector(worker: self)
    let accessLog: AccessLogSink?
    var logLines: [UInt8] = []
    /// Connections that dropped their HTTP state since the last malloc_trim, and when that was.
    var compactedSinceTrim = 0
    private var lastMallocTrim: UInt64 = 0
    /// Reusable serialisation space for heads (loop thread only).
    var scratch: [UInt8] = []
    /// Where new connections' first bytes are peeked (`Socket.firstRecordState`).
    let peekBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
    /// Per-connection objects a closed (or idle) connection gave back, for the next connection to take instead of
    /// allocating them again (with their buffers): a few per worker, emptied when memory is trimmed.
    private var spareHTTPStates: [ClientHTTPState] = []
    private var spareForwarders: [OriginForwarder] = []
    static let maxSpares = 16
    /// A spare keeps at most this much head-buffer capacity (a connection that saw a 60 KiB head frees it).
    static let maxSpareHeadCapacity = 8 * 1024
    var logClock = LogClock()
    let logger: Logger
    private(set) var draining = false
    private var drainDeadline: UInt64 = 0
    private var drainTimer: DrainTimer?
    private var thread: OSThread?
    private let onExit: @Sendable (Int) -> Void
    private let latencyMetrics: LatencyMetrics
    /// Rate limit for accept-error warnings.
    private var lastAcceptWarning: UInt64 = 0
    private var acceptErrorsSinceWarning = 0
    private static let acceptWarningInterval: UInt64 = 5_000_000_000
    /// How long the listener is left alone after EMFILE/ENFILE (nginx waits 500 ms; shorter recovers sooner and
    /// still costs only ten failed accept4 a second).
    static let acceptBackoffNanos: UInt64 = 100_000_000
    private var acceptPaused = false
    private lazy var acceptResumer = AcceptResumer(worker: self)
    /// Connections closed since the last malloc_trim (see `endOfTick`).
    private var freedSinceTrim = 0
    private lazy var trimTimer = TrimTimer(worker: self)
    /// Frees decoded sessions whose cache entries expired (once a second while the worker holds any).
    private lazy var sessionSweepTimer = SessionSweepTimer(worker: self)

    init(
        index: Int,
        listenAddress: SocketAddress,
        inheritedListenFd: Int32? = nil,
        snapshots: SnapshotBox<RuntimeSnapshot>,
        upstreams: UpstreamSnapshotBox,
        ticketStore: TicketKeyStore?,
        accessLog: AccessLogSink?,
        latency: LatencyMetrics,
        detector: DetectorRuntime,
        upstreamTLS: UpstreamTLSRegistry,
        logger: Logger,
        onExit: @escaping @Sendable (Int) -> Void
    ) throws(SyscallError) {
        self.latencyMetrics = latency
        self.index = index
        self.listenAddress = listenAddress
        self.snapshots = snapshots
        self.snapshot = snapshots.load()
        self.upstreams = UpstreamSelector(box: upstreams)
        self.upstreamTLSRegistry = upstreamTLS
        self.ticketStore = ticketStore
        self.accessLog = accessLog
        self.logger = logger
        self.onExit = onExit
        self.roundRobin = index
        let messenger = try LoopMessenger()
        self.messenger = messenger
        self.detectorQueue = detector.makeQueue(messenger: messenger)
        self.detectorBox = detector.published
        // Bind here (on the main thread) so a bad address fails start-up with a clear error.
        if let fd = inheritedListenFd {
            self.listenFd = fd
        } else {
            self.listenFd = try Socket.listen(on: listenAddress, reusePort: true)
        }
    }

    /// The listening socket (handed to the new process on an upgrade; -1 once draining).
    var listeningFd: Int32 { listenFd }

    /// The address the listener is bound to (resolves port 0).
    var boundAddress: SocketAddress? { Socket.localAddress(listenFd) }

    /// Starts the worker thread.
    func start() {
        thread = OSThread { [self] in run() }
    }

    func join() {
        thread?.join()
        thread = nil
    }

    private func run() {
        do {
            loop = try EventLoop()
            try messenger.attach(to: loop)
        } catch {
            logger.critical("worker \(index): cannot create event loop: \(error)")
            onExit(index)
            return
        }
        metrics = WorkerMetrics(worker: index, latency: latencyMetrics)
        metrics.latency.poolsChanged(upstreams.snapshot.pools)
        refreshUpstreamTLS()
        classifier = HandshakeClassifier(metrics: metrics, observations: detectorQueue)
        tlsWorker = TLSWorkerContext(delegate: classifier)
        pickUpSnapshots()
        do {
            try loop.register(fd: listenFd, interest: EventLoop.readable, handler: self)
        } catch {
            logger.critical("worker \(index): cannot watch listener: \(error)")
        }
        loop.onTickStart { [unowned self] in self.pickUpSnapshots() }
        loop.onTickEnd { [unowned self] in self.endOfTick() }
        loop.run()
        for c in connections { c?.forceClose() }
        for u in idleUpstreams.removeAll() { u.close() }
        if !logLines.isEmpty { accessLog?.submit(&logLines) }
        onExit(index)
    }

    /// Top of every tick: an atomic generation compare each, a lock only when something changed.
    private func pickUpSnapshots() {
        let g = snapshots.generation
        if g != snapshotGeneration {
            snapshotGeneration = g
            snapshot = snapshots.load()
            classifier.policies = snapshot.policies
        }
        let dg = detectorBox.generation
        if dg != detectorGeneration {
            detectorGeneration = dg
            classifier.detector = detectorBox.load()
        }
        if upstreams.refresh() {
            for u in idleUpstreams.removeRetired() { u.close() }
            metrics.latency.poolsChanged(upstreams.snapshot.pools)
            refreshUpstreamTLS()
        }
        if let store = ticketStore {
            let rg = store.generation
            if rg != ringGeneration {
                ringGeneration = rg
                tlsWorker.ring = store.current()
            }
        }
    }

    private func endOfTick() {
        if !logLines.isEmpty, let sink = accessLog { sink.submit(&logLines) }
        bufferPool.trim(now: loop.now)
        bigBufferPool.trim(now: loop.now)
        // After many connections went idle (each freed its HTTP state), give the freed malloc pages back: glibc
        // keeps them otherwise, and they were ~1.4 KB of RSS per idle connection. Rate-limited (a trim walks
        // this thread's arena, ~1-2 ms for a large heap).
        // Closed connections count too: after a burst of connections (an attack, or a peak) closes, the memory
        // must come back even if the loop then goes quiet, so a trim held back by the rate limit is scheduled.
        if compactedSinceTrim + freedSinceTrim >= 64 {
            if loop.now &- lastMallocTrim >= 2_000_000_000 {
                trimMemory()
            } else if !trimTimer.timerSlot.isPending {
                loop.schedule(at: lastMallocTrim &+ 2_000_000_000, trimTimer)
            }
        }
        if tlsWorker.decodedSessions.count > 0 && !sessionSweepTimer.timerSlot.isPending {
            loop.schedule(at: loop.now &+ 1_000_000_000, sessionSweepTimer)
        }
        metrics.loopBusySeconds.record(Double(loop.busyNanos) / 1e9)
        if draining && connectionCount == 0 { loop.stop() }
    }

    deinit { peekBuffer.deallocate() }

    /// HTTP/1 state for a connection's first request: a spare one reset to a new connection's, or a new one.
    func takeHTTPState(limits: HTTP1Limits) -> ClientHTTPState {
        guard let h = spareHTTPStates.popLast() else { return ClientHTTPState(limits: limits) }
        h.reset(limits: limits)
        return h
    }

    func recycle(_ h: ClientHTTPState) {
        guard spareHTTPStates.count < Self.maxSpares, h.parser.retainedCapacity <= Self.maxSpareHeadCapacity else {
            return
        }
        spareHTTPStates.append(h)
    }

    /// An origin forwarder for a connection's first proxied request (a spare one when there is one).
    func takeForwarder(timeouts: ForwarderTimeouts) -> OriginForwarder {
        if let f = spareForwarders.popLast() {
            f.timeouts = timeouts
            return f
        }
        return OriginForwarder(connector: originConnector, bufferPool: bigBufferPool, timeouts: timeouts)
    }

    /// Takes back a closed connection's forwarder: only one that holds nothing (no origin connection, no buffer,
    /// no exchange in progress, nobody to call).
    func recycle(_ f: OriginForwarder) {
        guard spareForwarders.count < Self.maxSpares, f.isRecyclable,
            f.retainedCapacity <= Self.maxSpareHeadCapacity
        else { return }
        spareForwarders.append(f)
    }

    /// Gives free malloc pages back to the system (all arenas) and the pooled buffers idle long enough.
    fileprivate func trimMemory() {
        spareHTTPStates.removeAll()
        spareForwarders.removeAll()
        _ = bufferPool.trim(now: loop.now, interval: 0)
        _ = bigBufferPool.trim(now: loop.now, interval: 0)
        _ = cps_malloc_trim()
        lastMallocTrim = loop.now
        compactedSinceTrim = 0
        freedSinceTrim = 0
    }

    // MARK: accepting

    func handleEvent(_ events: UInt32) {
        if draining { return }
        var peer = SocketAddress(storage: sockaddr_storage(), length: 0)
        // One connection per wake-up (nginx's multi_accept off): the listener is level-triggered, so a backlog
        // wakes the loop again at once, and an idle moment costs no extra EAGAIN accept4 per connection.
        for _ in 0..<1 {
            let fd: Int32
            do {
                switch try Socket.accept(listenFd, peer: &peer) {
                case .wouldBlock: return
                case .processed(let f): fd = f
                }
            } catch {
                acceptFailed(error)
                return
            }
            if connectionCount >= snapshot.maxConnectionsPerWorker {
                Socket.close(fd)
                continue
            }
            Socket.setNoDelay(fd)
            let c = ClientConnection(worker: self, fd: fd, peer: peer)
            guard c.start() else { continue }
            let i = Int(fd)
            if i >= connections.count {
                connections.append(contentsOf: repeatElement(nil, count: i - connections.count + 64))
            }
            connections[i] = c
            connectionCount += 1
            metrics.connectionsAccepted.increment()
            metrics.connectionsActive.record(connectionCount)
        }
    }

    /// An accept error. Out of fds (EMFILE/ENFILE) or kernel memory, the connection stays queued and the
    /// level-triggered listener would wake the loop at once, forever: a 100 % CPU spin that starves the very
    /// connections whose close would free an fd. So stop polling the listener for `acceptBackoffNanos` (nginx
    /// disables accept events likewise), count it, and warn at most once per `acceptWarningInterval`.
    private func acceptFailed(_ error: SyscallError) {
        let exhausted = Socket.isResourceExhaustion(error)
        if exhausted {
            metrics.acceptExhausted.increment()
            if !acceptPaused {
                loop.deregister(fd: listenFd)
                acceptPaused = true
                loop.schedule(at: loop.now &+ Self.acceptBackoffNanos, acceptResumer)
            }
        }
        acceptErrorsSinceWarning += 1
        if loop.now &- lastAcceptWarning > Self.acceptWarningInterval {
            lastAcceptWarning = loop.now
            logger.warning(
                "worker \(index): accept failed: \(error)\(exhausted ? "; not accepting for 100 ms" : "")",
                metadata: ["failures_since_last_warning": "\(acceptErrorsSinceWarning)"]
            )
            acceptErrorsSinceWarning = 0
        }
    }

    /// The accept back-off ended: watch the listener again (a failure pauses it again).
    fileprivate func resumeAccepting() {
        guard acceptPaused else { return }
        acceptPaused = false
        guard !draining, listenFd >= 0 else { return }
        do {
            try loop.register(fd: listenFd, interest: EventLoop.readable, handler: self)
        } catch {
            logger.critical("worker \(index): cannot watch listener again: \(error)")
        }
    }

    /// Called by a connection when it has closed its fd.
    func connectionClosed(fd: Int32) {
        let i = Int(fd)
        if i < connections.count, connections[i] != nil {
            connections[i] = nil
            connectionCount -= 1
            metrics.connectionsActive.record(connectionCount)
            // A closed connection's TLS state and buffers go back to malloc, which keeps the pages unless trimmed.
            freedSinceTrim += 1
        }
    }

    // MARK: upstream pool

    /// An idle keep-alive connection to `endpoint`, if one is pooled.
    func takeIdleUpstream(endpoint: EndpointState) -> UpstreamConnection? {
        idleUpstreams.take(for: endpoint)
    }

    /// Pools `u` for reuse, or closes it (draining, its address was removed, or the pool is full).
    func returnIdleUpstream(_ u: UpstreamConnection) {
        guard !draining else { return u.close() }
        u.becomeIdle(deadline: loop.now &+ snapshot.timeouts.idle)
        if !idleUpstreams.put(u, for: u.endpoint) { u.close() }
    }

    func removeIdleUpstream(_ u: UpstreamConnection) {
        if u.privateTo != 0 {
            guard var list = privateIdleUpstreams[u.privateTo], let i = list.firstIndex(where: { $0 === u }) else {
                return
            }
            list.remove(at: i)
            privateIdleUpstreams[u.privateTo] = list.isEmpty ? nil : list
        } else {
            idleUpstreams.remove(u, for: u.endpoint)
        }
    }

    // Origin connections that carry one client's identity (a PROXY protocol header) are pooled per client
    // connection, never shared: a request must not reach the origin under another client's address.

    /// Most idle private connections one client connection keeps (an HTTP/2 client may use several at once).
    static let privateIdleLimit = 8

    /// An idle connection to `endpoint` that carries client `serial`'s identity, if one is pooled.
    func takePrivateIdleUpstream(of serial: UInt64, endpoint: EndpointState) -> UpstreamConnection? {
        guard var list = privateIdleUpstreams[serial],
            let i = list.lastIndex(where: { $0.endpoint === endpoint })
        else { return nil }
        let u = list.remove(at: i)
        privateIdleUpstreams[serial] = list.isEmpty ? nil : list
        return u
    }

    /// Pools `u` for its client connection's next requests, or closes it.
    func returnPrivateIdleUpstream(_ u: UpstreamConnection) {
        guard !draining, !u.endpoint.isRetired else { return u.close() }
        var list = privateIdleUpstreams[u.privateTo] ?? []
        guard list.count < Self.privateIdleLimit else { return u.close() }
        u.becomeIdle(deadline: loop.now &+ snapshot.timeouts.idle)
        list.append(u)
        privateIdleUpstreams[u.privateTo] = list
    }

    /// The client connection `serial` closed: so do its idle private origin connections.
    func closePrivateIdleUpstreams(of serial: UInt64) {
        guard let list = privateIdleUpstreams.removeValue(forKey: serial) else { return }
        for u in list { u.close() }
    }

    // MARK: drain

    /// Graceful drain: stop accepting, close idle connections, let in-flight requests finish (with
    /// `Connection: close`), stop the loop when none remain or at the deadline. Called on the worker thread.
    func beginDrain(deadlineNanos: UInt64, closeIdle: Bool = true) {
        guard !draining else { return }
        draining = true
        loop.deregister(fd: listenFd)
        Socket.close(listenFd)
        listenFd = -1
        drainDeadline = loop.now &+ deadlineNanos
        for c in connections { c?.drain(closeIdle: closeIdle) }
        for u in idleUpstreams.removeAll() { u.close() }
        let t = DrainTimer(worker: self)
        drainTimer = t
        loop.schedule(at: drainDeadline, t)
        if connectionCount == 0 { loop.stop() }
    }

    fileprivate func drainDeadlineReached() {
        if connectionCount > 0 {
            logger.warning("worker \(index): drain deadline reached, closing \(connectionCount) connection(s)")
        }
        for c in connections { c?.forceClose() }
        loop.stop()
    }
}

/// Ends an accept back-off (see `Worker.acceptFailed`).
private final class AcceptResumer: TimerHandler {
    var timerSlot = TimerSlot()
    unowned let worker: Worker
    init(worker: Worker) { self.worker = worker }
    func timerFired(now: UInt64) { worker.resumeAccepting() }
}

/// Runs a malloc_trim that the rate limit held back, so memory returns even when the loop goes quiet.
private final class TrimTimer: TimerHandler {
    var timerSlot = TimerSlot()
    unowned let worker: Worker
    init(worker: Worker) { self.worker = worker }
    func timerFired(now: UInt64) { worker.trimMemory() }
}

private final class SessionSweepTimer: TimerHandler {
    var timerSlot = TimerSlot()
    unowned let worker: Worker
    init(worker: Worker) { self.worker = worker }
    func timerFired(now: UInt64) { worker.tlsWorker.decodedSessions.sweep(now: now) }
}

private final class DrainTimer: TimerHandler {
    var timerSlot = TimerSlot()
    unowned let worker: Worker
    init(worker: Worker) { self.worker = worker }
    func timerFired(now: UInt64) { worker.drainDeadlineReached() }
}
