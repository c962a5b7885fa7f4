public import ProxyCore
import Synchronization

/// Ticket keys shared by a fleet through a store (Redis), as seen by one instance: the shared epoch keys it holds,
/// local fallback keys made while the store was unreachable, keys replaced by a different shared key, and imported
/// decrypt-only keys. Builds rings from them (times per ``FleetKeyPlan``) and publishes into a ``TicketKeyStore``.
///
/// Sans-IO: the store's I/O runs elsewhere (ProxyTicketStore's sync thread), which hands results in through
/// ``adopt(shared:imported:now:)``; the control loop calls ``tick(now:)`` once a second. Neither ever waits on I/O
/// here, so a slow store delays nothing but its own results.
///
/// Promises, after every ``tick(now:)``/``adopt(shared:imported:now:)``:
/// - exactly one key encrypts at `now`: the shared key of the current epoch if held; else the previous epoch's
///   key during ``FleetKeyPlan/graceNanoseconds`` past its period; else a local key for the current epoch (made
///   here from the OS CSPRNG);
/// - a shared key of epoch n encrypts during [nR, (n+1)R) (+ grace while n+1 is not held) and decrypts until
///   ``FleetKeyPlan/decryptUntil(epoch:)``; a shared key always wins over a local key of the same epoch, which
///   then only decrypts;
/// - when the store hands a different key for an epoch (store restarted empty, split brain), the store's key wins
///   and the displaced one only decrypts until its window ends, so no ticket already issued stops resuming;
/// - a ring is published only when names or times changed. Thread-safe (one lock; no I/O under it).
public final class FleetKeySource: TicketKeySource {
    public let plan: FleetKeyPlan
    public let store: TicketKeyStore

    /// Where a key in the ring came from (admin API, tests).
    public enum Origin: String, Sendable {
        /// The store's key for its epoch.
        case shared
        /// Made by this instance while the store was unreachable.
        case local
        /// A former shared or local key replaced by the store's key for the same epoch; decrypt-only.
        case replaced
        /// Imported with `edgeproxy keys import`; decrypt-only.
        case imported
    }

    private struct Imported {
        var key: TicketKey
        var notAfter: Timestamp
    }

    private struct State {
        var shared: [Int64: TicketKey] = [:]
        var local: [Int64: TicketKey] = [:]
        var replaced: [TicketKey] = []  // carry their own final times
        var imported: [Imported] = []
        var retiredNames: [UInt64] = []
        var published: [Entry] = []
        var localKeysMade = 0
    }

    private struct Entry: Equatable {
        var high: UInt64
        var low: UInt64
        var from: Timestamp
        var until: Timestamp
        var decryptUntil: Timestamp
    }

    private let state: Mutex<State>

    /// Starts with `initialShared` (the store's answer at start-up, possibly empty) and publishes the first ring
    /// into `store` (or a new store). With no shared key for the current epoch a local key is made.
    /// Throws ``SecretBytes/Failure`` if the random source fails.
    public init(
        plan: FleetKeyPlan,
        now: Timestamp,
        initialShared: [Int64: TicketKey] = [:],
        store: TicketKeyStore? = nil
    ) throws {
        self.plan = plan
        var s = State()
        s.shared = initialShared
        let keys = try Self.build(&s, plan: plan, now: now)
        let enc = keys.first { $0.state(at: now) == .current }!
        s.published = keys.map(Self.entry)
        if let store {
            store.publish(
                TicketKeyRing(generation: store.generation + 1, keys: keys, encryptionKey: enc, retiredNames: [])
            )
            self.store = store
        } else {
            self.store = TicketKeyStore(initial: TicketKeyRing(generation: 1, keys: keys, encryptionKey: enc))
        }
        self.state = Mutex(s)
    }

    /// Re-derives the ring for `now` (retires expired keys, applies grace, makes a local key when the grace is
    /// over) and publishes it if it changed. Returns whether it published.
    @discardableResult
    public func tick(now: Timestamp) throws -> Bool {
        try state.withLock { s in try rebuildAndPublish(&s, now: now) }
    }

    /// Takes the store's answer: `shared` maps epochs to the store's keys (only epochs the store answered for),
    /// `imported` the imported keys with their end (nil: not read this time, keep the previous list). Publishes if
    /// the ring changed. Returns the epochs whose key was replaced by a different one.
    @discardableResult
    public func adopt(
        shared: [Int64: TicketKey],
        imported: [(key: TicketKey, notAfter: Timestamp)]?,
        now: Timestamp
    ) throws -> [Int64] {
        try state.withLock { s in
            var replacedEpochs: [Int64] = []
            for (n, key) in shared {
                if let held = s.shared[n] {
                    if Self.sameName(held, key) { continue }
                    // The store changed its mind (restarted empty and someone else won, split brain): the store wins.
                    s.replaced.append(Self.decryptOnly(held, epoch: n, plan: plan))
                    replacedEpochs.append(n)
                }
                s.shared[n] = key
            }
            if let imported {
                s.imported = imported.map { Imported(key: $0.key, notAfter: $0.notAfter) }
            }
            _ = try rebuildAndPublish(&s, now: now)
            return replacedEpochs
        }
    }

    /// The shared keys held now, by epoch (the sync writes them back if the store lost them).
    public func sharedKeys() -> [Int64: TicketKey] { state.withLock { $0.shared } }

    /// How many local fallback keys this instance has made (metric).
    public var localKeysMade: Int { state.withLock { $0.localKeysMade } }

    /// The origin of every key in the last published ring, by name (hex).
    public func origins() -> [String: Origin] {
        state.withLock { s in
            var out: [String: Origin] = [:]
            for k in s.shared.values { out[k.nameHex] = .shared }
            for k in s.local.values where out[k.nameHex] == nil { out[k.nameHex] = .local }
            for k in s.replaced where out[k.nameHex] == nil { out[k.nameHex] = .replaced }
            for i in s.imported where out[i.key.nameHex] == nil { out[i.key.nameHex] = .imported }
            return out
        }
    }

    // MARK: - ring building

    private func rebuildAndPublish(_ s: inout State, now: Timestamp) throws -> Bool {
        let before = Set(s.published.map { [$0.high, $0.low] })
        let keys = try Self.build(&s, plan: plan, now: now)
        let entries = keys.map(Self.entry)
        guard entries != s.published else { return false }
        let after = Set(entries.map { [$0.high, $0.low] })
        for gone in before.subtracting(after) { s.retiredNames.insert(contentsOf: gone, at: 0) }
        if s.retiredNames.count > 2 * TicketKeySchedule.maxRingSize {
            s.retiredNames.removeLast(s.retiredNames.count - 2 * TicketKeySchedule.maxRingSize)
        }
        s.published = entries
        let enc = keys.first { $0.state(at: now) == .current }!
        store.publish(
            TicketKeyRing(
                generation: store.generation + 1,
                keys: keys,
                encryptionKey: enc,
                retiredNames: s.retiredNames
            )
        )
        return true
    }

    /// The ring for `now`, newest first (shared before local within an epoch), names unique, one key current.
    /// Drops what no longer decrypts; makes a local key when nothing would encrypt.
    private static func build(_ s: inout State, plan: FleetKeyPlan, now: Timestamp) throws -> [TicketKey] {
        let hold = plan.epochsToHold(at: now)
        s.shared = s.shared.filter { $0.key >= hold.lowerBound }
        s.local = s.local.filter { $0.key >= hold.lowerBound }
        s.replaced.removeAll { $0.decryptUntil <= now }
        s.imported.removeAll { $0.notAfter <= now }

        var keys = timedKeys(s, plan: plan)
        if !keys.contains(where: { $0.state(at: now) == .current }) {
            // Nothing encrypts: the store has been unreachable past the grace (or at start). Service first.
            let c = plan.epoch(at: now)
            if let old = s.local[c] {
                // Cannot happen (a held local key for `c` is current); keep it rather than make another.
                s.replaced.append(decryptOnly(old, epoch: c, plan: plan))
            }
            s.local[c] = try TicketKey.random()
            s.localKeysMade += 1
            keys = timedKeys(s, plan: plan)
        }
        return keys
    }

    private static func timedKeys(_ s: State, plan: FleetKeyPlan) -> [TicketKey] {
        var out: [TicketKey] = []
        var names = Set<[UInt64]>()
        func add(_ k: TicketKey) {
            if names.insert([k.nameHigh, k.nameLow]).inserted { out.append(k) }
        }
        let epochs = Set(s.shared.keys).union(s.local.keys).sorted(by: >)
        for n in epochs {
            let successorHeld = s.shared[n + 1] != nil || s.local[n + 1] != nil
            let until = plan.encryptUntil(epoch: n).adding(nanoseconds: successorHeld ? 0 : plan.graceNanoseconds)
            let primary = s.shared[n] ?? s.local[n]!
            add(
                primary.withTimes(
                    encryptFrom: plan.encryptFrom(epoch: n),
                    encryptUntil: until,
                    decryptUntil: max(until, plan.decryptUntil(epoch: n))
                )
            )
            if s.shared[n] != nil, let l = s.local[n] { add(decryptOnly(l, epoch: n, plan: plan)) }
        }
        for k in s.replaced { add(k) }
        for i in s.imported {
            add(i.key.withTimes(encryptFrom: .distantPast, encryptUntil: .distantPast, decryptUntil: i.notAfter))
        }
        return out
    }

    /// `key` as a decrypt-only key of epoch `n` (stale from the epoch start, decrypting until the epoch's end).
    private static func decryptOnly(_ key: TicketKey, epoch n: Int64, plan: FleetKeyPlan) -> TicketKey {
        let from = plan.encryptFrom(epoch: n)
        return key.withTimes(encryptFrom: from, encryptUntil: from, decryptUntil: plan.decryptUntil(epoch: n))
    }

    private static func sameName(_ a: TicketKey, _ b: TicketKey) -> Bool {
        a.nameHigh == b.nameHigh && a.nameLow == b.nameLow
    }

    private static func entry(_ k: TicketKey) -> Entry {
        Entry(
            high: k.nameHigh,
            low: k.nameLow,
            from: k.encryptFrom,
            until: k.encryptUntil,
            decryptUntil: k.decryptUntil
        )
    }
}
