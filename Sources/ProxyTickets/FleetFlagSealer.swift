// Authenticated fleet entries for the renewal-intolerance detector (issue #14 §3, "Fleet"): a flag raised by one
// instance is written to Redis so every instance applies it. Lives here, beside the other sealed formats, because
// only this module touches wrapping-key bytes.
//
// The key is never the wrapping key itself: each wrapping key (current and previous) yields its own flag key by
// HKDF-SHA256 (OpenSSL EVP_KDF "HKDF", RFC 5869) with the label ``FleetFlagSealer/label`` as `info`, so a flag entry
// can never be opened as (or confused with) a ticket-key or session entry, and compromising one derived key reveals
// nothing about the wrapping key. Entries use the one envelope of TicketKeyWrapping.swift
// (`"EPD1" | idLen | id | nonce | AES-256-GCM | tag`, AAD `"EPD1" | id | Redis key`), so an entry is bound to its
// Redis key (its JA4) and its expiry is inside the authenticated plaintext: a Redis writer without the wrapping key
// can neither inject an entry nor extend one (changing the Redis TTL changes nothing; replaying an old entry brings
// back at most what it said, until its own expiry).
internal import COpenSSL
import Glibc
public import ProxyCore

// SAFETY: an immutable, reference-counted OpenSSL method table, fetched once and shared (see TicketCrypto.swift).
nonisolated(unsafe) let fetchedHKDF: OpaquePointer? = EVP_KDF_fetch(nil, "HKDF", nil)
private let paramDigest: StaticString = "digest"
private let paramKey: StaticString = "key"
private let paramInfo: StaticString = "info"
private let digestSHA256: StaticString = "SHA256"

/// One flagged fingerprint as the fleet shares it.
public struct FleetFlagEntry: Sendable, Equatable {
    /// The JA4 fingerprint (the detector's key is computed from it on every instance).
    public var ja4: String
    public var ja3Hash: String
    /// The policy tag seen with the fingerprint, if any.
    public var tag: String?
    /// When the flag was raised and when it stops applying (wall clock; the expiry is authenticated).
    public var flaggedAt: Timestamp
    public var expiresAt: Timestamp
    /// The evidence summary when the flag was raised or last renewed.
    public var aborts: Double
    public var abortRate: Double
    public var baselineAbortRate: Double
    public var prefixes: Int
    public var fallbacks: Double
    /// Which instance raised it (host name and pid; for the operator, never trusted for anything).
    public var instance: String

    public init(
        ja4: String,
        ja3Hash: String,
        tag: String?,
        flaggedAt: Timestamp,
        expiresAt: Timestamp,
        aborts: Double,
        abortRate: Double,
        baselineAbortRate: Double,
        prefixes: Int,
        fallbacks: Double,
        instance: String
    ) {
        self.ja4 = ja4
        self.ja3Hash = ja3Hash
        self.tag = tag
        self.flaggedAt = flaggedAt
        self.expiresAt = expiresAt
        self.aborts = aborts
        self.abortRate = abortRate
        self.baselineAbortRate = baselineAbortRate
        self.prefixes = prefixes
        self.fallbacks = fallbacks
        self.instance = instance
    }
}

/// Why a fleet flag entry was not accepted.
public enum FleetFlagOpenError: Error, Equatable, CustomStringConvertible {
    /// The envelope did not open: malformed, an unknown wrapping key id, or a failed tag (forged, modified, moved).
    case envelope(TicketKeyWrapper.OpenError)
    /// It opened, but its plaintext is not a flag of this format, or names another JA4 than its Redis key.
    case malformed
    /// Authentic, but past its expiry (ignored, not suspicious).
    case expired

    public var description: String {
        switch self {
        case .envelope(let e): "\(e)"
        case .malformed: "malformed flag"
        case .expired: "expired"
        }
    }

    /// A short label for metrics: `malformed`, `foreign`, `tampered`, `expired`.
    public var kind: String {
        switch self {
        case .envelope(let e): e.kind
        case .malformed: "malformed"
        case .expired: "expired"
        }
    }
}

/// Seals and opens ``FleetFlagEntry`` values under keys derived from the fleet's wrapping keys. Thread-safe
/// (immutable).
public final class FleetFlagSealer: Sendable {
    /// The HKDF `info` that separates the flag key from the wrapping key and from every other derived key.
    public static let label = "edgeproxy detector fleet flags v1"
    static let magic: [UInt8] = Array("EPD1".utf8)
    static let formatVersion: UInt8 = 1

    /// Derived keys under the same ids as the wrapping keys they come from (rotation works the same way).
    private let derived: TicketKeyWrapper

    /// Derives the flag keys from `wrapping` (current and previous). Throws only if OpenSSL fails.
    public init(wrapping: TicketKeyWrapper) throws {
        let current = try Self.derive(wrapping.current)
        let previous = try wrapping.previous.map { try Self.derive($0) }
        derived = TicketKeyWrapper(current: current, previous: previous)
    }

    /// HKDF-SHA256(ikm: the wrapping key, salt: none, info: ``label``) → 32 bytes, as a WrappingKey with the same id.
    static func derive(_ wk: WrappingKey) throws -> WrappingKey {
        guard let kdf = fetchedHKDF, let ctx = EVP_KDF_CTX_new(kdf) else { throw WrapFailure.openssl }
        defer { EVP_KDF_CTX_free(ctx) }
        // SAFETY: owned here, wiped and freed by the defer.
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 32, alignment: 8)
        defer {
            SecretBytes.secureZero(out)
            out.deallocate()
        }
        var info = Array(label.utf8)
        let ok = wk.secret.withUnsafeBytes { k -> Bool in
            info.withUnsafeMutableBytes { i -> Bool in
                withUnsafeTemporaryAllocation(of: OSSL_PARAM.self, capacity: 4) { params in
                    // SAFETY: OpenSSL declares these buffers non-const but only reads them while deriving; the
                    // StaticString storage lives for the process, the key and label for this closure.
                    func name(_ s: StaticString) -> UnsafePointer<CChar> {
                        UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
                    }
                    params[0] = OSSL_PARAM_construct_utf8_string(
                        name(paramDigest),
                        UnsafeMutableRawPointer(mutating: digestSHA256.utf8Start).assumingMemoryBound(to: CChar.self),
                        digestSHA256.utf8CodeUnitCount
                    )
                    params[1] = OSSL_PARAM_construct_octet_string(
                        name(paramKey),
                        UnsafeMutableRawPointer(mutating: k.baseAddress),
                        k.count
                    )
                    params[2] = OSSL_PARAM_construct_octet_string(name(paramInfo), i.baseAddress, i.count)
                    params[3] = OSSL_PARAM_construct_end()
                    return EVP_KDF_derive(
                        ctx,
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        32,
                        params.baseAddress
                    )
                        == 1
                }
            }
        }
        guard ok else { throw WrapFailure.openssl }
        return try WrappingKey(id: wk.id, bytes: UnsafeRawBufferPointer(out))
    }

    /// Seals `entry` for the Redis key `slot`; nil if OpenSSL or the random source fails.
    public func seal(_ entry: FleetFlagEntry, slot: String) -> [UInt8]? {
        let plain = Self.encode(entry)
        return plain.withUnsafeBytes { derived.sealEnvelope(magic: Self.magic, context: Array(slot.utf8), plain: $0) }
    }

    /// Opens an entry read from `slot` (whose name must end in the entry's JA4); an entry past its expiry at `now`
    /// is `.expired`.
    public func open(_ sealed: [UInt8], slot: String, now: Timestamp) -> Result<FleetFlagEntry, FleetFlagOpenError> {
        let opened = derived.openEnvelope(sealed, magic: Self.magic, context: Array(slot.utf8), minPlain: 1) {
            Self.decode($0)
        }
        switch opened {
        case .failure(let e): return .failure(.envelope(e))
        case .success(nil): return .failure(.malformed)
        case .success(.some(let e)):
            guard !e.ja4.isEmpty, slot.hasSuffix(e.ja4) else { return .failure(.malformed) }
            guard e.expiresAt > now else { return .failure(.expired) }
            return .success(e)
        }
    }

    // MARK: - plaintext: version | flagged at | expires at (ms, BE) | aborts | abort rate | baseline rate |
    // fallbacks (IEEE 754 bits, BE) | prefixes (u32 BE) | ja4 | ja3 hash | tag present (u8) | tag | instance
    // (strings: u16 BE length | UTF-8)

    static func encode(_ e: FleetFlagEntry) -> [UInt8] {
        var out: [UInt8] = [formatVersion]
        func u64(_ v: UInt64) { for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (56 - 8 * UInt64(i)))) } }
        func str(_ s: String) {
            let b = Array(s.utf8.prefix(1024))
            out.append(UInt8(b.count >> 8))
            out.append(UInt8(b.count & 0xFF))
            out += b
        }
        u64(UInt64(bitPattern: e.flaggedAt.nanosecondsSinceEpoch / 1_000_000))
        u64(UInt64(bitPattern: e.expiresAt.nanosecondsSinceEpoch / 1_000_000))
        for d in [e.aborts, e.abortRate, e.baselineAbortRate, e.fallbacks] { u64(d.bitPattern) }
        let p = UInt32(clamping: max(0, e.prefixes))
        for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: p >> (24 - 8 * UInt32(i)))) }
        str(e.ja4)
        str(e.ja3Hash)
        out.append(e.tag == nil ? 0 : 1)
        str(e.tag ?? "")
        str(e.instance)
        return out
    }

    static func decode(_ b: UnsafeRawBufferPointer) -> FleetFlagEntry? {
        var p = 0
        func u64() -> UInt64? {
            guard p + 8 <= b.count else { return nil }
            var v: UInt64 = 0
            for i in 0..<8 { v = v << 8 | UInt64(b[p + i]) }
            p += 8
            return v
        }
        func str() -> String? {
            guard p + 2 <= b.count else { return nil }
            let n = Int(b[p]) << 8 | Int(b[p + 1])
            p += 2
            guard p + n <= b.count else { return nil }
            defer { p += n }
            return String(validating: b[p..<(p + n)], as: UTF8.self)
        }
        guard b.count > 0, b[0] == formatVersion else { return nil }
        p = 1
        guard let at = u64(), let until = u64(), let aborts = u64(), let rate = u64(), let base = u64(),
            let fallbacks = u64(), p + 4 <= b.count
        else { return nil }
        let prefixes = Int(b[p]) << 24 | Int(b[p + 1]) << 16 | Int(b[p + 2]) << 8 | Int(b[p + 3])
        p += 4
        guard let ja4 = str(), let ja3 = str(), p < b.count else { return nil }
        let hasTag = b[p]
        p += 1
        guard hasTag <= 1, let tag = str(), let instance = str(), p == b.count else { return nil }
        let d = [aborts, rate, base, fallbacks].map { Double(bitPattern: $0) }
        guard d.allSatisfy(\.isFinite) else { return nil }
        return FleetFlagEntry(
            ja4: ja4,
            ja3Hash: ja3,
            tag: hasTag == 1 ? tag : nil,
            flaggedAt: Timestamp(nanosecondsSinceEpoch: Int64(bitPattern: at) &* 1_000_000),
            expiresAt: Timestamp(nanosecondsSinceEpoch: Int64(bitPattern: until) &* 1_000_000),
            aborts: d[0],
            abortRate: d[1],
            baselineAbortRate: d[2],
            prefixes: prefixes,
            fallbacks: d[3],
            instance: instance
        )
    }
}
