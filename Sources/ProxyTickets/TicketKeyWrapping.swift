// Sealing ticket keys for storage outside this process (Redis, its RDB/AOF files, its replication stream): AES-256-GCM
// under a fleet wrapping key. Lives here, not in ProxyTicketStore, because only this module may touch key bytes.
internal import COpenSSL
import Glibc
public import ProxyCore

// SAFETY: immutable, reference-counted OpenSSL method table, fetched once and shared (see TicketCrypto.swift).
nonisolated(unsafe) let fetchedAES256GCM: OpaquePointer? = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil)

/// A 32-byte AES-256-GCM key that seals ticket keys at rest, and its id (stored in clear in every entry so the
/// fleet can rotate wrapping keys: entries under an older id still open while it is configured as `previous`).
public final class WrappingKey: Sendable, CustomStringConvertible {
    /// 1–64 printable ASCII characters, no spaces (`[redis] wrapping_key_id`).
    public let id: String
    let secret: SecretBytes

    /// Why a wrapping key could not be loaded. Never carries key bytes.
    public enum LoadError: Error, Equatable, CustomStringConvertible {
        case badID(String)
        case unreadable(path: String, errno: Int32)
        case wrongFormat(source: String)
        case missingEnv(String)
        case secretMemory(SecretBytes.Failure)

        public var description: String {
            switch self {
            case .badID(let id): return "wrapping key id \"\(id)\" must be 1-64 printable ASCII characters, no spaces"
            case .unreadable(let p, let e):
                return "wrapping key file \"\(p)\": cannot read: \(String(cString: strerror(e))) (errno \(e))"
            case .wrongFormat(let s):
                return "wrapping key \(s): must be 32 raw bytes or 64 hex digits (optionally followed by a newline)"
            case .missingEnv(let n): return "wrapping key environment variable \(n) is not set"
            case .secretMemory(let f): return "wrapping key: \(f)"
            }
        }
    }

    /// Whether `id` is usable as a wrapping key id.
    public static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64 && id.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f }
    }

    /// A key from 32 secret bytes (copied; the caller wipes its buffer).
    public init(id: String, bytes: UnsafeRawBufferPointer) throws(LoadError) {
        guard Self.isValidID(id) else { throw .badID(id) }
        guard bytes.count == 32 else { throw .wrongFormat(source: "\"\(id)\"") }
        self.id = id
        do { secret = try SecretBytes(copying: bytes) } catch { throw .secretMemory(error) }
    }

    /// A fresh random key (tests, `edgeproxy keys` tooling).
    public static func random(id: String) throws(LoadError) -> WrappingKey {
        var raw = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        defer { withUnsafeMutableBytes(of: &raw) { SecretBytes.secureZero($0) } }
        guard withUnsafeMutableBytes(of: &raw, { getentropy($0.baseAddress, 32) }) == 0 else {
            throw .secretMemory(.randomSourceFailed(errno: errno))
        }
        return try withUnsafeBytes(of: &raw) { (b: UnsafeRawBufferPointer) throws(LoadError) in
            try WrappingKey(id: id, bytes: b)
        }
    }

    /// Reads a key file: 32 raw bytes, or 64 hex digits with an optional trailing newline.
    public static func load(id: String, file path: String) throws(LoadError) -> WrappingKey {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: path, errno: errno) }
        defer { close(fd) }
        // SAFETY: owned here, wiped and freed by the defer on every path.
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 130, alignment: 8)
        defer {
            SecretBytes.secureZero(buf)
            buf.deallocate()
        }
        var got = 0
        while got < buf.count {
            let n = read(fd, buf.baseAddress! + got, buf.count - got)
            if n < 0 {
                if errno == EINTR { continue }
                throw .unreadable(path: path, errno: errno)
            }
            if n == 0 { break }
            got += n
        }
        return try parse(id: id, UnsafeRawBufferPointer(rebasing: buf[0..<got]), source: "file \"\(path)\"")
    }

    /// Reads a key from an environment variable holding 64 hex digits.
    public static func load(id: String, env name: String) throws(LoadError) -> WrappingKey {
        guard let p = getenv(name) else { throw .missingEnv(name) }
        let n = strlen(p)
        return try parse(id: id, UnsafeRawBufferPointer(start: p, count: n), source: "in $\(name)")
    }

    private static func parse(
        id: String,
        _ text: UnsafeRawBufferPointer,
        source: String
    ) throws(LoadError)
        -> WrappingKey
    {
        if text.count == 32 { return try WrappingKey(id: id, bytes: text) }
        var n = text.count
        while n > 0 && (text[n - 1] == 10 || text[n - 1] == 13) { n -= 1 }
        guard n == 64 else { throw .wrongFormat(source: source) }
        var raw = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        defer { withUnsafeMutableBytes(of: &raw) { SecretBytes.secureZero($0) } }
        return try withUnsafeMutableBytes(of: &raw) { (out: UnsafeMutableRawBufferPointer) throws(LoadError) in
            for i in 0..<32 {
                guard let hi = hexValue(text[2 * i]), let lo = hexValue(text[2 * i + 1]) else {
                    throw .wrongFormat(source: source)
                }
                out[i] = hi << 4 | lo
            }
            return try WrappingKey(id: id, bytes: UnsafeRawBufferPointer(out))
        }
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    public var description: String { "WrappingKey(\(id), redacted)" }
}

/// Seals and opens ticket keys for a shared store.
///
/// Entry layout (all lengths in bytes): `"EPK1"` | id length (1) | id | nonce (12) | ciphertext | tag (16).
/// The GCM additional data is `"EPK1" | id | slot`, where `slot` is the store's name for the entry (the Redis key),
/// so an entry copied to another epoch's slot fails to open. Plaintext: version 1 (1) | cipher (1: AES-128-CBC,
/// 2: AES-256-CBC) | key name (16) | AES key (16/32) | HMAC key (16/32) | created (8, ms since 1970, big endian) |
/// not after (8, ms; 0 = times come from the epoch). Plaintext only ever exists in a wiped temporary buffer.
///
/// Promises: ``seal(_:slot:created:notAfter:)`` always uses the current key and a fresh random nonce;
/// ``open(_:slot:)`` accepts the current and every previous key, and throws ``OpenError`` for anything else —
/// an unknown id (`foreign`), a failed tag (`tampered`), or a malformed entry. Thread-safe (immutable).
public final class TicketKeyWrapper: Sendable {
    /// The key new entries are sealed under.
    public let current: WrappingKey
    /// Older keys that still open entries (wrapping-key rotation).
    public let previous: [WrappingKey]

    /// Why an entry did not open. Counted by the caller; never fatal.
    public enum OpenError: Error, Equatable, CustomStringConvertible {
        /// Not an entry of this format (wrong magic, truncated, bad lengths or plaintext layout).
        case malformed
        /// Sealed under a wrapping-key id this instance does not have.
        case foreign(id: String)
        /// The GCM tag did not verify: modified, moved to another slot, or a different key with the same id.
        case tampered(id: String)

        public var description: String {
            switch self {
            case .malformed: return "malformed entry"
            case .foreign(let id): return "sealed under unknown wrapping key id \"\(id)\""
            case .tampered(let id): return "does not authenticate under wrapping key \"\(id)\" (tampered or moved)"
            }
        }
        /// A short label for metrics: `malformed`, `foreign`, `tampered`.
        public var kind: String {
            switch self {
            case .malformed: "malformed"
            case .foreign: "foreign"
            case .tampered: "tampered"
            }
        }
    }

    /// What an entry holds besides the key.
    public struct Opened: Sendable {
        /// The key, with placeholder times (the caller gives it epoch times or import times).
        public let key: TicketKey
        /// When the entry was sealed.
        public let created: Timestamp
        /// For imported keys: when they stop decrypting; nil for epoch keys.
        public let notAfter: Timestamp?
    }

    static let magic: [UInt8] = Array("EPK1".utf8)

    /// Precondition: ids are distinct.
    public init(current: WrappingKey, previous: [WrappingKey] = []) {
        precondition(Set([current.id] + previous.map(\.id)).count == previous.count + 1, "duplicate wrapping key id")
        self.current = current
        self.previous = previous
    }

    /// Seals `key` (name, cipher, secrets; not its times) for storage under `slot`. Throws only if OpenSSL or the
    /// random source fails.
    public func seal(_ key: TicketKey, slot: String, created: Timestamp, notAfter: Timestamp? = nil) throws -> [UInt8] {
        let plainLength = 2 + 16 + key.cipher.aesKeyLength + key.cipher.hmacKeyLength + 16
        // SAFETY: owned here, wiped and freed by the defer.
        let plain = UnsafeMutableRawBufferPointer.allocate(byteCount: plainLength, alignment: 8)
        defer {
            SecretBytes.secureZero(plain)
            plain.deallocate()
        }
        plain[0] = 1
        plain[1] = key.cipher == .aes128cbc ? 1 : 2
        key.withUnsafeNameBytes { n in
            plain.baseAddress!.advanced(by: 2).copyMemory(from: n.baseAddress!, byteCount: 16)
        }
        var p = 18
        key.aesKey.withUnsafeBytes {
            plain.baseAddress!.advanced(by: p).copyMemory(from: $0.baseAddress!, byteCount: $0.count)
        }
        p += key.cipher.aesKeyLength
        key.hmacKey.withUnsafeBytes {
            plain.baseAddress!.advanced(by: p).copyMemory(from: $0.baseAddress!, byteCount: $0.count)
        }
        p += key.cipher.hmacKeyLength
        Self.putMillis(created, plain, at: p)
        Self.putMillis(notAfter, plain, at: p + 8)
        guard let out = sealEnvelope(magic: Self.magic, context: Array(slot.utf8), plain: UnsafeRawBufferPointer(plain))
        else { throw WrapFailure.openssl }
        return out
    }

    /// Opens an entry read from `slot`. Throws ``OpenError``; a non-OpenError failure (memory) is rethrown as
    /// `.malformed` to keep the caller's accounting simple.
    public func open(_ entry: [UInt8], slot: String) throws(OpenError) -> Opened {
        // The smallest plaintext: version, cipher, name, AES-128 and HMAC keys, two times.
        let opened = openEnvelope(entry, magic: Self.magic, context: Array(slot.utf8), minPlain: 2 + 16 + 32 + 16) {
            Self.parseKey($0)
        }
        switch opened {
        case .failure(let e): throw e
        case .success(let parsed): return try parsed.get()
        }
    }

    /// The authenticated plaintext of a ticket-key entry; a bad layout here is our own format bug or a different
    /// writer version.
    private static func parseKey(_ bytes: UnsafeRawBufferPointer) -> Result<Opened, OpenError> {
        guard bytes[0] == 1, bytes[1] == 1 || bytes[1] == 2 else { return .failure(.malformed) }
        let cipher: TicketCipher = bytes[1] == 1 ? .aes128cbc : .aes256cbc
        guard bytes.count == 2 + 16 + cipher.aesKeyLength + cipher.hmacKeyLength + 16 else {
            return .failure(.malformed)
        }
        var p = 18
        let aes: SecretBytes
        let hmac: SecretBytes
        do {
            aes = try SecretBytes(copying: UnsafeRawBufferPointer(rebasing: bytes[p..<(p + cipher.aesKeyLength)]))
            p += cipher.aesKeyLength
            hmac = try SecretBytes(copying: UnsafeRawBufferPointer(rebasing: bytes[p..<(p + cipher.hmacKeyLength)]))
            p += cipher.hmacKeyLength
        } catch {
            return .failure(.malformed)
        }
        let created = getMillis(bytes, at: p) ?? .distantPast
        let notAfter = getMillis(bytes, at: p + 8)
        let key = TicketKey(
            name: UnsafeRawBufferPointer(rebasing: bytes[2..<18]),
            cipher: cipher,
            aesKey: aes,
            hmacKey: hmac,
            encryptFrom: .distantPast,
            encryptUntil: .distantPast,
            decryptUntil: .distantFuture
        )
        return .success(Opened(key: key, created: created, notAfter: notAfter))
    }

    /// The one sealed format of everything a wrapping key protects (ticket keys here, TLS sessions in
    /// TicketKeyWrapper+Sessions.swift): `magic | idLen u8 | wrapping key id | nonce (12) | AES-256-GCM(plain) |
    /// tag (16)`, with `magic | wrapping key id | context` as associated data, so an entry neither moves to another
    /// context nor changes its claimed key id. Nil if OpenSSL or the random source fails.
    func sealEnvelope(magic: [UInt8], context: [UInt8], plain: UnsafeRawBufferPointer) -> [UInt8]? {
        guard let gcm = fetchedAES256GCM, plain.count > 0 else { return nil }
        let id = Array(current.id.utf8)
        var nonce = [UInt8](repeating: 0, count: 12)
        guard RAND_bytes(&nonce, 12) == 1 else { return nil }
        let aad = magic + id + context
        var out = magic + [UInt8(id.count)] + id + nonce
        let header = out.count
        out += [UInt8](repeating: 0, count: plain.count + 16)
        let ok = current.secret.withUnsafeBytes { wk -> Bool in
            guard let ctx = EVP_CIPHER_CTX_new() else { return false }
            defer { EVP_CIPHER_CTX_free(ctx) }
            var len: Int32 = 0
            guard EVP_EncryptInit_ex2(ctx, gcm, wk.baseAddress, nonce, nil) == 1,
                EVP_EncryptUpdate(ctx, nil, &len, aad, Int32(aad.count)) == 1
            else { return false }
            return out.withUnsafeMutableBufferPointer { o -> Bool in
                let ct = o.baseAddress! + header
                guard
                    EVP_EncryptUpdate(
                        ctx,
                        ct,
                        &len,
                        plain.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        Int32(plain.count)
                    ) == 1
                else { return false }
                var total = len
                guard EVP_EncryptFinal_ex(ctx, ct + Int(total), &len) == 1 else { return false }
                total += len
                return Int(total) == plain.count
                    && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, ct + Int(total)) == 1
            }
        }
        return ok ? out : nil
    }

    /// Opens an entry of ``sealEnvelope(magic:context:plain:)`` with at least `minPlain` plaintext bytes and calls
    /// `body` with the plaintext, which lives in a temporary buffer wiped right after `body` returns.
    func openEnvelope<R>(
        _ entry: [UInt8],
        magic: [UInt8],
        context: [UInt8],
        minPlain: Int,
        _ body: (UnsafeRawBufferPointer) -> R
    ) -> Result<R, OpenError> {
        guard let gcm = fetchedAES256GCM else { return .failure(.malformed) }
        guard entry.count > 5 + 12 + 16, Array(entry[0..<4]) == magic else { return .failure(.malformed) }
        let idLen = Int(entry[4])
        guard idLen >= 1, entry.count >= 5 + idLen + 12 + minPlain + 16 else { return .failure(.malformed) }
        let idBytes = Array(entry[5..<(5 + idLen)])
        let id = String(decoding: idBytes, as: UTF8.self)
        guard let wk = ([current] + previous).first(where: { Array($0.id.utf8) == idBytes }) else {
            return .failure(.foreign(id: id))
        }
        let nonce = Array(entry[(5 + idLen)..<(5 + idLen + 12)])
        let ctStart = 5 + idLen + 12
        let ctLen = entry.count - ctStart - 16
        var tag = Array(entry[(entry.count - 16)...])
        let aad = magic + idBytes + context
        // SAFETY: owned here, wiped and freed by the defer.
        let plain = UnsafeMutableRawBufferPointer.allocate(byteCount: ctLen + 16, alignment: 8)
        defer {
            SecretBytes.secureZero(plain)
            plain.deallocate()
        }
        let ok = wk.secret.withUnsafeBytes { k -> Bool in
            guard let ctx = EVP_CIPHER_CTX_new() else { return false }
            defer { EVP_CIPHER_CTX_free(ctx) }
            var len: Int32 = 0
            let p = plain.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let updated = entry.withUnsafeBufferPointer { e -> Bool in
                EVP_DecryptInit_ex2(ctx, gcm, k.baseAddress, nonce, nil) == 1
                    && EVP_DecryptUpdate(ctx, nil, &len, aad, Int32(aad.count)) == 1
                    && EVP_DecryptUpdate(ctx, p, &len, e.baseAddress! + ctStart, Int32(ctLen)) == 1
            }
            guard updated, EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, &tag) == 1 else { return false }
            var fin: Int32 = 0
            return EVP_DecryptFinal_ex(ctx, p + Int(len), &fin) == 1
        }
        guard ok else { return .failure(.tampered(id: id)) }
        return .success(body(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(plain)[0..<ctLen])))
    }

    /// The wrapping-key id an entry claims (clear text), or nil when it is not an entry of this format.
    public static func wrappingKeyID(of entry: [UInt8]) -> String? {
        guard entry.count > 5, Array(entry[0..<4]) == magic, entry.count >= 5 + Int(entry[4]) else { return nil }
        return String(decoding: entry[5..<(5 + Int(entry[4]))], as: UTF8.self)
    }

    private static func putMillis(_ t: Timestamp?, _ buf: UnsafeMutableRawBufferPointer, at p: Int) {
        let ms = t.map { UInt64(bitPattern: $0.nanosecondsSinceEpoch / 1_000_000) } ?? 0
        for i in 0..<8 { buf[p + i] = UInt8(truncatingIfNeeded: ms >> (56 - 8 * UInt64(i))) }
    }

    private static func getMillis(_ buf: UnsafeRawBufferPointer, at p: Int) -> Timestamp? {
        var ms: UInt64 = 0
        for i in 0..<8 { ms = ms << 8 | UInt64(buf[p + i]) }
        if ms == 0 { return nil }
        return Timestamp(nanosecondsSinceEpoch: Int64(bitPattern: ms) &* 1_000_000)
    }
}

/// OpenSSL or the random source failed while sealing (never a data error).
public enum WrapFailure: Error, CustomStringConvertible {
    case openssl
    public var description: String { "AES-256-GCM sealing failed in OpenSSL" }
}

/// Test-only exposure of key material, for the integration test that proves Redis never stores a plaintext key.
///
/// Off unless the process environment has `EDGEPROXY_TEST_ONLY_EXPOSE_TICKET_KEYS=I-understand-this-leaks-keys`
/// (an exact, deliberately awkward value; read once). There is no configuration key or flag for it. When on, the
/// server logs a warning at start and the admin API serves `GET /test/ticket-key-material`. Never enable it in
/// production.
public enum TicketKeyMaterialTestHook {
    /// The environment variable and the value that enables the hook.
    public static let variable = "EDGEPROXY_TEST_ONLY_EXPOSE_TICKET_KEYS"
    public static let requiredValue = "I-understand-this-leaks-keys"

    /// Whether the hook is on (environment read once per process).
    public static let isEnabled: Bool = {
        guard let v = getenv(variable) else { return false }
        return String(cString: v) == requiredValue
    }()

    /// `(name hex, aes hex, hmac hex)` for `key`, or nil when the hook is off.
    public static func material(of key: TicketKey) -> (name: String, aes: String, hmac: String)? {
        guard isEnabled else { return nil }
        func hex(_ s: SecretBytes) -> String {
            s.withUnsafeBytes { b in b.map { String(($0 >> 4) & 0xf, radix: 16) + String($0 & 0xf, radix: 16) }.joined()
            }
        }
        return (key.nameHex, hex(key.aesKey), hex(key.hmacKey))
    }
}
