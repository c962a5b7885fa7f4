import ProxyEventLoop
import Synchronization

/// What every Redis poller of the fleet (``RedisKeySync``, ``RedisFlagSync``) does the same way: a dedicated
/// thread that runs one cycle per poll and backs off on failure; the store's up/down state with one transition
/// callback per change; the cycle count; each rejected entry counted and reported once. The pollers keep only what
/// they read and write.
final class RedisPoller: Sendable {
    /// Longest wait between failed cycles (a poller may ask for less).
    static let maxBackoffNanoseconds: Int64 = 30_000_000_000
    private let up = Atomic<Int>(-1)  // -1 unknown, 0 down, 1 up
    private let stopping = Atomic<Bool>(false)
    private let cycles = Atomic<Int>(0)
    private let rejected = Atomic<Int>(0)
    private let thread = Mutex<OSThread?>(nil)
    /// The wait between cycles: ended early by ``wake()`` and ``stop()``.
    private let sleeper = Sleeper()
    /// Rejected entries already reported (slot + entry), so a bad entry is counted and logged once, not per poll.
    private let seenRejected = Mutex<Set<[UInt8]>>([])

    /// Whether the last cycle succeeded (nil before the first).
    var isUp: Bool? {
        switch up.load(ordering: .relaxed) {
        case 1: true
        case 0: false
        default: nil
        }
    }
    var completedCycles: Int { cycles.load(ordering: .relaxed) }
    var rejectedEntries: Int { rejected.load(ordering: .relaxed) }

    /// Runs one cycle: counts it and records its outcome. When the state changes, `transition` is called (with the
    /// error's description when the store went down, after `connection` is closed so the next cycle reconnects).
    func cycle<T>(
        _ body: () throws(RedisError) -> T,
        closingOnDown connection: RedisConnection,
        transition: (_ up: Bool, _ reason: String) -> Void
    ) throws(RedisError) -> T {
        defer { cycles.add(1, ordering: .relaxed) }
        do {
            let r = try body()
            if up.exchange(1, ordering: .relaxed) != 1 { transition(true, "") }
            return r
        } catch {
            if up.exchange(0, ordering: .relaxed) != 0 {
                connection.close()
                transition(false, error.description)
            }
            throw error
        }
    }

    /// True (and counted) the first time this entry is rejected under `slot`; false for a repeat. Memory is bounded:
    /// past 1,024 distinct entries the memory starts over.
    func firstRejection(slot: String, entry: [UInt8]) -> Bool {
        let fresh = seenRejected.withLock { seen -> Bool in
            if seen.count > 1024 { seen.removeAll() }
            return seen.insert(Array(slot.utf8) + [0] + entry).inserted
        }
        if fresh { rejected.add(1, ordering: .relaxed) }
        return fresh
    }

    /// Starts the thread. It calls `cycle` (true: it succeeded) every `poll` nanoseconds; after a failure it waits
    /// from `max(50 ms, poll / 4)` doubling up to `backoffCap`. ``wake()`` ends a wait early. `finish` runs on the
    /// thread when it stops. Call once.
    func start(
        poll: Int64,
        backoffCap: Int64 = RedisPoller.maxBackoffNanoseconds,
        cycle: @escaping @Sendable () -> Bool,
        finish: @escaping @Sendable () -> Void
    ) {
        let t = OSThread { [self] in
            let base = max(50_000_000, poll / 4)
            var backoff = base
            while !stopping.load(ordering: .relaxed) {
                if cycle() {
                    backoff = base
                    sleeper.sleep(nanoseconds: poll)
                } else {
                    sleeper.sleep(nanoseconds: backoff)
                    backoff = min(backoffCap, backoff * 2)
                }
            }
            finish()
        }
        thread.withLock { $0 = t }
    }

    /// Ends the thread's current wait: the next cycle runs now.
    func wake() { sleeper.wake() }

    /// Stops the thread and waits for it (at most about one command timeout: a cycle in progress ends first).
    func stop() {
        stopping.store(true, ordering: .relaxed)
        sleeper.wake()
        if let t = thread.withLock({ v -> OSThread? in
            defer { v = nil }
            return v
        }) {
            t.join()
        }
    }
}
