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
