import CProxyShims
import Glibc
import Synchronization

/// The only way other threads talk to an `EventLoop`: a locked queue of closures plus an eventfd wake-up.
/// Used for rare control messages (drain, reload), never per request.
public final class LoopMessenger: EventHandler, @unchecked Sendable {
    // SAFETY: `pending` is only touched under `lock`; `efd` is immutable after init; `handleEvent` runs on the
    // loop thread that registered this messenger.
    private let lock = Mutex<[@Sendable () -> Void]>([])
    private let efd: Int32

    public init() throws(SyscallError) {
        efd = try syscallChecked("eventfd") { eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC)) }
    }

    deinit { Glibc.close(efd) }

    /// Registers the wake-up fd with `loop`. Call once, on the loop's thread.
    public func attach(to loop: EventLoop) throws(SyscallError) {
        try loop.register(fd: efd, interest: EventLoop.readable, handler: self)
    }

    /// Enqueues `body` to run on the loop's thread and wakes the loop. Any thread.
    public func send(_ body: @escaping @Sendable () -> Void) {
        lock.withLock { $0.append(body) }
        var one: UInt64 = 1
        _ = Glibc.write(efd, &one, 8)
    }

    public func handleEvent(_ events: UInt32) {
        var v: UInt64 = 0
        _ = Glibc.read(efd, &v, 8)
        let work = lock.withLock { q -> [@Sendable () -> Void] in
            let w = q
            q.removeAll()
            return w
        }
        for w in work { w() }
    }
}
