// SecretBytes: key material that lives outside Swift's heap, is locked out of swap where the system allows,
// is excluded from core dumps, and is wiped with a write the optimiser may not drop.
import Glibc
import Synchronization

/// A fixed-size buffer of secret bytes (ticket keys, HMAC keys).
///
/// Promises:
/// - The bytes live in their own anonymous `mmap` mapping, never in a Swift array or string, so no copy is left
///   behind by copy-on-write or reallocation. The mapping is `madvise(MADV_DONTDUMP)`ed and `mlock`ed where the
///   system allows; a failed `mlock` (e.g. `RLIMIT_MEMLOCK`) is tolerated and reported by ``isMemoryLocked`` and
///   ``lockFailureCount``.
/// - ``zeroize()`` and `deinit` overwrite every byte with `explicit_bzero`, which the compiler must not elide.
/// - `description`, `debugDescription` and `customMirror` never reveal the bytes:
///   they read `SecretBytes(32 bytes, redacted)`.
/// - The only access to the bytes is ``withUnsafeBytes(_:)``; the pointer must not escape the closure.
///
/// The bytes are written only by the initialisers and by ``zeroize()``. Reading concurrently from several threads
/// is safe; calling ``zeroize()`` while another thread may read is the caller's bug (the reader would then see a
/// mix of key and zero bytes, never freed memory).
public final class SecretBytes: @unchecked Sendable {
    // SAFETY (@unchecked Sendable): `base` is a private mapping owned by this object and unmapped only in deinit;
    // after init the bytes change only in zeroize(), whose contract forbids concurrent readers.

    /// Number of secret bytes.
    public let count: Int
    /// Whether `mlock` succeeded for this buffer (false: the bytes may be swapped out).
    public let isMemoryLocked: Bool

    private let base: UnsafeMutableRawPointer
    private let mappedLength: Int
    private let zeroized = Atomic<Bool>(false)

    private static let lockFailures = Atomic<Int>(0)

    /// How many `SecretBytes` in this process could not be `mlock`ed (for a metric or a startup warning).
    public static var lockFailureCount: Int { lockFailures.load(ordering: .relaxed) }

    /// Errors from creating a secret buffer.
    public enum Failure: Error, Equatable, CustomStringConvertible {
        /// `mmap` failed (errno).
        case allocationFailed(errno: Int32)
        /// The OS random source (`getentropy`, backed by `getrandom(2)`) failed (errno).
        case randomSourceFailed(errno: Int32)

        public var description: String {
            switch self {
            case .allocationFailed(let e): return "SecretBytes: mmap failed (errno \(e))"
            case .randomSourceFailed(let e): return "SecretBytes: getrandom failed (errno \(e))"
            }
        }
    }

    /// Allocates `count` zero bytes in a fresh mapping (private: every public initialiser fills them).
    private init(uninitializedCount count: Int) throws(Failure) {
        precondition(count > 0, "SecretBytes needs at least one byte")
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let length = (count + page - 1) / page * page
        guard let p = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
            p != MAP_FAILED
        else {
            throw .allocationFailed(errno: errno)
        }
        // Best effort: a core dump should not carry keys; failure changes nothing else.
        _ = madvise(p, length, MADV_DONTDUMP)
        let locked = mlock(p, length) == 0
        if !locked { Self.lockFailures.add(1, ordering: .relaxed) }
        self.base = p
        self.mappedLength = length
        self.count = count
        self.isMemoryLocked = locked
    }

    /// Fills `count` bytes from the OS CSPRNG (`getentropy`, i.e. `getrandom(2)` without `GRND_NONBLOCK`).
    ///
    /// Throws ``Failure`` when the mapping or the random source fails; no partial key is ever returned.
    public convenience init(randomCount count: Int) throws(Failure) {
        try self.init(uninitializedCount: count)
        var offset = 0
        while offset < count {
            // getentropy serves at most 256 bytes per call.
            let chunk = min(256, count - offset)
            if getentropy(base + offset, chunk) != 0 {
                let e = errno
                zeroize()
                throw .randomSourceFailed(errno: e)
            }
            offset += chunk
        }
    }

    /// Copies `source` into a new secret buffer. The caller still owns `source` and must wipe it afterwards
    /// (``SecretBytes/secureZero(_:)``); prefer ``init(movingFrom:)`` when the source is writable.
    public convenience init(copying source: UnsafeRawBufferPointer) throws(Failure) {
        try self.init(uninitializedCount: source.count)
        if let from = source.baseAddress { base.copyMemory(from: from, byteCount: source.count) }
    }

    /// Copies `source` into a new secret buffer, then wipes `source` with ``secureZero(_:)``.
    public convenience init(movingFrom source: UnsafeMutableRawBufferPointer) throws(Failure) {
        try self.init(copying: UnsafeRawBufferPointer(source))
        Self.secureZero(source)
    }

    deinit {
        explicit_bzero(base, mappedLength)
        if isMemoryLocked { _ = munlock(base, mappedLength) }
        _ = munmap(base, mappedLength)
    }

    /// Calls `body` with the secret bytes. The pointer is valid only inside `body` and must not be stored,
    /// copied into Swift arrays or strings, or logged. After ``zeroize()`` the bytes read as zeros.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// Overwrites the bytes with zeros now (the key is retired before its last reference goes away).
    /// Idempotent. The caller must ensure no other thread is reading the bytes at the same time.
    public func zeroize() {
        explicit_bzero(base, mappedLength)
        zeroized.store(true, ordering: .releasing)
    }

    /// Whether ``zeroize()`` has been called.
    public var isZeroized: Bool { zeroized.load(ordering: .acquiring) }

    /// Overwrites `buffer` with zeros in a way the optimiser may not remove (`explicit_bzero`). Use it on any
    /// temporary buffer that held key bytes.
    public static func secureZero(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let p = buffer.baseAddress, buffer.count > 0 else { return }
        explicit_bzero(p, buffer.count)
    }

    /// Test hook: a copy of the raw bytes, so a test can prove that ``zeroize()`` cleared the memory.
    /// Internal on purpose: production code must go through ``withUnsafeBytes(_:)``.
    func _copyOfBytesForTesting() -> [UInt8] {
        [UInt8](UnsafeRawBufferPointer(start: base, count: count))
    }

    /// Test hook: the whole mapping (including the padding past `count`), to check that nothing is left.
    func _copyOfMappingForTesting() -> [UInt8] {
        [UInt8](UnsafeRawBufferPointer(start: base, count: mappedLength))
    }
}

extension SecretBytes: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Always `SecretBytes(<count> bytes, redacted)`; never the bytes.
    public var description: String { "SecretBytes(\(count) bytes, redacted)" }
    /// Same as ``description``.
    public var debugDescription: String { description }
    /// A mirror with the byte count only, so `dump()` and debuggers' `po` reveal nothing.
    public var customMirror: Mirror {
        Mirror(self, children: ["count": count, "bytes": "redacted"], displayStyle: .class)
    }
}
