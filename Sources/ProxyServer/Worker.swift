import CProxyShims
import Glibc
import Logging
import ProxyCore
import ProxyEventLoop
import ProxyTLS
import ProxyTickets

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
    let bufferPool = BufferPool(bufferSize: 16 * 1024)
    let bigBufferPool = BufferPool(bufferSize: 32 * 1024)
    private var connections: [ClientConnection?] = []
    private(set) var connectionCount = 0
    /// Idle keep-alive connections to each origin (by origin index), most recently used last.
    var idleUpstreams: [[UpstreamConnection]] = []
    var roundRobin: Int
    /// Hands out origin connections to this worker's forwarders.
    private(set) lazy var originConnector = WorkerOriginConnector(worker: self)
    let accessLog: AccessLogSink?
    var logLines: [UInt8] = []
    /// Connections that dropped their HTTP state since the last malloc_trim, and when that was.
    var compactedSinceTrim = 0
    private var lastMallocTrim: UInt64 = 0
    /// Reusable serialisation space for heads (loop thread only).
    var scratch: [UInt8] = []
    var logClock = LogClock()
    let logger: Logger
    private(set) var draining = false
    private var drainDeadline: UInt64 = 0
    private var drainTimer: DrainTimer?
    private var thread: OSThread?
    private let onExit: @Sendable (Int) -> Void
    /// Rate limit for accept-error warnings.
    private var lastAcceptWarning: UInt64 = 0

    init(
        index: Int,
        listenAddress: SocketAddress,
        snapshots: SnapshotBox<RuntimeSnapshot>,
        ticketStore: TicketKeyStore?,
        accessLog: AccessLogSink?,
        logger: Logger,
        onExit: @escaping @Sendable (Int) -> Void
    ) throws(SyscallError) {
        self.index = index
        self.listenAddress = listenAddress
        self.snapshots = snapshots
        self.snapshot = snapshots.load()
        self.ticketStore = ticketStore
        self.accessLog = accessLog
        self.logger = logger
        self.onExit = onExit
        self.roundRobin = index
        self.messenger = try LoopMessenger()
        // Bind here (on the main thread) so a bad address fails start-up with a clear error.
        self.listenFd = try Socket.listen(on: listenAddress, reusePort: true)
    }

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
        metrics = WorkerMetrics(worker: index)
        tlsWorker = TLSWorkerContext(observer: metrics)
        idleUpstreams = Array(repeating: [], count: snapshot.origins.count)
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
        for pool in idleUpstreams { for u in pool { u.close() } }
        idleUpstreams = []
        if !logLines.isEmpty { accessLog?.submit(&logLines) }
        onExit(index)
    }

    /// Top of every tick: an atomic generation compare each, a lock only when something changed.
    private func pickUpSnapshots() {
        let g = snapshots.generation
        if g != snapshotGeneration {
            snapshotGeneration = g
            snapshot = snapshots.load()
            tlsWorker.policies = snapshot.policies
            if idleUpstreams.count != snapshot.origins.count {
                for pool in idleUpstreams { for u in pool { u.close() } }
                idleUpstreams = Array(repeating: [], count: snapshot.origins.count)
            }
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
        if compactedSinceTrim >= 64 && loop.now &- lastMallocTrim >= 2_000_000_000 {
            _ = cps_malloc_trim()
            lastMallocTrim = loop.now
            compactedSinceTrim = 0
        }
        metrics.loopBusySeconds.record(Double(loop.busyNanos) / 1e9)
        if draining && connectionCount == 0 { loop.stop() }
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
                if loop.now &- lastAcceptWarning > 5_000_000_000 {
                    lastAcceptWarning = loop.now
                    logger.warning("worker \(index): accept failed: \(error)")
                }
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

    /// Called by a connection when it has closed its fd.
    func connectionClosed(fd: Int32) {
        let i = Int(fd)
        if i < connections.count, connections[i] != nil {
            connections[i] = nil
            connectionCount -= 1
            metrics.connectionsActive.record(connectionCount)
        }
    }

    // MARK: upstream pool

    /// An idle keep-alive connection to `origin`, if one is pooled.
    func takeIdleUpstream(origin: Int) -> UpstreamConnection? {
        guard origin < idleUpstreams.count else { return nil }
        return idleUpstreams[origin].popLast()
    }

    func returnIdleUpstream(_ u: UpstreamConnection) {
        guard !draining, u.origin < idleUpstreams.count, idleUpstreams[u.origin].count < 512 else {
            u.close()
            return
        }
        u.becomeIdle(deadline: loop.now &+ snapshot.timeouts.idle)
        idleUpstreams[u.origin].append(u)
    }

    func removeIdleUpstream(_ u: UpstreamConnection) {
        guard u.origin < idleUpstreams.count, let i = idleUpstreams[u.origin].firstIndex(where: { $0 === u })
        else { return }
        idleUpstreams[u.origin].remove(at: i)
    }

    // MARK: drain

    /// Graceful drain: stop accepting, close idle connections, let in-flight requests finish (with
    /// `Connection: close`), stop the loop when none remain or at the deadline. Called on the worker thread.
    func beginDrain(deadlineNanos: UInt64) {
        guard !draining else { return }
        draining = true
        loop.deregister(fd: listenFd)
        Socket.close(listenFd)
        listenFd = -1
        drainDeadline = loop.now &+ deadlineNanos
        for c in connections { c?.drain() }
        for pool in idleUpstreams { for u in pool { u.close() } }
        idleUpstreams = Array(repeating: [], count: idleUpstreams.count)
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

private final class DrainTimer: TimerHandler {
    var timerSlot = TimerSlot()
    unowned let worker: Worker
    init(worker: Worker) { self.worker = worker }
    func timerFired(now: UInt64) { worker.drainDeadlineReached() }
}
