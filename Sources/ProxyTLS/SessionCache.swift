// SessionCache: the process-wide store behind OpenSSL's external session cache callbacks (session-ID resumption,
// RFC 5246 §7.4.1.2). Hand-written: OpenSSL's internal cache is one hash table under the SSL_CTX's global lock
// (the contention TLS-NOTES warns about) and cannot be shared between the contexts a reload replaces; no library
// on the mirror offers a bounded, sharded byte cache that wipes what it evicts.
import Glibc
import Synchronization

/// A bounded, sharded LRU + TTL cache of serialized TLS sessions (`i2d_SSL_SESSION` bytes) keyed by session ID.
///
/// Promises:
/// - Memory is bounded up front: each shard owns one anonymous mapping of `capacity / shards` slots of
///   ``slotSize`` bytes (`MADV_DONTDUMP`: no master secret in a core dump), plus a fixed-size index. A session
///   whose encoding is larger than a slot is not stored (counted as `tooLarge`).
/// - Session bytes never live in Swift arrays: they are copied into a slot and read in place by ``lookup(id:now:_:)``.
///   A slot is wiped with `explicit_bzero` when its entry is evicted (LRU), expires, is removed or replaced, and
///   every slot is wiped when the cache is released.
/// - Threads contend only when they touch the same shard at the same moment (the shard is chosen by the first bytes
///   of the session ID, which the server generates at random). Each operation holds one shard lock for a copy.
/// - Time is passed in (`now`, monotonic nanoseconds); the cache never reads a clock, so tests drive it.
public final class SessionCache: Sendable {
    /// Bytes of one slot: the largest session encoding kept. A TLS 1.2 server session (no client certificate) encodes
    /// to about 140 bytes plus the SNI host name and the ALPN protocol, so 512 holds any name DNS allows.
    public static let slotSize = 512
    /// Longest session ID (SSL_MAX_SSL_SESSION_ID_LENGTH).
    public static let maxIDLength = 32

    /// Entries at most.
    public let capacity: Int
    /// How long an entry is served after it was stored, nanoseconds.
    public let ttlNanoseconds: UInt64
    private let shards: [Shard]
    /// The fleet tier behind this cache (`cache = "redis"`), or nil for a process-local cache.
    public let fleet: FleetSessions?

    /// The outcome of ``store(id:session:now:)``.
    public enum StoreResult: Equatable, Sendable {
        case stored
        /// The encoding is larger than ``slotSize``: not cached.
        case tooLarge
        /// Empty or longer than ``maxIDLength``: not cached.
        case invalidID
    }

    /// Counters summed over all shards (read for metrics; each shard is locked briefly).
    public struct Statistics: Equatable, Sendable {
        public var entries = 0
        public var hits = 0
        public var misses = 0
        public var stores = 0
        /// Entries dropped to make room (least recently used first).
        public var evictions = 0
        /// Entries dropped because their time was up (found on lookup or by ``sweep(now:)``).
        public var expirations = 0
        public var tooLarge = 0

        public init() {}
    }

    /// - Parameters:
    ///   - capacity: entries at most (≥ 1).
    ///   - ttlNanoseconds: lifetime of an entry from the moment it is stored.
    ///   - shards: lock domains; by default one per 256 entries, at most 64.
    ///   - fleet: the shared tier consulted on a miss and fed on every store.
    public init(capacity: Int, ttlNanoseconds: UInt64, shards: Int? = nil, fleet: FleetSessions? = nil) {
        self.fleet = fleet
        precondition(capacity >= 1, "a session cache needs room for one entry")
        let n = max(1, min(shards ?? min(64, max(1, capacity / 256)), capacity))
        // Exactly `capacity` slots: the first `capacity % n` shards hold one more.
        self.capacity = capacity
        self.ttlNanoseconds = ttlNanoseconds
        self.shards = (0..<n).map { i in Shard(slots: capacity / n + (i < capacity % n ? 1 : 0)) }
    }

    /// Bytes reserved for session storage (the bound stated in the README): capacity × ``slotSize``.
    public var reservedBytes: Int { capacity * Self.slotSize }

    /// Stores (or replaces) the session encoded in `session` under `id`; evicts the least recently used entry of
    /// the shard when it is full. Entries expire `ttlNanoseconds` after `now`.
    @discardableResult
    public func store(id: UnsafeRawBufferPointer, session: UnsafeRawBufferPointer, now: UInt64) -> StoreResult {
        guard let key = SessionKey(id) else { return .invalidID }
        let shard = shards[shardIndex(key)]
        guard session.count <= Self.slotSize, session.count > 0 else {
            shard.state.withLock { $0.tooLarge += 1 }
            return .tooLarge
        }
        let expiry = now &+ ttlNanoseconds
        shard.state.withLock { s in
            s.insert(key, bytes: session, expiresAt: expiry, base: shard.base, now: now)
        }
        return .stored
    }

    /// Counts a session whose encoding was too large to store (the caller measured it before copying).
    public func noteTooLarge() {
        shards[0].state.withLock { $0.tooLarge += 1 }
    }

    /// Calls `body` with the stored encoding for `id` (in place, under the shard lock: `body` must be short and must
    /// not keep the pointer) and marks the entry most recently used. An expired entry is wiped and reported as a miss.
    public func lookup<R>(id: UnsafeRawBufferPointer, now: UInt64, _ body: (UnsafeRawBufferPointer) -> R) -> R? {
        // No entry has stamp 0, so this always decodes a live entry.
        switch lookup(id: id, now: now, unlessSerial: 0, body) {
        case .found(let r, _, _): return r
        case .miss, .unchanged: return nil
        }
    }

    /// What ``lookup(id:now:unlessSerial:_:)`` found.
    public enum Lookup<R> {
        /// No live entry for the ID.
        case miss
        /// The entry is the one stamped `serial` the caller already holds decoded: `body` was not called.
        case unchanged
        /// `body`'s result for the entry, its stamp (new on every store) and when it expires.
        case found(R, serial: UInt64, expiresAt: UInt64)
    }

    /// Like ``lookup(id:now:_:)``, for a caller that keeps decoded sessions (`DecodedSessions`): when the live entry
    /// is still the one stamped `known`, answers `.unchanged` without calling `body`. Counted as a hit either way,
    /// so the entry's expiry, eviction, removal and replacement stay this cache's decision.
    public func lookup<R>(
        id: UnsafeRawBufferPointer,
        now: UInt64,
        unlessSerial known: UInt64,
        _ body: (UnsafeRawBufferPointer) -> R
    ) -> Lookup<R> {
        guard let key = SessionKey(id) else { return .miss }
        let shard = shards[shardIndex(key)]
        return shard.state.withLock { s -> Lookup<R> in
            guard let slot = s.find(key, now: now, base: shard.base) else {
                s.misses += 1
                return .miss
            }
            s.hits += 1
            let serial = s.serial[slot]
            if serial == known { return .unchanged }
            let bytes = UnsafeRawBufferPointer(start: shard.base + slot * Self.slotSize, count: Int(s.length[slot]))
            return .found(body(bytes), serial: serial, expiresAt: s.expiry[slot])
        }
    }

    /// Removes and wipes the entry for `id`, if any (OpenSSL's remove callback: a session that ended in a fatal
    /// alert must not be resumed).
    public func remove(id: UnsafeRawBufferPointer) {
        guard let key = SessionKey(id) else { return }
        let shard = shards[shardIndex(key)]
        shard.state.withLock { s in
            if let slot = s.index[key] { s.release(Int(slot), base: shard.base) }
        }
    }

    /// Wipes every expired entry; returns how many. The server calls it once a second so that master secrets do not
    /// outlive their TTL in memory when no traffic touches them.
    @discardableResult
    public func sweep(now: UInt64) -> Int {
        var total = 0
        for shard in shards {
            total += shard.state.withLock { s in s.sweep(now: now, base: shard.base) }
        }
        return total
    }

    /// Counters and the current number of entries.
    public var statistics: Statistics {
        var out = Statistics()
        for shard in shards {
            shard.state.withLock { s in
                out.entries += s.index.count
                out.hits += s.hits
                out.misses += s.misses
                out.stores += s.stores
                out.evictions += s.evictions
                out.expirations += s.expirations
                out.tooLarge += s.tooLarge
            }
        }
        return out
    }

    @inline(__always)
    private func shardIndex(_ key: SessionKey) -> Int {
        Int(truncatingIfNeeded: (key.w0 ^ (key.w0 >> 29)) % UInt64(shards.count))
    }

    /// Test hook: the raw bytes of every slot of every shard, to prove that evicted sessions were wiped.
    func _copyOfStorageForTesting() -> [UInt8] {
        var out: [UInt8] = []
        for shard in shards {
            shard.state.withLock { _ in
                out += UnsafeRawBufferPointer(start: shard.base, count: shard.mappedLength)
            }
        }
        return out
    }
}

/// A session ID as four words and a length: hashing and comparing it allocates nothing.
struct SessionKey: Hashable {
    var w0: UInt64 = 0
    var w1: UInt64 = 0
    var w2: UInt64 = 0
    var w3: UInt64 = 0
    var length: UInt8 = 0

    /// No ID (an empty slot of `DecodedSessions`): equal to no key made from bytes.
    init() {}

    init?(_ id: UnsafeRawBufferPointer) {
        guard !id.isEmpty, id.count <= SessionCache.maxIDLength else { return nil }
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &words) { $0.copyMemory(from: id) }
        (w0, w1, w2, w3) = words
        length = UInt8(id.count)
    }
}

/// One lock domain: its slab of slots and the index over it.
private final class Shard: Sendable {
    // SAFETY: `base` is a private mapping owned by this shard, unmapped only in deinit; its bytes are read and written
    // only inside `state.withLock`, so the lock orders every access.
    nonisolated(unsafe) let base: UnsafeMutableRawPointer
    let mappedLength: Int
    let state: Mutex<ShardState>

    init(slots: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let length = (slots * SessionCache.slotSize + page - 1) / page * page
        let p = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        // Sized from the configuration at start or reload: failing to map it is not recoverable here.
        precondition(p != nil && p != MAP_FAILED, "session cache: mmap of \(length) bytes failed (errno \(errno))")
        // Not mlock'ed (unlike ticket keys): the cache is megabytes, beyond the default RLIMIT_MEMLOCK; it is kept out
        // of core dumps and wiped entry by entry instead.
        _ = madvise(p, length, MADV_DONTDUMP)
        base = p!
        mappedLength = length
        state = Mutex(ShardState(slots: slots))
    }

    deinit {
        explicit_bzero(base, mappedLength)
        _ = munmap(base, mappedLength)
    }
}

/// The index of one shard: key → slot, an intrusive LRU list over slots (head = most recently used), expiry times,
/// a free list, and counters. Arrays are sized once; only the dictionary's buckets are allocated, reserved up front.
private struct ShardState: ~Copyable {
    var index: [SessionKey: Int32]
    var keys: [SessionKey?]
    var length: [UInt16]
    var expiry: [UInt64]
    /// A stamp per entry, new on every insert (never 0): tells a holder of a decoded copy whether it is current.
    var serial: [UInt64]
    var nextSerial: UInt64 = 1
    var prev: [Int32]
    var next: [Int32]
    var head: Int32 = -1
    var tail: Int32 = -1
    var free: Int32
    var hits = 0
    var misses = 0
    var stores = 0
    var evictions = 0
    var expirations = 0
    var tooLarge = 0

    init(slots: Int) {
        index = [:]
        index.reserveCapacity(slots)
        keys = Array(repeating: nil, count: slots)
        length = Array(repeating: 0, count: slots)
        expiry = Array(repeating: 0, count: slots)
        serial = Array(repeating: 0, count: slots)
        prev = Array(repeating: -1, count: slots)
        // The free list threads through `next`.
        next = (0..<slots).map { $0 + 1 < slots ? Int32($0 + 1) : -1 }
        free = 0
    }

    mutating func insert(
        _ key: SessionKey,
        bytes: UnsafeRawBufferPointer,
        expiresAt: UInt64,
        base: UnsafeMutableRawPointer,
        now: UInt64
    ) {
        if let old = index[key] { release(Int(old), base: base) }
        if free < 0 {
            // Full: an expired entry at the cold end goes first, else the least recently used one.
            let victim = Int(tail)
            if expiry[victim] <= now { expirations += 1 } else { evictions += 1 }
            release(victim, base: base)
        }
        let slot = Int(free)
        free = next[slot]
        let dst = base + slot * SessionCache.slotSize
        dst.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        keys[slot] = key
        length[slot] = UInt16(bytes.count)
        expiry[slot] = expiresAt
        serial[slot] = nextSerial
        nextSerial &+= 1
        index[key] = Int32(slot)
        linkAtHead(slot)
        stores += 1
    }

    /// The live slot for `key` (moved to the head), or nil; an expired entry is released on the way.
    mutating func find(_ key: SessionKey, now: UInt64, base: UnsafeMutableRawPointer) -> Int? {
        guard let s = index[key] else { return nil }
        let slot = Int(s)
        if expiry[slot] <= now {
            expirations += 1
            release(slot, base: base)
            return nil
        }
        unlink(slot)
        linkAtHead(slot)
        return slot
    }

    mutating func sweep(now: UInt64, base: UnsafeMutableRawPointer) -> Int {
        var n = 0
        var i = head
        while i >= 0 {
            let slot = Int(i)
            i = next[slot]
            if expiry[slot] <= now {
                release(slot, base: base)
                n += 1
            }
        }
        expirations += n
        return n
    }

    /// Unindexes `slot`, wipes its bytes and puts it on the free list.
    mutating func release(_ slot: Int, base: UnsafeMutableRawPointer) {
        explicit_bzero(base + slot * SessionCache.slotSize, Int(length[slot]))
        if let k = keys[slot] { index[k] = nil }
        keys[slot] = nil
        length[slot] = 0
        serial[slot] = 0
        unlink(slot)
        next[slot] = free
        free = Int32(slot)
    }

    private mutating func linkAtHead(_ slot: Int) {
        prev[slot] = -1
        next[slot] = head
        if head >= 0 { prev[Int(head)] = Int32(slot) }
        head = Int32(slot)
        if tail < 0 { tail = Int32(slot) }
    }

    private mutating func unlink(_ slot: Int) {
        let p = prev[slot]
        let n = next[slot]
        if p >= 0 { next[Int(p)] = n } else { head = n }
        if n >= 0 { prev[Int(n)] = p } else { tail = p }
        prev[slot] = -1
        next[slot] = -1
    }
}
