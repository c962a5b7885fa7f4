import CProxyShims
import Glibc
import ProxyCore

/// Something registered with an `EventLoop` for readiness events on one fd.
public protocol EventHandler: AnyObject {
    /// Called on the loop's thread with the epoll event bits (see `EventLoop.readable` etc.).
    func handleEvent(_ events: UInt32)
}

/// Something that wants to be called back at (or after) a deadline.
public protocol TimerHandler: AnyObject {
    /// Called on the loop's thread once `now >= deadline` of an entry it scheduled. Entries are never cancelled:
    /// the handler compares against its own current deadline and ignores stale wake-ups (lazy cancellation).
    func timerFired(now: UInt64)
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
        if i >= handlers.count { handlers.append(contentsOf: repeatElement(Registration(), count: i - handlers.count + 64)) }
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

    /// Removes `fd` (call before closing it). Pending events for it in this tick are dropped.
    public func deregister(fd: Int32) {
        let i = Int(fd)
        guard i < handlers.count else { return }
        handlers[i] = Registration()
        _ = epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nil)
    }

    /// Schedules `handler.timerFired` at or after `deadline` (monotonic ns).
    public func schedule(at deadline: UInt64, _ handler: TimerHandler) {
        timers.push(deadline: deadline, handler: handler)
    }

    /// Runs `body` at the top of every tick (before handling events): snapshot pick-ups.
    public func onTickStart(_ body: @escaping () -> Void) { beforeTick.append(body) }
    /// Runs `body` at the end of every tick (after events and timers): batched writes such as the access log.
    public func onTickEnd(_ body: @escaping () -> Void) { afterTick.append(body) }

    /// Asks `run()` to return after the current tick. Loop thread only.
    public func stop() { stopped = true }

    /// Runs until `stop()`.
    public func run() {
        while !stopped {
            var timeout: Int32 = -1
            if let next = timers.peekDeadline {
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

/// A binary min-heap of (deadline, handler); entries are only removed when they fire.
struct TimerHeap {
    private var deadlines: [UInt64] = []
    private var handlers: [TimerHandler] = []

    var peekDeadline: UInt64? { deadlines.first }
    var count: Int { deadlines.count }

    mutating func push(deadline: UInt64, handler: TimerHandler) {
        deadlines.append(deadline)
        handlers.append(handler)
        var i = deadlines.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if deadlines[parent] <= deadlines[i] { break }
            deadlines.swapAt(parent, i)
            handlers.swapAt(parent, i)
            i = parent
        }
    }

    mutating func pop() -> TimerHandler {
        let top = handlers[0]
        let last = deadlines.count - 1
        deadlines.swapAt(0, last)
        handlers.swapAt(0, last)
        deadlines.removeLast()
        handlers.removeLast()
        var i = 0
        let n = deadlines.count
        while true {
            let l = 2 * i + 1
            let r = l + 1
            var m = i
            if l < n && deadlines[l] < deadlines[m] { m = l }
            if r < n && deadlines[r] < deadlines[m] { m = r }
            if m == i { break }
            deadlines.swapAt(m, i)
            handlers.swapAt(m, i)
            i = m
        }
        return top
    }
}
