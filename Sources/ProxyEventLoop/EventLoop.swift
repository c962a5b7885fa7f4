import CProxyShims
import Glibc
import ProxyCore

/// Something registered with an `EventLoop` for readiness events on one fd.
public protocol EventHandler: AnyObject {
    /// Called on the loop's thread with the epoll event bits (see `EventLoop.readable` etc.).
    func handleEvent(_ events: UInt32)
}

/// Something that wants to be called back at (or after) a deadline. Each handler has at most one pending timer,
/// whose position in the loop's heap it stores in `timerSlot` (so it can be moved or cancelled in O(log n)).
public protocol TimerHandler: AnyObject {
    /// Owned by the event loop; initialise with `TimerSlot()` and never modify.
    var timerSlot: TimerSlot { get set }
    /// Called on the loop's thread once the handler's deadline has passed. The timer is no longer pending.
    func timerFired(now: UInt64)
}

/// Work that stopped before it was done, to go on in the loop's next tick: a busy connection that yields after its
/// rounds (see `EventLoop.continueNextTick`).
public protocol DeferredWork: AnyObject {
    /// Owned by the event loop; initialise with `DeferredSlot()` and never modify.
    var deferredSlot: DeferredSlot { get set }
    /// Called on the loop's thread in the tick after `continueNextTick`, after that tick's events. No longer
    /// pending by then: it may call `continueNextTick` again.
    func continueDeferred()
}

/// Whether a `DeferredWork` is queued for the loop's next tick (so that it is queued at most once).
public struct DeferredSlot {
    public internal(set) var isPending = false
    public init() {}
}

/// A handler's place in its loop's timer heap (-1: no timer pending).
public struct TimerSlot {
    /// Heap position, -1 when no timer is pending.
    public internal(set) var index = -1
    /// The pending deadline (meaningful only while pending).
    public internal(set) var deadline: UInt64 = 0
    public init() {}
    /// True while a timer is pending.
    public var isPending: Bool { index >= 0 }
}

/// One epoll loop, owned by one thread.
///
/// Registered fds are tagged with a generation in the epoll user data (`generation << 32 | fd`) so that an event
/// for a closed-and-reused fd number is dropped. Timers are a binary min-heap with lazy cancellation.
/// Other threads talk to a loop only through `LoopMessenger` (a locked queue plus an eventfd wake-up).
public final class EventLoop {
    public static let readable = cps_epollin()
    public static let writable = cps_epollout()
    public static let error = cps_epollerr()
    public static let hangup = cps_epollhup()
    public static let readHangup = cps_epollrdhup()
    public static let edgeTriggered = cps_epollet()

    private let epfd: Int32
    private var handlers: [Registration] = []
    private var nextGeneration: UInt32 = 1
    private var events: UnsafeMutablePointer<epoll_event>
    private let maxEvents: Int32 = 256
    private var timers = TimerHeap()
    private var beforeTick: [() -> Void] = []
    private var afterTick: [() -> Void] = []
    /// Slices to run in the next tick, and the ones being run in this tick.
    private var nextTick: [DeferredWork] = []
    private var runningDeferred: [DeferredWork] = []
    /// Monotonic time taken after each epoll_wait; handlers read it instead of calling the clock again.
    public private(set) var now: UInt64 = monotonicNanos()
    /// Set by `stop()`; `run()` returns at the end of the current tick.
    public private(set) var stopped = false
    /// Nanoseconds spent handling events (not waiting): per-worker loop busy time.
    public private(set) var busyNanos: UInt64 = 0
    private let thread: pthread_t

    private struct Registration {
        var generation: UInt32 = 0
        var handler: EventHandler?
    }

    /// Creates a loop bound to the calling thread.
    public init() throws(SyscallError) {
        epfd = try syscallChecked("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
        events = .allocate(capacity: Int(maxEvents))
        thread = pthread_self()
    }

    deinit {
        events.deallocate()
        Glibc.close(epfd)
    }

    /// True when called on the loop's own thread.
    public var inLoopThread: Bool { pthread_equal(thread, pthread_self()) != 0 }

    /// Registers `fd` for `interest` (edge-triggered is the caller's choice). Replaces any prior registration.
    public func register(fd: Int32, interest: UInt32, handler: EventHandler) throws(SyscallError) {
        assert(inLoopThread)
        let i = Int(fd)
        if i >= handlers.count {
            handlers.append(contentsOf: repeatElement(Registration(), count: i - handlers.count + 64))
        }
        nextGeneration &+= 1
        if nextGeneration == 0 { nextGeneration = 1 }
        handlers[i] = Registration(generation: nextGeneration, handler: handler)
        var ev = epoll_event()
        ev.events = interest
        ev.data.u64 = UInt64(nextGeneration) << 32 | UInt64(UInt32(bitPattern: fd))
        try syscallChecked("epoll_ctl(ADD)") { epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) }
    }

    /// Changes the interest set of a registered fd.
    public func modify(fd: Int32, interest: UInt32) throws(SyscallError) {
        var ev = epoll_event()
        ev.events = interest
        ev.data.u64 = UInt64(handlers[Int(fd)].generation) << 32 | UInt64(UInt32(bitPattern: fd))
        try syscallChecked("epoll_ctl(MOD)") { epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) }
    }

    /// Forgets `fd` without an epoll_ctl call, for an fd that is closed right after (closing it removes it from
    /// the epoll set; it is never dup'd here). Pending events for it in this tick are dropped. One syscall less per
    /// connection than `deregister`.
    public func forgetClosing(fd: Int32) {
        let i = Int(fd)
        guard i < handlers.count else { return }
        handlers[i] = Registration()
    }

    /// Removes `fd` (call before closing it). Pending events for it in this tick are dropped.
    public func deregister(fd: Int32) {
        let i = Int(fd)
        guard i < handlers.count else { return }
        handlers[i] = Registration()
        _ = epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nil)
    }

    /// Sets `handler`'s timer to `deadline` (monotonic ns), replacing any pending one.
    public func schedule(at deadline: UInt64, _ handler: TimerHandler) {
        timers.set(handler, deadline: deadline)
    }

    /// Cancels `handler`'s pending timer, if any (and drops the loop's reference to it).
    public func cancelTimer(_ handler: TimerHandler) {
        timers.remove(handler)
    }

    /// Runs `body` at the top of every tick (before handling events): snapshot pick-ups.
    public func onTickStart(_ body: @escaping () -> Void) { beforeTick.append(body) }
    /// Runs `body` at the end of every tick (after events and timers): batched writes such as the access log.
    public func onTickEnd(_ body: @escaping () -> Void) { afterTick.append(body) }

    /// Runs `work.continueDeferred()` in the next tick, after the events that tick's epoll_wait returns (which then
    /// does not wait). For fairness: a connection that has had its rounds stops and goes on here, so that the events
    /// of every other connection (a new client's handshake among them) come first instead of waiting until a large
    /// transfer is done. Timers at a past deadline cannot do this: they run in the same tick, after the events,
    /// again and again. Queued at most once (a second call while pending does nothing); `work` is retained until
    /// the call, which must check that it is still open.
    public func continueNextTick(_ work: DeferredWork) {
        guard !work.deferredSlot.isPending else { return }
        work.deferredSlot.isPending = true
        nextTick.append(work)
    }

    /// Asks `run()` to return after the current tick. Loop thread only.
    public func stop() { stopped = true }

    /// Runs until `stop()`.
    public func run() {
        while !stopped {
            var timeout: Int32 = -1
            if !nextTick.isEmpty {
                timeout = 0
            } else if let next = timers.peekDeadline {
                let t = monotonicNanos()
                timeout = next <= t ? 0 : Int32(min((next - t + 999_999) / 1_000_000, 60_000))
            }
            let n = epoll_wait(epfd, events, maxEvents, timeout)
            now = monotonicNanos()
            let start = now
            for f in beforeTick { f() }
            if n > 0 {
                for k in 0..<Int(n) {
                    let ev = events[k]
                    let fd = Int(UInt32(truncatingIfNeeded: ev.data.u64))
                    let gen = UInt32(truncatingIfNeeded: ev.data.u64 >> 32)
                    guard fd < handlers.count, handlers[fd].generation == gen, let h = handlers[fd].handler else {
                        continue
                    }
                    h.handleEvent(ev.events)
                }
            }
            if !nextTick.isEmpty {
                // Swapped first: a slice that defers again goes to the next tick, not into this loop.
                swap(&nextTick, &runningDeferred)
                for w in runningDeferred {
                    w.deferredSlot.isPending = false
                    w.continueDeferred()
                }
                runningDeferred.removeAll(keepingCapacity: true)
            }
            if timers.peekDeadline != nil {
                now = monotonicNanos()
                while let d = timers.peekDeadline, d <= now {
                    let h = timers.pop()
                    h.timerFired(now: now)
                }
            }
            for f in afterTick { f() }
            busyNanos &+= monotonicNanos() &- start
        }
    }
}

/// A binary min-heap of handlers keyed by their deadline; each handler records its own index, so a timer can be
/// moved or cancelled in O(log n) and a closed connection leaves the heap at once (no dead entries waking the loop).
struct TimerHeap {
    /// The deadline is kept next to its handler so that sifting compares plain integers instead of reading each
    /// handler's slot through its protocol witness (a retain and release per comparison).
    private struct Entry {
        var deadline: UInt64
        let handler: TimerHandler
    }
    private var entries: [Entry] = []

    var peekDeadline: UInt64? { entries.first?.deadline }
    var count: Int { entries.count }

    mutating func set(_ h: TimerHandler, deadline: UInt64) {
        let i = h.timerSlot.index
        h.timerSlot.deadline = deadline
        if i >= 0 {
            let old = entries[i].deadline
            entries[i].deadline = deadline
            if deadline < old { siftUp(i) } else if deadline > old { siftDown(i) }
        } else {
            h.timerSlot.index = entries.count
            entries.append(Entry(deadline: deadline, handler: h))
            siftUp(entries.count - 1)
        }
    }

    mutating func remove(_ h: TimerHandler) {
        let i = h.timerSlot.index
        guard i >= 0, i < entries.count, entries[i].handler === h else { return }
        h.timerSlot.index = -1
        let last = entries.count - 1
        if i == last {
            entries.removeLast()
            return
        }
        // The last entry fills the hole at i, then moves to its place (up or down).
        let moved = entries.removeLast()
        entries.withUnsafeMutableBufferPointer { buf in
            let e = buf.baseAddress!
            (e + i).pointee = moved
            if i > 0 && e[(i - 1) / 2].deadline > moved.deadline {
                Self.siftUp(e, i)
            } else {
                Self.siftDown(e, buf.count, i)
            }
        }
    }

    mutating func pop() -> TimerHandler {
        let top = entries[0].handler
        remove(top)
        return top
    }

    private mutating func siftUp(_ start: Int) {
        entries.withUnsafeMutableBufferPointer { Self.siftUp($0.baseAddress!, start) }
    }

    private mutating func siftDown(_ start: Int) {
        entries.withUnsafeMutableBufferPointer { Self.siftDown($0.baseAddress!, $0.count, start) }
    }

    // Sifting moves a hole instead of swapping: each step moves one entry (its handler reference moves, no
    // retain/release) and records its new index; the sifted entry is written once, at its final place.
    // (Swapping array elements and writing both handlers' slots through the array copied each handler reference:
    // ~1,400 instructions per connection on the TLS 1.2 session-ID row, callgrind.)

    private static func siftUp(_ e: UnsafeMutablePointer<Entry>, _ start: Int) {
        var i = start
        let item = (e + i).move()
        while i > 0 {
            let parent = (i - 1) / 2
            if e[parent].deadline <= item.deadline { break }
            (e + i).moveInitialize(from: e + parent, count: 1)
            e[i].handler.timerSlot.index = i
            i = parent
        }
        (e + i).initialize(to: item)
        e[i].handler.timerSlot.index = i
    }

    private static func siftDown(_ e: UnsafeMutablePointer<Entry>, _ n: Int, _ start: Int) {
        var i = start
        let item = (e + i).move()
        while true {
            let l = 2 * i + 1
            if l >= n { break }
            var m = l
            if l + 1 < n && e[l + 1].deadline < e[l].deadline { m = l + 1 }
            if e[m].deadline >= item.deadline { break }
            (e + i).moveInitialize(from: e + m, count: 1)
            e[i].handler.timerSlot.index = i
            i = m
        }
        (e + i).initialize(to: item)
        e[i].handler.timerSlot.index = i
    }
}
