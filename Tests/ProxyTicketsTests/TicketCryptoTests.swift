import COpenSSL
import ProxyCore
import XCTest

@testable import ProxyTickets

/// Real OpenSSL round trips through the contexts the ticket callback initialises, sealing a ticket the way libssl
/// does: HMAC-SHA256 over name | iv | ciphertext.
final class TicketCryptoTests: XCTestCase {
    struct Sealed {
        var name: [UInt8]
        var iv: [UInt8]
        var ciphertext: [UInt8]
        var tag: [UInt8]
    }

    func seal(_ plaintext: [UInt8], with key: TicketKey) throws -> Sealed {
        let cctx = try XCTUnwrap(EVP_CIPHER_CTX_new())
        defer { EVP_CIPHER_CTX_free(cctx) }
        let mctx = try XCTUnwrap(EVP_MAC_CTX_new(fetchedHMAC))
        defer { EVP_MAC_CTX_free(mctx) }
        var name = [UInt8](repeating: 0, count: 16)
        name.withUnsafeMutableBytes { key.writeName(to: $0.baseAddress!) }
        var iv = [UInt8](repeating: 0, count: 16)
        XCTAssertTrue(TicketCrypto.initEncrypt(key: key, iv: &iv, cipherCtx: cctx, macCtx: mctx))
        var out = [UInt8](repeating: 0, count: plaintext.count + 32)
        var n: Int32 = 0
        var total = 0
        XCTAssertEqual(EVP_EncryptUpdate(cctx, &out, &n, plaintext, Int32(plaintext.count)), 1)
        total = Int(n)
        XCTAssertEqual(out.withUnsafeMutableBufferPointer { EVP_EncryptFinal_ex(cctx, $0.baseAddress! + total, &n) }, 1)
        total += Int(n)
        let ciphertext = Array(out[..<total])
        return Sealed(name: name, iv: iv, ciphertext: ciphertext, tag: try mac(mctx, name + iv + ciphertext))
    }

    /// Verifies and opens `sealed` the way libssl does after the callback returned: returns nil on a bad HMAC or
    /// a padding error.
    func open(_ sealed: Sealed, with key: TicketKey) throws -> [UInt8]? {
        let cctx = try XCTUnwrap(EVP_CIPHER_CTX_new())
        defer { EVP_CIPHER_CTX_free(cctx) }
        let mctx = try XCTUnwrap(EVP_MAC_CTX_new(fetchedHMAC))
        defer { EVP_MAC_CTX_free(mctx) }
        XCTAssertTrue(TicketCrypto.initDecrypt(key: key, iv: sealed.iv, cipherCtx: cctx, macCtx: mctx))
        guard try mac(mctx, sealed.name + sealed.iv + sealed.ciphertext) == sealed.tag else { return nil }
        var out = [UInt8](repeating: 0, count: sealed.ciphertext.count + 32)
        var n: Int32 = 0
        guard EVP_DecryptUpdate(cctx, &out, &n, sealed.ciphertext, Int32(sealed.ciphertext.count)) == 1 else {
            return nil
        }
        var total = Int(n)
        guard out.withUnsafeMutableBufferPointer({ EVP_DecryptFinal_ex(cctx, $0.baseAddress! + total, &n) }) == 1 else {
            return nil
        }
        total += Int(n)
        return Array(out[..<total])
    }

    func mac(_ mctx: OpaquePointer, _ data: [UInt8]) throws -> [UInt8] {
        // No EVP_MAC_init: libssl updates the context straight after the callback, and so do we.
        XCTAssertEqual(EVP_MAC_update(mctx, data, data.count), 1)
        var tag = [UInt8](repeating: 0, count: 64)
        var len = 0
        XCTAssertEqual(EVP_MAC_final(mctx, &tag, &len, tag.count), 1)
        return Array(tag[..<len])
    }

    func testAlgorithmsAreAvailable() {
        XCTAssertTrue(TicketCrypto.isAvailable)
    }

    func testRoundTripBothCiphers() throws {
        let plaintext = (0..<200).map { UInt8(truncatingIfNeeded: $0 * 31) }
        for cipher in [TicketCipher.aes128cbc, .aes256cbc] {
            let key = makeKey(name: 0x5A, cipher: cipher, aes: 0x10, hmac: 0x70)
            let sealed = try seal(plaintext, with: key)
            XCTAssertEqual(sealed.name, [UInt8](repeating: 0x5A, count: 16))
            XCTAssertNotEqual(sealed.iv, [UInt8](repeating: 0, count: 16), "a random IV was written")
            XCTAssertEqual(sealed.tag.count, 32, "HMAC-SHA256")
            XCTAssertEqual(sealed.ciphertext.count, 208, "CBC with PKCS#7 padding")
            XCTAssertEqual(try open(sealed, with: key), plaintext, "\(cipher)")

            // Independent check of what the contexts were keyed with: one-shot HMAC-SHA256 with the HMAC key,
            // and a plain AES-CBC decryption with the AES key.
            var expected = [UInt8](repeating: 0, count: 32)
            var len = 0
            let input = sealed.name + sealed.iv + sealed.ciphertext
            let hmacKey = key.hmacBytes
            XCTAssertNotNil(
                EVP_Q_mac(
                    nil,
                    "HMAC",
                    nil,
                    "SHA256",
                    nil,
                    hmacKey,
                    hmacKey.count,
                    input,
                    input.count,
                    &expected,
                    32,
                    &len
                )
            )
            XCTAssertEqual(sealed.tag, expected, "HMAC uses SHA-256 and the HMAC key")
            let ctx = try XCTUnwrap(EVP_CIPHER_CTX_new())
            defer { EVP_CIPHER_CTX_free(ctx) }
            let evp = cipher == .aes128cbc ? EVP_aes_128_cbc() : EVP_aes_256_cbc()
            XCTAssertEqual(EVP_DecryptInit_ex(ctx, evp, nil, key.aesBytes, sealed.iv), 1)
            var out = [UInt8](repeating: 0, count: 256)
            var n: Int32 = 0
            XCTAssertEqual(EVP_DecryptUpdate(ctx, &out, &n, sealed.ciphertext, Int32(sealed.ciphertext.count)), 1)
            var total = Int(n)
            XCTAssertEqual(
                out.withUnsafeMutableBufferPointer { EVP_DecryptFinal_ex(ctx, $0.baseAddress! + total, &n) },
                1
            )
            total += Int(n)
            XCTAssertEqual(Array(out[..<total]), plaintext, "AES uses the AES key and the key's cipher")
        }
    }

    func testWrongKeyFailsVerificationAndIVsDiffer() throws {
        let key = makeKey(name: 1, aes: 0x10, hmac: 0x70)
        let other = makeKey(name: 1, aes: 0x10, hmac: 0x71)  // same AES key, different HMAC key
        let a = try seal([1, 2, 3], with: key)
        let b = try seal([1, 2, 3], with: key)
        XCTAssertNotEqual(a.iv, b.iv)
        XCTAssertNotEqual(a.ciphertext, b.ciphertext)
        XCTAssertNil(try open(a, with: other))
        var tampered = a
        tampered.ciphertext[0] ^= 1
        XCTAssertNil(try open(tampered, with: key))
        XCTAssertEqual(try open(b, with: key), [1, 2, 3])
    }

    func testZeroizedKeyNoLongerOpensTickets() throws {
        let key = makeKey(name: 2)
        let sealed = try seal(Array("session".utf8), with: key)
        key.zeroize()
        XCTAssertNil(try open(sealed, with: key))
    }
}
