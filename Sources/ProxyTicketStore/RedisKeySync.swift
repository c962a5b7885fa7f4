public import ProxyCore
public import ProxyTickets
import Synchronization

/// Keeps a ``FleetKeySource`` in step with Redis from a dedicated thread (never a worker's event loop): every poll
/// it reads the epoch slots the plan says to hold (from the replica when one is configured, else the primary),
/// creates missing current/look-ahead epochs on the primary with `SET slot entry NX PX ttl`, writes back keys it
/// holds that Redis lost (restarted empty), reads imported keys, and hands the result to the source, which
/// publishes a ring snapshot. Entries are sealed/opened with a ``TicketKeyWrapper``: Redis only sees ciphertext.
///
/// Failure handling: any error marks the store down (``isUp``), emits ``Event/down(_:)`` once per transition and
/// retries with exponential backoff (from `poll/4` up to `min(30 s, max(poll, R/2))`); the source keeps serving its
/// cached ring and applies its own grace/fallback on the control loop's tick. Blocking calls are bounded by the
/// connect and command timeouts, so `stop()` returns within roughly one of them.
public final class RedisKeySync: Sendable {
    /// Connection settings.
    public struct Settings: Sendable {
        public var primary: RedisEndpoint
        public var replica: RedisEndpoint?
        public var connectTimeoutNanoseconds: Int64
        public var commandTimeoutNanoseconds: Int64

        public init(
            primary: RedisEndpoint,
            replica: RedisEndpoint?,
            connectTimeoutNanoseconds: Int64,
            commandTimeoutNanoseconds: Int64
        ) {
            self.primary = primary
            self.replica = replica
            self.connectTimeoutNanoseconds = connectTimeoutNanoseconds
            self.commandTimeoutNanoseconds = commandTimeoutNanoseconds
        }
    }

    /// What happened, for logs and metrics. Emitted on the sync thread; never carries key bytes.
    public enum Event: Sendable {
        /// The store became reachable (first success, or again after `down`).
        case up
        /// The store became unreachable (once per transition).
        case down(String)
        /// The replica failed; reads go to the primary until it answers again (once per transition).
        case replicaDown(String)
        case replicaUp
        /// An entry did not open: counted, ignored, never overwritten.
        case rejected(slot: String, reason: TicketKeyWrapper.OpenError)
        /// This instance created epoch `epoch`'s key.
        case created(epoch: Int64, name: String)
        /// Redis had lost epoch `epoch` (restarted empty); this instance wrote its cached key back.
        case restored(epoch: Int64, name: String)
        /// Redis holds a different key for epochs this instance had cached; Redis' keys win.
        case replaced(epochs: [Int64])
    }

    /// The result of one cycle.
    public struct Snapshot: Sendable {
        public var shared: [Int64: TicketKey]
        public var imported: [(key: TicketKey, notAfter: Timestamp)]
    }

    public let plan: FleetKeyPlan
    public let wrapper: TicketKeyWrapper
    public let settings: Settings
    private let onEvent: @Sendable (Event) -> Void

    private let poller = RedisPoller()
    private let replicaUp = Atomic<Int>(-1)
    private let createdTotal = Atomic<Int>(0)
    // SAFETY (the connections): used only by the thread running cycles — the starting thread before `start()`
    // and the sync thread after; `start()` happens-before the thread's first use (pthread_create).
    private nonisolated(unsafe) let primary: RedisConnection
    private nonisolated(unsafe) let replica: RedisConnection?

    public init(
        plan: FleetKeyPlan,
        wrapper: TicketKeyWrapper,
        settings: Settings,
        onEvent: @escaping @Sendable (Event) -> Void = { _ in }
    ) {
        self.plan = plan
        self.wrapper = wrapper
        self.settings = settings
        self.onEvent = onEvent
        primary = RedisConnection(
            endpoint: settings.primary,
            connectTimeoutNanoseconds: settings.connectTimeoutNanoseconds,
            commandTimeoutNanoseconds: settings.commandTimeoutNanoseconds
        )
        replica = settings.replica.map {
            RedisConnection(
                endpoint: $0,
                connectTimeoutNanoseconds: settings.connectTimeoutNanoseconds,
                commandTimeoutNanoseconds: settings.commandTimeoutNanoseconds
            )
        }
    }

    /// Whether the last cycle succeeded (nil before the first cycle).
    public var isUp: Bool? { poller.isUp }
    /// Entries rejected so far (tampered, foreign or malformed).
    public var rejectedEntries: Int { poller.rejectedEntries }
    /// Epoch keys this instance created.
    public var createdKeys: Int { createdTotal.load(ordering: .relaxed) }
    /// Completed cycles (successful or not).
    public var completedCycles: Int { poller.completedCycles }

    // MARK: - one cycle

    /// One blocking round trip set: read, create/restore, read imported. `held` are the shared keys the caller
    /// already holds (written back when Redis lost them). Records up/down state and emits transition events.
    public func cycle(held: [Int64: TicketKey], now: Timestamp) throws(RedisError) -> Snapshot {
        try poller.cycle(
            { () throws(RedisError) in try cycleBody(held: held, now: now) },
            closingOnDown: primary,
            transition: { up, reason in onEvent(up ? .up : .down(reason)) }
        )
    }

    private func cycleBody(held: [Int64: TicketKey], now: Timestamp) throws(RedisError) -> Snapshot {
        // Liveness of the primary even when reads go to the replica: writes (creation) need it.
        _ = try primary.command("PING")
        let hold = plan.epochsToHold(at: now)
        let epochs = Array(hold)
        let slots = epochs.map { plan.slot(epoch: $0) }
        let values = try read { c throws(RedisError) in try Self.mget(c, slots) }
        var shared: [Int64: TicketKey] = [:]
        let create = plan.epochsToCreate(at: now)
        for (i, n) in epochs.enumerated() {
            let slot = slots[i]
            if let entry = values[i] {
                if let k = open(entry, slot: slot) { shared[n] = k }
                continue
            }
            if let mine = held[n] {
                // Redis lost it (restarted empty, expired early): put the fleet's key back, or adopt a new winner.
                if let k = try createOrAdopt(n, slot: slot, candidate: mine, now: now) {
                    shared[n] = k
                    if k === mine { onEvent(.restored(epoch: n, name: mine.nameHex)) }
                }
            } else if create.contains(n) {
                let fresh: TicketKey
                do { fresh = try TicketKey.random() } catch {
                    throw .protocolError(endpoint: "local", message: "random source failed")
                }
                if let k = try createOrAdopt(n, slot: slot, candidate: fresh, now: now) {
                    shared[n] = k
                    if k === fresh {
                        createdTotal.add(1, ordering: .relaxed)
                        onEvent(.created(epoch: n, name: fresh.nameHex))
                    }
                }
            }
        }
        let imported = try read { c throws(RedisError) in try self.readImported(c, now: now) }
        return Snapshot(shared: shared, imported: imported)
    }

    /// `SET slot sealed NX PX ttl` on the primary; on a lost race, the winner's entry (from the primary, which the
    /// replica may not have yet). Returns nil when the winner's entry does not open (counted).
    private func createOrAdopt(
        _ n: Int64,
        slot: String,
        candidate: TicketKey,
        now: Timestamp
    ) throws(RedisError)
        -> TicketKey?
    {
        let sealed: [UInt8]
        do { sealed = try wrapper.seal(candidate, slot: slot, created: now) } catch {
            throw .protocolError(endpoint: "local", message: "sealing failed")
        }
        let ttl = plan.ttlMilliseconds(epoch: n, now: now)
        let r = try primary.command([
            Array("SET".utf8), Array(slot.utf8), sealed, Array("NX".utf8), Array("PX".utf8), Array("\(ttl)".utf8),
        ])
        if case .status = r { return candidate }
        guard case .bulk(let entry) = try primary.command("GET", slot) else { return nil }
        return open(entry, slot: slot)
    }

    private func open(_ entry: [UInt8], slot: String) -> TicketKey? {
        do {
            return try wrapper.open(entry, slot: slot).key
        } catch {
            reject(slot: slot, entry: entry, error)
            return nil
        }
    }

    private func reject(slot: String, entry: [UInt8], _ error: TicketKeyWrapper.OpenError) {
        if poller.firstRejection(slot: slot, entry: entry) { onEvent(.rejected(slot: slot, reason: error)) }
    }

    private func readImported(
        _ c: RedisConnection,
        now: Timestamp
    ) throws(RedisError)
        -> [(key: TicketKey, notAfter: Timestamp)]
    {
        var slots: [String] = []
        var cursor = "0"
        repeat {
            let r = try c.command("SCAN", cursor, "MATCH", plan.importedPrefix + "*", "COUNT", "1000")
            guard case .array(let parts) = r, parts.count == 2, case .bulk(let cur) = parts[0],
                case .array(let names) = parts[1]
            else { throw .protocolError(endpoint: "\(c.endpoint)", message: "SCAN") }
            cursor = String(decoding: cur, as: UTF8.self)
            for case .bulk(let n) in names { slots.append(String(decoding: n, as: UTF8.self)) }
        } while cursor != "0" && slots.count < 256
        guard !slots.isEmpty else { return [] }
        let values = try Self.mget(c, Array(slots.prefix(32)))  // bounded: the ring is small
        var out: [(key: TicketKey, notAfter: Timestamp)] = []
        for (slot, v) in zip(slots, values) {
            guard let v else { continue }
            do {
                let o = try wrapper.open(v, slot: slot)
                if let end = o.notAfter, end > now { out.append((o.key, end)) }
            } catch {
                reject(slot: slot, entry: v, error)
            }
        }
        return out
    }

    /// Runs a read on the replica when configured (falling back to the primary if the replica fails).
    private func read<T>(_ body: (RedisConnection) throws(RedisError) -> T) throws(RedisError) -> T {
        if let replica {
            do {
                let v = try body(replica)
                if replicaUp.exchange(1, ordering: .relaxed) == 0 { onEvent(.replicaUp) }
                return v
            } catch {
                replica.close()
                if replicaUp.exchange(0, ordering: .relaxed) != 0 { onEvent(.replicaDown(error.description)) }
            }
        }
        return try body(primary)
    }

    private static func mget(_ c: RedisConnection, _ slots: [String]) throws(RedisError) -> [[UInt8]?] {
        let r = try c.command([Array("MGET".utf8)] + slots.map { Array($0.utf8) })
        guard case .array(let items) = r, items.count == slots.count else {
            throw .protocolError(endpoint: "\(c.endpoint)", message: "MGET")
        }
        return items.map { if case .bulk(let b) = $0 { return b } else { return nil } }
    }

    // MARK: - the thread

    /// Starts the sync thread feeding `source`. Call once.
    public func start(source: FleetKeySource) {
        let poll = plan.pollNanoseconds
        poller.start(
            poll: poll,
            // A store that stays down is retried at least twice per rotation.
            backoffCap: min(RedisPoller.maxBackoffNanoseconds, max(poll, plan.schedule.rotationNanoseconds / 2)),
            cycle: { [self] in
                let now = Timestamp.wallClockNow()
                do {
                    let snap = try cycle(held: source.sharedKeys(), now: now)
                    let replaced = try source.adopt(shared: snap.shared, imported: snap.imported, now: now)
                    if !replaced.isEmpty { onEvent(.replaced(epochs: replaced)) }
                    return true
                } catch {
                    return false
                }
            },
            finish: { [self] in
                primary.close()
                replica?.close()
            }
        )
    }

    /// Stops the thread and waits for it (at most about one command timeout).
    public func stop() { poller.stop() }
}
