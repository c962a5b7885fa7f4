import ProxyCore
import Synchronization

/// Publishes immutable snapshots to workers without a lock per request: workers compare `generation`
/// (an atomic load) at the top of each loop tick and take the lock only when it changed.
final class SnapshotBox<T: AnyObject & Sendable>: Sendable {
    private let current: Mutex<T>
    private let gen = Atomic<UInt64>(1)

    init(_ initial: T) { current = Mutex(initial) }

    var generation: UInt64 { gen.load(ordering: .acquiring) }

    func load() -> T { current.withLock { $0 } }

    func publish(_ value: T) {
        current.withLock { $0 = value }
        gen.wrappingAdd(1, ordering: .releasing)
    }
}
