public import ProxyCore

/// An immutable snapshot of the ticket keys, shared by all workers and read by the OpenSSL ticket callback.
///
/// Promises: never mutated after init, so any thread may read it without a lock; ``lookup(nameHigh:nameLow:at:)``,
/// ``lookup(name:at:)`` and ``encryptionKey(at:)`` neither allocate nor lock (a linear scan of at most
/// ``TicketKeySchedule/maxRingSize``-ish keys comparing two words each). Key names are unique within a ring.
public final class TicketKeyRing: Sendable {
    /// Strictly increasing per ``TicketKeyStore``; workers compare it to notice a new ring.
    public let generation: UInt64
    /// The keys in source order: ``MemoryKeySource`` lists newest first (next, current, stale...), ``FileKeySource``
    /// lists files in configuration order (first = current).
    public let keys: [TicketKey]
    /// The key that was current when the ring was built. Prefer ``encryptionKey(at:)`` in the callback, which
    /// follows an epoch boundary passing between two rings.
    public let encryptionKey: TicketKey

    private let storage: ContiguousArray<TicketKey>
    /// Names (two words each, flattened) of keys retired from the ring after their decrypt window, newest first,
    /// bounded. Names only — no key material — so the callback can tell `expired_key` from `unknown_key`.
    private let retiredNames: ContiguousArray<UInt64>

    /// Builds a ring. Preconditions: `keys` is not empty, names are unique, `encryptionKey` is one of `keys`
    /// (sources validate untrusted input before building a ring). `retiredNames` are name words of keys that
    /// have left the ring (pairs: high, low).
    public init(generation: UInt64, keys: [TicketKey], encryptionKey: TicketKey, retiredNames: [UInt64] = []) {
        precondition(!keys.isEmpty, "a ticket key ring needs at least one key")
        precondition(keys.contains { $0 === encryptionKey }, "the encryption key must be in the ring")
        var seen = Set<[UInt64]>()
        for k in keys { precondition(seen.insert([k.nameHigh, k.nameLow]).inserted, "duplicate ticket key name") }
        self.generation = generation
        self.keys = keys
        self.encryptionKey = encryptionKey
        self.storage = ContiguousArray(keys)
        self.retiredNames = ContiguousArray(retiredNames.prefix(2 * TicketKeySchedule.maxRingSize))
    }

    /// True when the name belongs to a key whose decrypt window has passed (still listed in the ring, or recently
    /// retired from it). Only for classifying a failed lookup; allocation-free.
    public func isExpired(nameHigh: UInt64, nameLow: UInt64, at now: Timestamp) -> Bool {
        for key in storage where key.nameHigh == nameHigh && key.nameLow == nameLow {
            return key.state(at: now) == .expired
        }
        var i = 0
        while i + 1 < retiredNames.count {
            if retiredNames[i] == nameHigh && retiredNames[i + 1] == nameLow { return true }
            i += 2
        }
        return false
    }

    /// The key to seal a new ticket with at `now`: the first key whose state at `now` is `current`, else
    /// ``encryptionKey`` (e.g. the source has not ticked for a while). Allocation-free and lock-free.
    public func encryptionKey(at now: Timestamp) -> TicketKey {
        for key in storage where key.state(at: now) == .current { return key }
        return encryptionKey
    }

    /// Finds the key named by the words of ``TicketKey/nameWords(_:)`` and its state at `now`.
    /// Returns nil for an unknown name and for an `expired` key (a ticket under it must not be opened).
    /// Allocation-free and lock-free: call it from the ticket callback.
    public func lookup(nameHigh: UInt64, nameLow: UInt64, at now: Timestamp) -> (key: TicketKey, state: KeyState)? {
        for key in storage where key.nameHigh == nameHigh && key.nameLow == nameLow {
            let state = key.state(at: now)
            return state == .expired ? nil : (key, state)
        }
        return nil
    }

    /// Same as ``lookup(nameHigh:nameLow:at:)`` for the callback's 16-byte `key_name`. Precondition: 16 bytes.
    public func lookup(name: UnsafeRawBufferPointer, at now: Timestamp) -> (key: TicketKey, state: KeyState)? {
        precondition(name.count == 16, "a ticket key name is 16 bytes")
        let (high, low) = TicketKey.nameWords(name)
        return lookup(nameHigh: high, nameLow: low, at: now)
    }

    /// Public facts about every key at `now` for the admin API and logs: name, cipher, state, times.
    /// Never contains key bytes. Allocates; not for the handshake path.
    public func info(at now: Timestamp) -> [KeyInfo] {
        keys.map {
            KeyInfo(
                nameHex: $0.nameHex,
                cipher: $0.cipher,
                state: $0.state(at: now),
                encryptFrom: $0.encryptFrom,
                encryptUntil: $0.encryptUntil,
                decryptUntil: $0.decryptUntil,
                isEncryptionKey: $0 === encryptionKey
            )
        }
    }
}

/// What the admin API may show about a key. Contains no secret by construction (only public fields).
public struct KeyInfo: Sendable, Hashable, CustomStringConvertible {
    /// The 16-byte key name as 32 lowercase hex digits.
    public let nameHex: String
    public let cipher: TicketCipher
    /// State at the time passed to ``TicketKeyRing/info(at:)``.
    public let state: KeyState
    public let encryptFrom: Timestamp
    public let encryptUntil: Timestamp
    public let decryptUntil: Timestamp
    /// Whether this is the ring's designated ``TicketKeyRing/encryptionKey``.
    public let isEncryptionKey: Bool

    public var description: String {
        "\(nameHex) \(cipher) \(state)\(isEncryptionKey ? " (encrypting)" : "") encrypt [\(encryptFrom), "
            + "\(encryptUntil)) decrypt until \(decryptUntil)"
    }
}
