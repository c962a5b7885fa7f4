internal import COpenSSL

/// MD5 (JA3) and SHA-256 (JA4) through OpenSSL EVP with algorithms fetched once per process.
///
/// OpenSSL 3.0 takes global locks on every implicit fetch (`EVP_md5()` + `EVP_DigestInit`, `EVP_Q_digest`), which
/// serialises handshakes across workers (STYLE.md, TLS-NOTES.md), so the `EVP_MD`s are fetched explicitly once.
enum Digest {
    // SAFETY: a fetched EVP_MD is immutable and reference-counted by OpenSSL; OpenSSL documents sharing one across
    // threads for EVP_DigestInit_ex/EVP_Digest as safe. Global `let`s are initialised exactly once (swift_once), and
    // the object is never freed (process lifetime). nil when the provider lacks the algorithm (e.g. MD5 under a
    // FIPS-only configuration).
    nonisolated(unsafe) private static let md5: OpaquePointer? = EVP_MD_fetch(nil, "MD5", nil)
    nonisolated(unsafe) private static let sha256: OpaquePointer? = EVP_MD_fetch(nil, "SHA256", nil)

    /// Lowercase hex MD5 of `bytes`; "" when MD5 is unavailable in this OpenSSL configuration.
    static func md5Hex(_ bytes: [UInt8]) -> String {
        hexDigest(bytes, md5, prefix: 32)
    }

    /// The first `prefix` lowercase hex characters of SHA-256 of `bytes` (64 = all).
    static func sha256Hex(_ bytes: [UInt8], prefix: Int = 64) -> String {
        guard let sha256 else { preconditionFailure("OpenSSL default provider lacks SHA-256") }
        return hexDigest(bytes, sha256, prefix: prefix)
    }

    private static func hexDigest(_ bytes: [UInt8], _ md: OpaquePointer?, prefix: Int) -> String {
        guard let md else { return "" }
        var out = (
            UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0)
        )  // EVP_MAX_MD_SIZE (64) bytes on the stack
        var size: UInt32 = 0
        let ok = withUnsafeMutableBytes(of: &out) { o in
            bytes.withUnsafeBytes { b in
                // Passing an explicitly fetched EVP_MD: EVP_Digest does no implicit fetch.
                EVP_Digest(b.baseAddress, b.count, o.baseAddress!.assumingMemoryBound(to: UInt8.self), &size, md, nil)
            }
        }
        precondition(ok == 1, "EVP_Digest failed")
        return withUnsafeBytes(of: &out) { o in
            let n = min(prefix, Int(size) * 2)
            return String(unsafeUninitializedCapacity: n) { s in
                let digits: StaticString = "0123456789abcdef"
                for i in 0..<n {
                    let byte = o[i >> 1]
                    let nibble = i & 1 == 0 ? byte >> 4 : byte & 0xf
                    s[i] = digits.utf8Start[Int(nibble)]
                }
                return n
            }
        }
    }
}
