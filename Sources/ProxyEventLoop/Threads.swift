import Dispatch
import Glibc

/// A joinable OS thread running `body` (worker loops, the access-log writer). pthreads rather than Foundation's
/// Thread: each event loop must own exactly one kernel thread for its whole life, and it must be joinable.
public struct OSThread: Sendable {
    private let id: pthread_t

    /// Starts a thread running `body`.
    public init(_ body: @escaping @Sendable () -> Void) {
        final class Box: @unchecked Sendable {
            // SAFETY: written once before the thread starts, read once by it.
            let body: @Sendable () -> Void
            init(_ b: @escaping @Sendable () -> Void) { body = b }
        }
        // SAFETY: retained here, released by the new thread when `body` returns.
        let box = Unmanaged.passRetained(Box(body))
        var t = pthread_t()
        let rc = pthread_create(
            &t,
            nil,
            { arg in
                let b = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
                b.body()
                return nil
            },
            box.toOpaque()
        )
        precondition(rc == 0, "pthread_create failed: \(rc)")
        id = t
    }

    /// Waits for the thread to finish.
    public func join() { pthread_join(id, nil) }
}

/// A sleep another thread can end early: the background threads (resolver, health checks, OCSP, access-log writer)
/// wait on one until their next due time, and `wake()` (stop, reload, new work) ends the wait at once. A wake that
/// comes while nobody sleeps is not lost: it ends the next sleep. An idle proxy so wakes about once a second per
/// thread instead of polling every few milliseconds.
public final class Sleeper: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)

    public init() {}

    /// Waits up to `nanoseconds` (at least 0); true when `wake()` ended the wait.
    @discardableResult
    public func sleep(nanoseconds: Int64) -> Bool {
        semaphore.wait(timeout: .now() + .nanoseconds(Int(max(0, nanoseconds)))) == .success
    }

    /// Ends the current (or the next) `sleep`.
    public func wake() { semaphore.signal() }
}
