internal import COpenSSL

/// One worker's decoded sessions, in front of the process-wide `SessionCache` (session-ID resumption).
///
/// Decoding a cached session (`d2i_SSL_SESSION`) cost ~24,700 instructions per resumption, 6 % of a whole
/// session-ID resumption (nginx and HAProxy pay it too: both keep encoded sessions in shared memory). OpenSSL's
/// external cache API lets the application keep the `SSL_SESSION` it returns (`*copy = 1`), as OpenSSL's own
/// internal cache does; this table keeps the ones this worker decoded, each with the stamp of the cache entry it came
/// from. Every lookup still asks the shared cache (one shard lock, no decoding when the stamp matches), so expiry,
/// eviction, removal (OpenSSL's remove callback) and replacement stay the shared cache's decisions: a copy is used
/// only while its entry is the live one.
///
/// Direct-mapped by the session ID (random bytes chosen by the server), ``slots`` entries; a colliding ID replaces
/// the older copy. Only the worker's loop thread touches it, so there is no lock, and no session object is shared
/// between threads. Secrets: a copy holds a master secret in OpenSSL's heap, as every live connection's session
/// does; it is freed (OpenSSL cleanses the master key) when replaced, when found stale, when its entry's time is up
/// (``sweep(now:)``, which the worker runs every second while the table holds any), and with the worker.
///
/// Hand-written: a fixed array of slots; no library on the mirror holds OpenSSL objects.
public final class DecodedSessions {
    /// Entries per worker: at most this many `SSL_SESSION`s (~1 KB each with their strings) are kept.
    public static let slots = 512
    private static let slotShift: UInt64 = 64 - 9  // log2(slots)

    private struct Entry {
        var key = SessionKey()
        var serial: UInt64 = 0
        var expiresAt: UInt64 = 0
        var session: OpaquePointer?
    }

    private let entries: UnsafeMutablePointer<Entry>
    /// The cache the copies came from: a reload that brings a new cache empties the table.
    private var source: SessionCache?
    /// Entries holding a session.
    public private(set) var count = 0

    init() {
        entries = .allocate(capacity: Self.slots)
        entries.initialize(repeating: Entry(), count: Self.slots)
    }

    deinit {
        removeAll()
        entries.deinitialize(count: Self.slots)
        entries.deallocate()
    }

    /// The session for `id` from `cache`, decoding it only when this table holds no current copy: a session this
    /// table keeps (the caller hands it to OpenSSL with `*copy = 1`), or nil when `cache` has no live entry (or
    /// it does not decode).
    func fetch(id: UnsafeRawBufferPointer, from cache: SessionCache, now: UInt64) -> OpaquePointer? {
        guard let key = SessionKey(id) else { return nil }
        if source !== cache {
            removeAll()
            source = cache
        }
        let e = entries + slot(for: key)
        let known = e.pointee.session != nil && e.pointee.key == key ? e.pointee.serial : 0
        let result = cache.lookup(id: id, now: now, unlessSerial: known) { bytes -> OpaquePointer? in
            var p: UnsafePointer<UInt8>? = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self)
            return d2i_SSL_SESSION(nil, &p, bytes.count)
        }
        switch result {
        case .unchanged:
            return e.pointee.session
        case .found(let decoded, let serial, let expiresAt):
            clear(e)
            guard let decoded else { return nil }
            e.pointee = Entry(key: key, serial: serial, expiresAt: expiresAt, session: decoded)
            count += 1
            return decoded
        case .miss:
            if e.pointee.key == key { clear(e) }
            return nil
        }
    }

    /// Frees every copy whose cache entry's time is up; returns how many.
    @discardableResult
    public func sweep(now: UInt64) -> Int {
        guard count > 0 else { return 0 }
        var n = 0
        for i in 0..<Self.slots where entries[i].session != nil && entries[i].expiresAt <= now {
            clear(entries + i)
            n += 1
        }
        return n
    }

    /// Frees every copy.
    public func removeAll() {
        guard count > 0 else { return }
        for i in 0..<Self.slots { clear(entries + i) }
    }

    @inline(__always)
    private func slot(for key: SessionKey) -> Int {
        // Fibonacci hashing of two words: the top bits of the product depend on all of them.
        Int(truncatingIfNeeded: ((key.w0 ^ key.w1 ^ UInt64(key.length)) &* 0x9E37_79B9_7F4A_7C15) >> Self.slotShift)
    }

    private func clear(_ e: UnsafeMutablePointer<Entry>) {
        if let s = e.pointee.session {
            SSL_SESSION_free(s)
            count -= 1
        }
        e.pointee = Entry()
    }
}
