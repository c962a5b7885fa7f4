import Synchronization

/// Publishes the current ``TicketKeyRing`` to every worker without a lock per handshake.
///
/// Protocol: a source calls ``publish(_:)`` (rare: hourly, on file change, on admin rotate). A worker keeps its own
/// reference to the ring (``TicketKeyRingReader``) and, at the top of each event-loop tick, compares the atomic
/// ``generation`` with its ring's generation; only when they differ does it take the lock once (``current()``) to
/// copy the new reference. The ticket callback then reads the worker-local ring with no lock and no atomic.
///
/// Promises: ``generation`` equals the generation of the ring ``current()`` returns once ``publish(_:)`` has
/// returned; generations never go backwards.
public final class TicketKeyStore: Sendable {
    private let ring: Mutex<TicketKeyRing>
    private let publishedGeneration: Atomic<UInt64>

    /// A store that starts with `initial`.
    public init(initial: TicketKeyRing) {
        self.ring = Mutex(initial)
        self.publishedGeneration = Atomic(initial.generation)
    }

    /// The generation of the latest published ring. Lock-free (one acquiring load): cheap enough per loop tick.
    public var generation: UInt64 { publishedGeneration.load(ordering: .acquiring) }

    /// The latest published ring. Takes the lock: call it when ``generation`` changed, not per handshake.
    public func current() -> TicketKeyRing { ring.withLock { $0 } }

    /// Makes `newRing` the current ring. Precondition: `newRing.generation > generation` (sources use
    /// `store.generation + 1`; one source publishes into a store at a time).
    public func publish(_ newRing: TicketKeyRing) {
        ring.withLock { current in
            precondition(newRing.generation > current.generation, "ticket key ring generations must increase")
            current = newRing
            publishedGeneration.store(newRing.generation, ordering: .releasing)
        }
    }
}

/// A worker's own view of the store: the ring the ticket callback reads. Loop-bound: use it on one thread only
/// (the worker's event loop), which is why it is not `Sendable`.
public final class TicketKeyRingReader {
    /// The store this reader follows.
    public let store: TicketKeyStore
    /// The ring to use in this worker until the next ``refresh()``. Read it from the ticket callback directly.
    public private(set) var ring: TicketKeyRing

    /// Starts with the store's current ring.
    public init(store: TicketKeyStore) {
        self.store = store
        self.ring = store.current()
    }

    /// Call at the top of each loop tick: one atomic load; takes the store's lock only if a new ring was published.
    /// Returns whether the ring changed.
    @discardableResult
    public func refresh() -> Bool {
        guard store.generation != ring.generation else { return false }
        ring = store.current()
        return true
    }
}
