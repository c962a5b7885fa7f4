import Glibc
public import ProxyCore
import Synchronization

/// Generates AES-256-CBC ticket keys from the OS CSPRNG, one per epoch of a ``TicketKeySchedule``, and publishes
/// them into a ``TicketKeyStore``. Keys live in this process only (a fleet needs a shared source).
///
/// Promises, after every ``tick(now:)``/``rotateNow(now:)``:
/// - exactly one key is `current` at `now`, and the `next` key (starting when the current one stops encrypting)
///   already exists, so workers switch keys exactly on the boundary even before they see a new ring;
/// - keys past their `decryptUntil` are removed from the ring, and zeroized ``zeroizeGraceNanoseconds`` later
///   (the grace covers a worker still holding the previous ring at the boundary; lookups already treat them as
///   unknown);
/// - a new ring (generation + 1) is published only when the set of keys or their times changed;
/// - the ring never holds more than ``TicketKeySchedule/maxRingSize`` keys: if repeated ``rotateNow(now:)``
///   pushes it over, the oldest stale keys are dropped early (their tickets then get a full handshake).
///
/// Thread-safe: ``tick(now:)`` and ``rotateNow(now:)`` may be called from any thread (they serialise on a lock).
public final class MemoryKeySource: TicketKeySource {
    /// The rotation schedule.
    public let schedule: TicketKeySchedule
    /// Where rings are published.
    public let store: TicketKeyStore
    /// Delay between a key's removal from the ring (at `decryptUntil`) and the wipe of its bytes.
    public let zeroizeGraceNanoseconds: Int64

    private struct State {
        var keys: [TicketKey]  // newest first
        var retired: [TicketKey]  // removed from the ring, waiting to be zeroized
        var retiredNames: [UInt64] = []  // name words of retired keys, newest first (for expired_key counting)
    }
    private let state: Mutex<State>

    /// Creates the keys needed at `now` and publishes the first ring — into `store` when given (generation
    /// `store.generation + 1`), otherwise into a new store (generation 1).
    /// Throws ``SecretBytes/Failure`` if memory or the random source fails.
    public init(
        schedule: TicketKeySchedule = .default,
        now: Timestamp,
        store: TicketKeyStore? = nil,
        zeroizeGraceSeconds: Int64 = 60
    ) throws {
        precondition(zeroizeGraceSeconds >= 0)
        self.schedule = schedule
        self.zeroizeGraceNanoseconds = zeroizeGraceSeconds * 1_000_000_000
        var keys: [TicketKey] = []
        var retired: [TicketKey] = []
        _ = try Self.reconcile(&keys, &retired, schedule: schedule, now: now)
        let encrypting = keys.first { $0.state(at: now) == .current }!
        if let store {
            store.publish(TicketKeyRing(generation: store.generation + 1, keys: keys, encryptionKey: encrypting))
            self.store = store
        } else {
            self.store = TicketKeyStore(initial: TicketKeyRing(generation: 1, keys: keys, encryptionKey: encrypting))
        }
        self.state = Mutex(State(keys: keys, retired: retired))
    }

    /// Creates the next key when due, retires expired keys, wipes retired keys past the grace, and publishes a
    /// new ring if the ring changed. Returns whether it published. Throws only if the random source fails
    /// (the previous ring stays in force).
    @discardableResult
    public func tick(now: Timestamp) throws -> Bool {
        try state.withLock { s in
            // Work on copies: if the random source fails half-way, nothing is committed.
            var keys = s.keys
            var retired = s.retired
            let changed = try Self.reconcile(&keys, &retired, schedule: schedule, now: now)
            zeroizeRetired(&retired, now: now)
            s.retired = retired
            guard changed else { return false }
            Self.rememberNames(of: s.keys, notIn: keys, into: &s.retiredNames)
            s.keys = keys
            publish(keys, retiredNames: s.retiredNames, now: now)
            return true
        }
    }

    /// Starts the next period now (admin `POST /keys/rotate`): the current key becomes `stale` (it stops
    /// encrypting at `now` and decrypts until `now + lifetime`), the `next` key becomes `current` from `now` until
    /// its scheduled end, and a new `next` key is made. Always publishes a new ring.
    /// Returns the key that encrypts from now on.
    @discardableResult
    public func rotateNow(now: Timestamp) throws -> TicketKey {
        try state.withLock { s in
            var keys = s.keys
            var retired = s.retired
            _ = try Self.reconcile(&keys, &retired, schedule: schedule, now: now)
            let currentIndex = keys.firstIndex { $0.state(at: now) == .current }!
            let current = keys[currentIndex]
            let nextIndex = keys.firstIndex { $0.encryptFrom == current.encryptUntil }!
            let next = keys[nextIndex]
            keys[currentIndex] = current.withTimes(
                encryptFrom: current.encryptFrom,
                encryptUntil: now,
                decryptUntil: now.adding(nanoseconds: schedule.lifetimeNanoseconds)
            )
            let promoted = next.withTimes(
                encryptFrom: now,
                encryptUntil: next.encryptUntil,
                decryptUntil: next.decryptUntil
            )
            keys[nextIndex] = promoted
            _ = try Self.reconcile(&keys, &retired, schedule: schedule, now: now)
            zeroizeRetired(&retired, now: now)
            s.retired = retired
            Self.rememberNames(of: s.keys, notIn: keys, into: &s.retiredNames)
            s.keys = keys
            publish(keys, retiredNames: s.retiredNames, now: now)
            return promoted
        }
    }

    private func publish(_ keys: [TicketKey], retiredNames: [UInt64], now: Timestamp) {
        let encrypting = keys.first { $0.state(at: now) == .current }!
        store.publish(
            TicketKeyRing(
                generation: store.generation + 1,
                keys: keys,
                encryptionKey: encrypting,
                retiredNames: retiredNames
            )
        )
    }

    /// Prepends the names of keys that left the ring (bounded), so lookups can report `expired` for them.
    private static func rememberNames(of old: [TicketKey], notIn new: [TicketKey], into names: inout [UInt64]) {
        for k in old where !new.contains(where: { $0.nameHigh == k.nameHigh && $0.nameLow == k.nameLow }) {
            names.insert(contentsOf: [k.nameHigh, k.nameLow], at: 0)
        }
        if names.count > 2 * TicketKeySchedule.maxRingSize {
            names.removeLast(names.count - 2 * TicketKeySchedule.maxRingSize)
        }
    }

    private func zeroizeRetired(_ retired: inout [TicketKey], now: Timestamp) {
        retired.removeAll { key in
            guard key.decryptUntil.adding(nanoseconds: zeroizeGraceNanoseconds) <= now else { return false }
            key.zeroize()
            return true
        }
    }

    /// Makes `keys` satisfy the promises at `now`. Returns whether anything changed.
    private static func reconcile(
        _ keys: inout [TicketKey],
        _ retired: inout [TicketKey],
        schedule: TicketKeySchedule,
        now: Timestamp
    ) throws -> Bool {
        var changed = false
        // 1. Retire keys that no longer decrypt.
        let expired = keys.filter { $0.state(at: now) == .expired }
        if !expired.isEmpty {
            keys.removeAll { $0.state(at: now) == .expired }
            retired.append(contentsOf: expired)
            changed = true
        }
        // 2. A current key: normally made as the previous tick's `next`; after a long pause or at start, the key
        //    of the epoch containing `now`.
        var current = keys.first { $0.state(at: now) == .current }
        if current == nil {
            let e = schedule.epoch(at: now)
            let key = try makeKey(
                encryptFrom: schedule.encryptFrom(epoch: e),
                encryptUntil: schedule.encryptUntil(epoch: e),
                decryptUntil: schedule.decryptUntil(epoch: e)
            )
            keys.append(key)
            current = key
            changed = true
        }
        // 3. The next key, starting exactly when the current one stops encrypting.
        let boundary = current!.encryptUntil
        if !keys.contains(where: { $0.encryptFrom == boundary }) {
            let end = boundary.adding(nanoseconds: schedule.rotationNanoseconds)
            keys.append(
                try makeKey(
                    encryptFrom: boundary,
                    encryptUntil: end,
                    decryptUntil: end.adding(nanoseconds: schedule.lifetimeNanoseconds)
                )
            )
            changed = true
        }
        // 4. Newest first, and bounded.
        keys.sort {
            $0.encryptFrom > $1.encryptFrom || ($0.encryptFrom == $1.encryptFrom && $0.encryptUntil > $1.encryptUntil)
        }
        while keys.count > TicketKeySchedule.maxRingSize,
            let oldestStale = keys.lastIndex(where: { $0.state(at: now) == .stale })
        {
            retired.append(keys.remove(at: oldestStale))
            changed = true
        }
        return changed
    }

    private static func makeKey(
        encryptFrom: Timestamp,
        encryptUntil: Timestamp,
        decryptUntil: Timestamp
    ) throws
        -> TicketKey
    {
        try TicketKey.random(encryptFrom: encryptFrom, encryptUntil: encryptUntil, decryptUntil: decryptUntil)
    }
}
