// OpenSSL glue for `SSL_CTX_set_tlsext_ticket_key_evp_cb`: initialise the cipher and MAC contexts OpenSSL hands
// to the callback from a TicketKey. The callback itself (return values, renewal policy) lives in ProxyTLS.
internal import COpenSSL

// SAFETY (all three): EVP_CIPHER and EVP_MAC objects returned by *_fetch are immutable, reference-counted method
// tables that OpenSSL allows to be shared between threads. They are fetched once (Swift global initialisers run
// exactly once, thread-safely) so no handshake pays for an implicit fetch and its global lock, and never freed.
nonisolated(unsafe) let fetchedAES128CBC: OpaquePointer? = EVP_CIPHER_fetch(nil, "AES-128-CBC", nil)
nonisolated(unsafe) let fetchedAES256CBC: OpaquePointer? = EVP_CIPHER_fetch(nil, "AES-256-CBC", nil)
nonisolated(unsafe) let fetchedHMAC: OpaquePointer? = EVP_MAC_fetch(nil, "HMAC", nil)

// OSSL_PARAM_construct_* keeps the pointers it is given: these live in static storage for the process lifetime.
private let paramKey: StaticString = "key"  // OSSL_MAC_PARAM_KEY
private let paramDigest: StaticString = "digest"  // OSSL_MAC_PARAM_DIGEST
private let digestSHA256: StaticString = "SHA256"

/// Initialises the contexts OpenSSL passes to the session-ticket callback.
///
/// Callback use (`cb(ssl, keyName, iv, cipherCtx, macCtx, enc)`, keys from the worker's ``TicketKeyRing``):
/// - encrypt (`enc == 1`): `key = ring.encryptionKey(at: now)`; `key.writeName(to: keyName)`;
///   `initEncrypt(key:iv:cipherCtx:macCtx:)`; return 1 on success, -1 on failure.
/// - decrypt (`enc == 0`): `ring.lookup(name: UnsafeRawBufferPointer(start: keyName, count: 16), at: now)`;
///   nil → return 0 (unknown/expired: full handshake); else `initDecrypt(key:iv:cipherCtx:macCtx:)` (false → -1)
///   and return 1 or 2 according to the key state and the renewal policy.
///
/// Promises: no Swift allocation and no lock of ours per call; algorithms are fetched once per process; the key
/// bytes are passed to OpenSSL only inside `SecretBytes.withUnsafeBytes`. OpenSSL copies them into the contexts,
/// which it owns and frees.
public enum TicketCrypto {
    /// Whether AES-128-CBC, AES-256-CBC and HMAC could be fetched from the default provider. Check at startup:
    /// when false every init returns false (tickets off in effect).
    public static var isAvailable: Bool {
        fetchedAES128CBC != nil && fetchedAES256CBC != nil && fetchedHMAC != nil
    }

    /// IV length in bytes for both ciphers (AES block size). The callback's `iv` buffer is `EVP_MAX_IV_LENGTH` (16).
    public static let ivLength = 16

    /// For encryption: writes 16 random bytes (`RAND_bytes`) to `iv`, initialises `cipherCtx` (an
    /// `EVP_CIPHER_CTX *`) for encryption with the key's cipher, AES key and that IV (`EVP_EncryptInit_ex2`), and
    /// keys `macCtx` (an `EVP_MAC_CTX *`) with HMAC-SHA256 and the key's HMAC key. Returns false on any failure
    /// (the callback must then return -1). The caller also writes the key name (``TicketKey/writeName(to:)``).
    public static func initEncrypt(
        key: TicketKey,
        iv: UnsafeMutablePointer<UInt8>,
        cipherCtx: OpaquePointer,
        macCtx: OpaquePointer
    ) -> Bool {
        guard let cipher = cipher(for: key.cipher) else { return false }
        guard RAND_bytes(iv, Int32(ivLength)) == 1 else { return false }
        let cipherOK = key.aesKey.withUnsafeBytes { aes in
            EVP_EncryptInit_ex2(cipherCtx, cipher, aes.baseAddress, iv, nil) == 1
        }
        return cipherOK && setMACKey(key, macCtx)
    }

    /// For decryption: keys `macCtx` with HMAC-SHA256 and the key's HMAC key, and initialises `cipherCtx` for
    /// decryption with the key's cipher, AES key and the ticket's `iv` (16 bytes, read only). Returns false on
    /// any failure (the callback must then return -1).
    public static func initDecrypt(
        key: TicketKey,
        iv: UnsafePointer<UInt8>,
        cipherCtx: OpaquePointer,
        macCtx: OpaquePointer
    ) -> Bool {
        guard let cipher = cipher(for: key.cipher) else { return false }
        guard setMACKey(key, macCtx) else { return false }
        return key.aesKey.withUnsafeBytes { aes in
            EVP_DecryptInit_ex2(cipherCtx, cipher, aes.baseAddress, iv, nil) == 1
        }
    }

    @inline(__always)
    private static func cipher(for kind: TicketCipher) -> OpaquePointer? {
        kind == .aes128cbc ? fetchedAES128CBC : fetchedAES256CBC
    }

    /// `EVP_MAC_CTX_set_params(macCtx, {digest: "SHA256", key: hmacKey})`, the params array on the stack.
    /// (The HMAC provider looks the digest up by name here; its method store caches it. EVP_MAC offers no way to
    /// pass a pre-fetched EVP_MD, and libssl's own ticket path does the same.)
    private static func setMACKey(_ key: TicketKey, _ macCtx: OpaquePointer) -> Bool {
        key.hmacKey.withUnsafeBytes { hmac in
            withUnsafeTemporaryAllocation(of: OSSL_PARAM.self, capacity: 3) { params in
                // SAFETY: OpenSSL declares these buffers non-const but only reads them in set_params; the
                // StaticString storage is immutable and lives for the process, the key bytes for this closure.
                let digest = UnsafeMutableRawPointer(mutating: digestSHA256.utf8Start)
                    .assumingMemoryBound(to: CChar.self)
                let keyNamePtr = UnsafeRawPointer(paramKey.utf8Start).assumingMemoryBound(to: CChar.self)
                let digestNamePtr = UnsafeRawPointer(paramDigest.utf8Start).assumingMemoryBound(to: CChar.self)
                params[0] = OSSL_PARAM_construct_utf8_string(digestNamePtr, digest, digestSHA256.utf8CodeUnitCount)
                params[1] = OSSL_PARAM_construct_octet_string(
                    keyNamePtr,
                    UnsafeMutableRawPointer(mutating: hmac.baseAddress),
                    hmac.count
                )
                params[2] = OSSL_PARAM_construct_end()
                return EVP_MAC_CTX_set_params(macCtx, params.baseAddress) == 1
            }
        }
    }
}
