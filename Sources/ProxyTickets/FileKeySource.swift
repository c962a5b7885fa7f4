import Glibc
public import ProxyCore
import Synchronization

/// Why loading ticket key files failed. Every case names the file; none carries key bytes.
public enum TicketKeyFileError: Error, Equatable, CustomStringConvertible {
    /// The source was given no files.
    case noFiles
    /// `open`, `fstat` or `read` failed.
    case unreadable(path: String, errno: Int32)
    /// The file is not 48 or 80 bytes long.
    case wrongSize(path: String, size: Int)
    /// The file shrank or grew while being read.
    case shortRead(path: String, expected: Int, got: Int)
    /// Two files hold keys with the same 16-byte name (ambiguous lookups); `firstPath` is the earlier file.
    case duplicateName(path: String, firstPath: String, nameHex: String)
    /// Secret memory could not be allocated.
    case secretMemory(path: String, SecretBytes.Failure)

    public var description: String {
        switch self {
        case .noFiles:
            return "ticket key files: none configured"
        case .unreadable(let path, let e):
            return "ticket key file \"\(path)\": cannot read: \(String(cString: strerror(e))) (errno \(e))"
        case .wrongSize(let path, let size):
            return "ticket key file \"\(path)\": must be 48 or 80 bytes, is \(size)"
        case .shortRead(let path, let expected, let got):
            return "ticket key file \"\(path)\": read \(got) of \(expected) bytes (file changed while reading?)"
        case .duplicateName(let path, let firstPath, let nameHex):
            return "ticket key file \"\(path)\": key name \(nameHex) already used by \"\(firstPath)\""
        case .secretMemory(let path, let failure):
            return "ticket key file \"\(path)\": \(failure)"
        }
    }
}

/// Ticket keys from nginx-format key files (`ssl_session_ticket_key`), one key per file:
/// - 48 bytes: name[0..<16] | AES-128 key[16..<32] | HMAC key[32..<48] → AES-128-CBC, 16-byte HMAC-SHA256 key;
/// - 80 bytes: name[0..<16] | HMAC key[16..<48] | AES-256 key[48..<80] → AES-256-CBC, 32-byte HMAC-SHA256 key.
/// (Byte order as nginx reads them in `ngx_ssl_session_ticket_keys`; HAProxy's 80-byte layout differs.)
///
/// The first file's key encrypts (`current`, forever); the others only decrypt (`stale`, no expiry): the operator
/// rotates by rewriting the files, as with nginx.
///
/// Promises: a failed load never replaces the published ring — ``reload()`` throws a ``TicketKeyFileError`` naming
/// the file and the previous keys stay in force. Key bytes pass through one temporary buffer that is wiped with
/// `explicit_bzero`. Keys that leave the ring are wiped when their last ring is released (`SecretBytes.deinit`).
/// Thread-safe.
public final class FileKeySource: TicketKeySource {
    /// The key files, first = encrypting key.
    public let paths: [String]
    /// Where rings are published.
    public let store: TicketKeyStore

    /// What `stat` saw of a file; a change triggers a reload on ``tick(now:)``.
    struct Fingerprint: Equatable {
        var device: UInt64 = 0
        var inode: UInt64 = 0
        var size: Int64 = 0
        var mtimeSeconds: Int = 0
        var mtimeNanoseconds: Int = 0
        var errno: Int32 = 0
    }

    private struct State {
        var keys: [TicketKey]
        var lastSeen: [Fingerprint]
    }
    private let state: Mutex<State>

    /// Loads every file and publishes the first ring — into `store` when given, otherwise into a new store.
    /// Throws ``TicketKeyFileError`` if any file is unusable (then nothing is published).
    public init(paths: [String], store: TicketKeyStore? = nil) throws(TicketKeyFileError) {
        guard !paths.isEmpty else { throw .noFiles }
        self.paths = paths
        let seen = Self.fingerprints(paths)
        let keys = try Self.load(paths)
        if let store {
            store.publish(TicketKeyRing(generation: store.generation + 1, keys: keys, encryptionKey: keys[0]))
            self.store = store
        } else {
            self.store = TicketKeyStore(initial: TicketKeyRing(generation: 1, keys: keys, encryptionKey: keys[0]))
        }
        self.state = Mutex(State(keys: keys, lastSeen: seen))
    }

    /// Re-reads all files. On success publishes a new ring if any key's name, cipher or bytes changed, and returns
    /// whether it published; on any error throws (naming the file) and keeps the previous ring.
    @discardableResult
    public func reload() throws(TicketKeyFileError) -> Bool {
        let seen = Self.fingerprints(paths)
        return try state.withLock { (s: inout State) throws(TicketKeyFileError) -> Bool in
            s.lastSeen = seen
            return try reloadLocked(&s)
        }
    }

    /// Reloads when any file's device, inode, size or mtime changed since the last attempt (so a broken file is
    /// reported once per change, not on every tick). `now` is unused: file keys have no times.
    @discardableResult
    public func tick(now: Timestamp) throws -> Bool {
        let seen = Self.fingerprints(paths)
        return try state.withLock { (s: inout State) throws(TicketKeyFileError) -> Bool in
            guard seen != s.lastSeen else { return false }
            s.lastSeen = seen
            return try reloadLocked(&s)
        }
    }

    private func reloadLocked(_ s: inout State) throws(TicketKeyFileError) -> Bool {
        let keys = try Self.load(paths)
        let same =
            keys.count == s.keys.count && zip(keys, s.keys).allSatisfy { $0.hasSameMaterial(as: $1) }
        guard !same else { return false }
        s.keys = keys
        store.publish(TicketKeyRing(generation: store.generation + 1, keys: keys, encryptionKey: keys[0]))
        return true
    }

    static func fingerprints(_ paths: [String]) -> [Fingerprint] {
        paths.map { path in
            var st = stat()
            guard stat(path, &st) == 0 else { return Fingerprint(errno: errno) }
            return Fingerprint(
                device: UInt64(st.st_dev),
                inode: UInt64(st.st_ino),
                size: Int64(st.st_size),
                mtimeSeconds: Int(st.st_mtim.tv_sec),
                mtimeNanoseconds: Int(st.st_mtim.tv_nsec)
            )
        }
    }

    /// Reads one nginx-format key file (48 or 80 bytes) as a decrypt-only key (for `edgeproxy keys import`).
    public static func loadKey(path: String) throws(TicketKeyFileError) -> TicketKey {
        try loadOne(path, encrypting: false)
    }

    /// Parses every file into keys: first `current`, the rest `stale`, all without expiry.
    static func load(_ paths: [String]) throws(TicketKeyFileError) -> [TicketKey] {
        var keys: [TicketKey] = []
        var owners: [String] = []
        for (index, path) in paths.enumerated() {
            let key = try loadOne(path, encrypting: index == 0)
            if let dup = keys.firstIndex(where: { $0.nameHigh == key.nameHigh && $0.nameLow == key.nameLow }) {
                throw .duplicateName(path: path, firstPath: owners[dup], nameHex: key.nameHex)
            }
            keys.append(key)
            owners.append(path)
        }
        return keys
    }

    static func loadOne(_ path: String, encrypting: Bool) throws(TicketKeyFileError) -> TicketKey {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: path, errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .unreadable(path: path, errno: errno) }
        let size = Int(st.st_size)
        guard size == 48 || size == 80 else { throw .wrongSize(path: path, size: size) }

        // SAFETY: owned here only, never escapes; wiped and freed by the defer on every path (throws included).
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 80, alignment: 8)
        defer {
            SecretBytes.secureZero(buffer)
            buffer.deallocate()
        }
        var got = 0
        while got < size {
            let n = read(fd, buffer.baseAddress! + got, size - got)
            if n < 0 {
                if errno == EINTR { continue }
                throw .unreadable(path: path, errno: errno)
            }
            if n == 0 { break }
            got += n
        }
        guard got == size else { throw .shortRead(path: path, expected: size, got: got) }
        // A file that grew past `size` after fstat is also a torn write.
        var probe: UInt8 = 0
        if read(fd, &probe, 1) > 0 { throw .shortRead(path: path, expected: size, got: size + 1) }

        let bytes = UnsafeRawBufferPointer(buffer)
        let cipher: TicketCipher = size == 48 ? .aes128cbc : .aes256cbc
        // nginx layout: 48 = name|aes|hmac, 80 = name|hmac|aes.
        let aesRange = size == 48 ? 16..<32 : 48..<80
        let hmacRange = size == 48 ? 32..<48 : 16..<48
        let aes: SecretBytes
        let hmac: SecretBytes
        do {
            aes = try SecretBytes(copying: UnsafeRawBufferPointer(rebasing: bytes[aesRange]))
            hmac = try SecretBytes(copying: UnsafeRawBufferPointer(rebasing: bytes[hmacRange]))
        } catch {
            throw .secretMemory(path: path, error)
        }
        return TicketKey(
            name: UnsafeRawBufferPointer(rebasing: bytes[0..<16]),
            cipher: cipher,
            aesKey: aes,
            hmacKey: hmac,
            encryptFrom: .distantPast,
            encryptUntil: encrypting ? .distantFuture : .distantPast,
            decryptUntil: .distantFuture
        )
    }
}
