import COpenSSL
import Glibc
import ProxyCore
import ProxyEventLoop
import Synchronization

/// Live numbers a worker publishes for the progress line (relaxed atomics; the main thread only reads).
final class ProgressCounters: Sendable {
    let connections = Atomic<Int>(0)
    let resumed = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    /// Hold mode: connections held or failed so far.
    let settled = Atomic<Int>(0)
    let finished = Atomic<Bool>(false)
}

/// One load thread: its own `EventLoop`, client contexts and slots. Everything but `progress` and `messenger` is
/// touched only on that thread (the main thread reads `stats` after joining it).
final class BenchWorker {
    let index: Int
    let config: BenchConfig
    let contexts: [ClientTLSContext]
    let progress = ProgressCounters()
    let messenger: LoopMessenger
    private(set) var loop: EventLoop!
    private(set) var stats: WorkerStats
    let request: [UInt8]
    let readBuffer: UnsafeMutableRawBufferPointer
    let timeoutNanos: UInt64
    private let slotCount: Int
    private var slots: [BenchConnection] = []
    private var restartQueue: [BenchConnection] = []
    private var active = 0
    private var starting = true
    private var opened = 0  // hold mode: slots started so far
    private var shapeAccumulator = 0.0
    private var resumeAccumulator = 0.0
    private var warmEnd: UInt64 = 0
    private var windowEnd: UInt64 = 0
    private var drainEnd: UInt64 = 0
    private var phaseTimer: PhaseTimer?
    /// Connections still open when the drain deadline passed (not errors; neither side finished them).
    private(set) var unfinished = 0

    init(index: Int, slots: Int, config: BenchConfig) throws {
        self.index = index
        self.config = config
        self.slotCount = slots
        var ctxs: [ClientTLSContext] = []
        for (i, shape) in config.shapes.enumerated() {
            ctxs.append(
                try ClientTLSContext(
                    shape: shape,
                    index: i,
                    config: config,
                    wantHello: index == 0 && config.dumpHelloDir != nil
                )
            )
        }
        contexts = ctxs
        stats = WorkerStats(shapes: ctxs.count)
        messenger = try LoopMessenger()
        request = Array(
            "GET \(config.path) HTTP/1.1\r\nHost: \(config.hostHeader)\r\nUser-Agent: edgeproxy-bench\r\nAccept: */*\r\n\r\n"
                .utf8
        )
        readBuffer = .allocate(byteCount: 65536, alignment: 16)
        timeoutNanos = UInt64(config.timeout * 1e9)
    }

    deinit { readBuffer.deallocate() }

    /// The thread body: runs the load until the window and the drain are over (or, in hold mode, until `stopHold`).
    func run(start: UInt64) {
        do {
            loop = try EventLoop()
            try messenger.attach(to: loop)
        } catch {
            fatalError("event loop: \(error)")
        }
        warmEnd = start &+ UInt64(config.warmup * 1e9)
        windowEnd = warmEnd &+ UInt64(config.duration * 1e9)
        drainEnd = windowEnd &+ UInt64(config.drain * 1e9)
        slots = (0..<slotCount).map { _ in BenchConnection(worker: self) }
        active = slots.count
        loop.onTickEnd { [unowned self] in self.restartPending() }
        if config.hold != nil {
            let first = min(slots.count, config.maxInflight)
            while opened < first {
                opened += 1
                slots[opened - 1].start()
            }
        } else {
            for s in slots { s.start() }
            let t = PhaseTimer(self)
            phaseTimer = t
            loop.schedule(at: windowEnd, t)
        }
        if slots.isEmpty { loop.stop() }
        loop.run()
        for s in slots { s.kill() }
        slots.removeAll()
        progress.finished.store(true, ordering: .releasing)
    }

    // MARK: decisions

    /// Shape and whether to present a ticket, spread evenly by error diffusion (exact shares, reproducible).
    func nextConnectionChoice() -> (shape: Int, resume: Bool) {
        var shape = 0
        if contexts.count > 1 {
            shapeAccumulator += config.schannelShare
            if shapeAccumulator >= 1 - 1e-9 {
                shapeAccumulator -= 1
                shape = 1
            }
        }
        resumeAccumulator += config.resumeRatio
        var resume = false
        if resumeAccumulator >= 1 - 1e-9 {
            resumeAccumulator -= 1
            resume = true
        }
        return (shape, resume)
    }

    // MARK: slot lifecycle

    func slotFinished(_ c: BenchConnection, backoff: Bool) {
        if !starting {
            retire(c)
            return
        }
        if backoff {
            loop.schedule(at: monotonicNanos() &+ 10_000_000, c)
        } else {
            restartQueue.append(c)
        }
    }

    private func retire(_ c: BenchConnection) {
        guard !c.isDead else { return }
        c.kill()
        active -= 1
        if active == 0 { loop.stop() }
    }

    private func restartPending() {
        guard !restartQueue.isEmpty else { return }
        let q = restartQueue
        restartQueue.removeAll(keepingCapacity: true)
        for c in q {
            if starting { c.start() } else { retire(c) }
        }
    }

    fileprivate func phaseTick(now: UInt64) {
        if starting {
            starting = false
            for s in slots where s.isIdle { retire(s) }  // waiting for a restart or a connect back-off
            if active > 0 { loop.schedule(at: drainEnd, phaseTimer!) }
            return
        }
        for s in slots where !s.isDead {
            s.abandon()
            unfinished += 1
            retire(s)
        }
        loop.stop()
    }

    // hold mode
    func connectionHeld() {
        stats.held += 1
        progress.settled.wrappingAdd(1, ordering: .relaxed)
        openNextHeld()
    }

    func holdFailed() {
        stats.holdFailed += 1
        progress.settled.wrappingAdd(1, ordering: .relaxed)
        openNextHeld()
    }

    func holdClosed() { stats.holdClosed += 1 }

    private func openNextHeld() {
        if opened < slots.count {
            opened += 1
            slots[opened - 1].start()
        }
    }

    /// Hold mode: closes everything and ends `run`. Loop thread (sent through `messenger`).
    func stopHold() {
        for s in slots { s.kill() }
        loop.stop()
    }

    // MARK: recording

    func recordHandshake(ms: Float) {
        if inWindowNow() { stats.handshakeMs.append(ms) }
    }

    func recordRequest(ms: Float, status: Int) {
        let bad = !(200..<300).contains(status)
        stats.total.requests += 1
        if bad { stats.total.badStatus += 1 }
        if inWindowNow() {
            stats.window.requests += 1
            if bad { stats.window.badStatus += 1 }
            stats.requestMs.append(ms)
        }
    }

    func recordConnection(
        shape: Int,
        reused: Bool,
        presented: Bool,
        tickets: Int,
        sessionCallbacks: Int,
        requests: Int,
        ms: Float,
        ssl: OpaquePointer
    ) {
        func add(_ c: inout Counters) {
            c.connections += 1
            c.handshakes += 1
            c.handshakeTickets += tickets
            if reused { c.handshakesResumed += 1 }
            if reused {
                c.resumed += 1
                c.ticketsOnResumed += tickets
            } else {
                c.full += 1
                c.ticketsOnFull += tickets
            }
            if presented { c.attempts += 1 }
            c.tickets += tickets
            c.sessionCallbacks += sessionCallbacks
        }
        add(&stats.total)
        if inWindowNow() {
            add(&stats.window)
            add(&stats.byShape[shape])
            stats.byShape[shape].requests += requests
            stats.connectionMs.append(ms)
        }
        let key = (shape == 0 ? "" : contexts[shape].shape.name + " ") + (reused ? "resumed" : "full")
        if stats.negotiated[key] == nil { stats.negotiated[key] = describe(ssl) }
        progress.connections.wrappingAdd(1, ordering: .relaxed)
        if reused { progress.resumed.wrappingAdd(1, ordering: .relaxed) }
    }

    /// A connection that completed its handshake but not its requests (error, or cut at the drain deadline):
    /// the server counted the handshake and its tickets, so the totals do too.
    func recordAbandonedHandshake(reused: Bool, tickets: Int) {
        func add(_ c: inout Counters) {
            c.handshakes += 1
            c.handshakeTickets += tickets
            if reused { c.handshakesResumed += 1 }
        }
        add(&stats.total)
        if inWindowNow() { add(&stats.window) }
    }

    func recordError(_ kind: ErrorKind, _ message: String) {
        let k = ErrorKind.allCases.firstIndex(of: kind)!
        stats.total.errors[k] += 1
        if inWindowNow() { stats.window.errors[k] += 1 }
        if stats.errorSamples[kind.rawValue] == nil { stats.errorSamples[kind.rawValue] = message }
        progress.errors.wrappingAdd(1, ordering: .relaxed)
    }

    /// Window membership by the clock now (events late in a tick may be past `loop.now`).
    private func inWindowNow() -> Bool {
        if config.hold != nil { return true }
        let t = monotonicNanos()
        return t >= warmEnd && t < windowEnd
    }

    private func describe(_ ssl: OpaquePointer) -> String {
        let version = String(cString: SSL_get_version(ssl))
        let cipher = SSL_get_current_cipher(ssl).map { String(cString: SSL_CIPHER_get_name($0)) } ?? "-"
        var alpnPtr: UnsafePointer<UInt8>?
        var alpnLen: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &alpnPtr, &alpnLen)
        let alpn = alpnPtr.map { String(decoding: UnsafeBufferPointer(start: $0, count: Int(alpnLen)), as: UTF8.self) }
        return "\(version)/\(cipher)/alpn=\(alpn ?? "-")"
    }
}

/// The worker's phase clock: end of the window (stop starting connections), then end of the drain.
private final class PhaseTimer: TimerHandler {
    var timerSlot = TimerSlot()
    unowned let worker: BenchWorker
    init(_ w: BenchWorker) { worker = w }
    func timerFired(now: UInt64) { worker.phaseTick(now: now) }
}
