import Glibc
// ProxyTickets: RFC 5077 session-ticket keys — the key ring handed to the OpenSSL ticket callback, the rotation
// schedule, and the sources that produce keys (in-memory CSPRNG, nginx-format key files).
// Hand-written rather than taken from a library: no Swift package offers an OpenSSL-callback-shaped key ring with
// lock-free lookup, and the renewal policy around it is this product.
public import ProxyCore

/// Which cipher a ticket key seals tickets with. The HMAC is always HMAC-SHA256.
public enum TicketCipher: String, Sendable, Hashable, CustomStringConvertible {
    /// AES-128-CBC with a 16-byte AES key and a 16-byte HMAC key (nginx 48-byte key files).
    case aes128cbc = "AES-128-CBC"
    /// AES-256-CBC with a 32-byte AES key and a 32-byte HMAC key (nginx 80-byte files, generated keys).
    case aes256cbc = "AES-256-CBC"

    /// Length of the AES key in bytes.
    public var aesKeyLength: Int { self == .aes128cbc ? 16 : 32 }
    /// Length of the HMAC-SHA256 key in bytes.
    public var hmacKeyLength: Int { self == .aes128cbc ? 16 : 32 }
    public var description: String { rawValue }
}

/// Where a key stands at a given time.
///
/// | state | encrypts new tickets | decrypts tickets |
/// |---|---|---|
/// | `next` | no | yes — a fleet member whose clock runs slightly ahead may already encrypt with it |
/// | `current` | yes | yes |
/// | `stale` | no | yes (the ticket callback decides renewal via `StaleTicketAction`) |
/// | `expired` | no | no (lookups treat it as unknown) |
public enum KeyState: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case next, current, stale, expired
    /// Whether a ticket sealed under a key in this state may be opened.
    public var decrypts: Bool { self != .expired }
    public var description: String { rawValue }
}

/// One session-ticket key: a 16-byte public name, an AES key and an HMAC-SHA256 key (both ``SecretBytes``),
/// and the times that give its ``KeyState``.
///
/// Promises: immutable after init; the secrets are reachable only inside this module (``TicketCrypto`` uses
/// them), never through `description`, `KeyInfo` or any public property. The name is not secret: it travels in
/// clear in every ticket.
public final class TicketKey: Sendable, CustomStringConvertible {
    /// The first 8 name bytes loaded as a native-endian `UInt64` (allocation-free compare; see ``nameWords(_:)``).
    public let nameHigh: UInt64
    /// The last 8 name bytes loaded as a native-endian `UInt64`.
    public let nameLow: UInt64
    /// The cipher for this key.
    public let cipher: TicketCipher
    /// AES key: 16 bytes for `.aes128cbc`, 32 for `.aes256cbc`.
    let aesKey: SecretBytes
    /// HMAC-SHA256 key: 16 bytes for `.aes128cbc`, 32 for `.aes256cbc`.
    let hmacKey: SecretBytes
    /// From this time on the key encrypts new tickets (``KeyState/next`` before it).
    public let encryptFrom: Timestamp
    /// From this time on the key no longer encrypts (``KeyState/stale``).
    public let encryptUntil: Timestamp
    /// From this time on the key no longer decrypts (``KeyState/expired``).
    public let decryptUntil: Timestamp

    /// Creates a key. `name` must be exactly 16 bytes; the secret lengths must match `cipher`
    /// (precondition: a mismatch is a programming error, file contents are validated before this).
    /// Requires `encryptFrom <= encryptUntil <= decryptUntil`.
    public init(
        name: UnsafeRawBufferPointer,
        cipher: TicketCipher,
        aesKey: SecretBytes,
        hmacKey: SecretBytes,
        encryptFrom: Timestamp,
        encryptUntil: Timestamp,
        decryptUntil: Timestamp
    ) {
        precondition(name.count == 16, "a ticket key name is 16 bytes")
        precondition(aesKey.count == cipher.aesKeyLength && hmacKey.count == cipher.hmacKeyLength)
        precondition(encryptFrom <= encryptUntil && encryptUntil <= decryptUntil)
        (self.nameHigh, self.nameLow) = Self.nameWords(name)
        self.cipher = cipher
        self.aesKey = aesKey
        self.hmacKey = hmacKey
        self.encryptFrom = encryptFrom
        self.encryptUntil = encryptUntil
        self.decryptUntil = decryptUntil
    }

    /// The same name and secrets with new times (used by ``MemoryKeySource/rotateNow(now:)`` to end a key's
    /// encrypting period early). The secrets are shared, not copied.
    func withTimes(encryptFrom: Timestamp, encryptUntil: Timestamp, decryptUntil: Timestamp) -> TicketKey {
        withUnsafeNameBytes { name in
            TicketKey(
                name: name,
                cipher: cipher,
                aesKey: aesKey,
                hmacKey: hmacKey,
                encryptFrom: encryptFrom,
                encryptUntil: encryptUntil,
                decryptUntil: decryptUntil
            )
        }
    }

    /// Loads a 16-byte name as two native-endian words, the form ``TicketKeyRing/lookup(nameHigh:nameLow:at:)``
    /// compares. Precondition: `name.count >= 16` (only the first 16 bytes are read). Allocation-free.
    @inlinable
    public static func nameWords(_ name: UnsafeRawBufferPointer) -> (high: UInt64, low: UInt64) {
        precondition(name.count >= 16)
        // SAFETY: 16 bytes checked above; unaligned loads, so any byte pointer from OpenSSL works.
        return (
            name.loadUnaligned(fromByteOffset: 0, as: UInt64.self),
            name.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        )
    }

    /// Writes the 16-byte name to `destination`, which must have 16 writable bytes (the callback's `key_name`
    /// out-parameter on encrypt). Allocation-free.
    public func writeName(to destination: UnsafeMutableRawPointer) {
        // SAFETY: the caller promises 16 writable bytes (OpenSSL's `key_name[16]`); raw stores need no alignment.
        destination.storeBytes(of: nameHigh, toByteOffset: 0, as: UInt64.self)
        destination.storeBytes(of: nameLow, toByteOffset: 8, as: UInt64.self)
    }

    /// Calls `body` with the 16 name bytes (not secret).
    public func withUnsafeNameBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var words = (nameHigh, nameLow)
        return try withUnsafeBytes(of: &words) { try body($0) }
    }

    /// The name as 32 lowercase hex digits (for logs and the admin API; the name is public).
    public var nameHex: String {
        withUnsafeNameBytes { bytes in
            let digits: [Character] = Array("0123456789abcdef")
            var s = ""
            s.reserveCapacity(32)
            for b in bytes {
                s.append(digits[Int(b >> 4)])
                s.append(digits[Int(b & 0xF)])
            }
            return s
        }
    }

    /// The key's state at `now`: `next` before ``encryptFrom``, `current` until ``encryptUntil``, `stale` until
    /// ``decryptUntil``, then `expired`. Interval starts are inclusive, ends exclusive.
    @inlinable
    public func state(at now: Timestamp) -> KeyState {
        if now < encryptFrom { return .next }
        if now < encryptUntil { return .current }
        if now < decryptUntil { return .stale }
        return .expired
    }

    /// Name, cipher and times; never key bytes.
    public var description: String {
        "TicketKey(\(nameHex), \(cipher), encrypt [\(encryptFrom), \(encryptUntil)), decrypt until \(decryptUntil))"
    }

    /// Wipes both secrets now (retirement). The caller guarantees no handshake can still use this key.
    func zeroize() {
        aesKey.zeroize()
        hmacKey.zeroize()
    }

    /// Whether both secrets have been wiped.
    var isZeroized: Bool { aesKey.isZeroized && hmacKey.isZeroized }

    /// Whether `other` has the same name, cipher and secret bytes (file reload change detection).
    func hasSameMaterial(as other: TicketKey) -> Bool {
        nameHigh == other.nameHigh && nameLow == other.nameLow && cipher == other.cipher
            && Self.equal(aesKey, other.aesKey) && Self.equal(hmacKey, other.hmacKey)
    }

    private static func equal(_ a: SecretBytes, _ b: SecretBytes) -> Bool {
        guard a.count == b.count else { return false }
        return a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in
                var diff: UInt8 = 0
                for i in 0..<pa.count { diff |= pa[i] ^ pb[i] }
                return diff == 0
            }
        }
    }
}

extension TicketKey {
    /// A fresh AES-256-CBC key with a random name and random secrets (OS CSPRNG). Without times it is a
    /// placeholder (shared-store sources give it epoch times). Throws ``SecretBytes/Failure``.
    public static func random(
        encryptFrom: Timestamp = .distantPast,
        encryptUntil: Timestamp = .distantPast,
        decryptUntil: Timestamp = .distantFuture
    ) throws -> TicketKey {
        var name: (UInt64, UInt64) = (0, 0)
        let rc = withUnsafeMutableBytes(of: &name) { getentropy($0.baseAddress, 16) }
        if rc != 0 { throw SecretBytes.Failure.randomSourceFailed(errno: errno) }
        let aes = try SecretBytes(randomCount: TicketCipher.aes256cbc.aesKeyLength)
        let hmac = try SecretBytes(randomCount: TicketCipher.aes256cbc.hmacKeyLength)
        return withUnsafeBytes(of: &name) {
            TicketKey(
                name: $0,
                cipher: .aes256cbc,
                aesKey: aes,
                hmacKey: hmac,
                encryptFrom: encryptFrom,
                encryptUntil: encryptUntil,
                decryptUntil: decryptUntil
            )
        }
    }

}
