import COpenSSL
import XCTest

@testable import ProxyTLS

/// The worker's table of decoded sessions in front of the shared cache, with real OpenSSL session encodings: a copy
/// is reused only while its cache entry is the live one, and freed when it is not.
final class DecodedSessionsTests: XCTestCase {
    private let second: UInt64 = 1_000_000_000

    /// Session IDs as OpenSSL makes them: 32 random bytes (fixed per `n` within a test run).
    private static let ids: [[UInt8]] = (0..<4096).map { _ in (0..<32).map { _ in UInt8.random(in: 0...255) } }
    private func id(_ n: Int) -> [UInt8] { Self.ids[n] }
    private func masterKey(_ n: Int) -> [UInt8] { (0..<48).map { UInt8(truncatingIfNeeded: 0x5A &+ n &* 3 &+ $0) } }

    /// Stores the i2d encoding of a TLS 1.2 session with ID `id(n)` and master key `masterKey(version)`.
    private func store(_ cache: SessionCache, _ n: Int, version: Int = 0, now: UInt64) throws {
        let s = SSL_SESSION_new()!
        defer { SSL_SESSION_free(s) }
        let i = id(n)
        let k = masterKey(version)
        XCTAssertEqual(SSL_SESSION_set1_id(s, i, UInt32(i.count)), 1)
        XCTAssertEqual(SSL_SESSION_set1_master_key(s, k, k.count), 1)
        XCTAssertEqual(SSL_SESSION_set_protocol_version(s, TLS1_2_VERSION), 1)
        // An encoding needs a cipher (ECDHE-ECDSA-AES128-GCM-SHA256), found through an SSL object.
        let ctx = SSL_CTX_new(TLS_server_method())!
        let ssl = SSL_new(ctx)!
        defer {
            SSL_free(ssl)
            SSL_CTX_free(ctx)
        }
        let cipher = try XCTUnwrap(SSL_CIPHER_find(ssl, [0xC0, 0x2B]))
        XCTAssertEqual(SSL_SESSION_set_cipher(s, cipher), 1)
        let len = Int(i2d_SSL_SESSION(s, nil))
        var bytes = [UInt8](repeating: 0, count: len)
        bytes.withUnsafeMutableBufferPointer { b in
            var p: UnsafeMutablePointer<UInt8>? = b.baseAddress
            XCTAssertEqual(Int(i2d_SSL_SESSION(s, &p)), len)
        }
        i.withUnsafeBytes { ib in
            bytes.withUnsafeBytes { XCTAssertEqual(cache.store(id: ib, session: $0, now: now), .stored) }
        }
    }

    private func fetch(_ t: DecodedSessions, _ cache: SessionCache, _ n: Int, now: UInt64) -> OpaquePointer? {
        id(n).withUnsafeBytes { t.fetch(id: $0, from: cache, now: now) }
    }

    private func key(of s: OpaquePointer) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 48)
        let n = SSL_SESSION_get_master_key(s, &out, out.count)
        return Array(out[0..<n])
    }

    func testACurrentCopyIsReusedWithoutDecoding() throws {
        let cache = SessionCache(capacity: 16, ttlNanoseconds: 60 * second, shards: 1)
        let t = DecodedSessions()
        try store(cache, 1, now: 0)
        let a = try XCTUnwrap(fetch(t, cache, 1, now: 1))
        XCTAssertEqual(key(of: a), masterKey(0))
        // The same object again: the shared cache answered "unchanged" and nothing was decoded.
        XCTAssertEqual(fetch(t, cache, 1, now: 2), a)
        XCTAssertEqual(t.count, 1)
        XCTAssertEqual(cache.statistics.hits, 2, "every use is still a lookup of the shared entry")
        XCTAssertNil(fetch(t, cache, 2, now: 3))
    }

    func testAReplacedEntryIsDecodedAgain() throws {
        let cache = SessionCache(capacity: 16, ttlNanoseconds: 60 * second, shards: 1)
        let t = DecodedSessions()
        try store(cache, 1, version: 0, now: 0)
        let a = try XCTUnwrap(fetch(t, cache, 1, now: 1))
        XCTAssertEqual(key(of: a), masterKey(0))
        try store(cache, 1, version: 1, now: 2)
        let b = try XCTUnwrap(fetch(t, cache, 1, now: 3))
        XCTAssertEqual(key(of: b), masterKey(1), "the copy of the replaced entry must not be served")
        XCTAssertEqual(t.count, 1)
    }

    func testRemovedEvictedAndExpiredEntriesAreNotServed() throws {
        let cache = SessionCache(capacity: 2, ttlNanoseconds: 10 * second, shards: 1)
        let t = DecodedSessions()
        try store(cache, 1, now: 0)
        XCTAssertNotNil(fetch(t, cache, 1, now: 1))
        id(1).withUnsafeBytes { cache.remove(id: $0) }  // OpenSSL's remove callback
        XCTAssertNil(fetch(t, cache, 1, now: 2))
        XCTAssertEqual(t.count, 0, "the stale copy is freed when found")

        try store(cache, 2, now: 3)
        XCTAssertNotNil(fetch(t, cache, 2, now: 4))
        try store(cache, 3, now: 5)
        try store(cache, 4, now: 6)  // capacity 2: entry 2 is evicted
        XCTAssertNil(fetch(t, cache, 2, now: 7))

        XCTAssertNotNil(fetch(t, cache, 3, now: 8))
        XCTAssertNil(fetch(t, cache, 3, now: 5 + 10 * second), "expired with its entry")
        XCTAssertEqual(t.count, 0)
    }

    func testSweepFreesCopiesWhoseEntriesExpired() throws {
        let cache = SessionCache(capacity: 64, ttlNanoseconds: 10 * second, shards: 1)
        let t = DecodedSessions()
        for n in 0..<8 { try store(cache, n, now: UInt64(n) * second) }
        for n in 0..<8 { XCTAssertNotNil(fetch(t, cache, n, now: 8 * second)) }
        XCTAssertEqual(t.count, 8)
        XCTAssertEqual(t.sweep(now: 9 * second), 0)
        XCTAssertEqual(t.sweep(now: 13 * second), 4, "entries stored at 0...3 s expire at 10...13 s")
        XCTAssertEqual(t.count, 4)
        t.removeAll()
        XCTAssertEqual(t.count, 0)
    }

    func testTheTableStaysBoundedAndANewCacheEmptiesIt() throws {
        let cache = SessionCache(capacity: 4096, ttlNanoseconds: 60 * second)
        let t = DecodedSessions()
        for n in 0..<2000 { try store(cache, n, now: 0) }
        for n in 0..<2000 { XCTAssertNotNil(fetch(t, cache, n, now: 1)) }
        XCTAssertLessThanOrEqual(t.count, DecodedSessions.slots)
        XCTAssertGreaterThan(t.count, DecodedSessions.slots / 2, "random IDs spread over the slots")
        // After a reload that brought another cache, nothing decoded from the old one is served.
        let other = SessionCache(capacity: 16, ttlNanoseconds: 60 * second, shards: 1)
        XCTAssertNil(fetch(t, other, 1, now: 2))
        XCTAssertEqual(t.count, 0)
        try store(other, 1, version: 7, now: 3)
        XCTAssertEqual(key(of: try XCTUnwrap(fetch(t, other, 1, now: 4))), masterKey(7))
    }
}
