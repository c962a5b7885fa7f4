import Synchronization
import XCTest

@testable import ProxyTLS

final class SessionCacheTests: XCTestCase {
    private let second: UInt64 = 1_000_000_000

    private func id(_ n: Int, length: Int = 32) -> [UInt8] { Self.id(n, length: length) }
    private func secret(_ n: Int, count: Int = 100) -> [UInt8] { Self.secret(n, count: count) }

    private static func id(_ n: Int, length: Int = 32) -> [UInt8] {
        (0..<length).map { UInt8(truncatingIfNeeded: n &* 31 &+ $0) }
    }

    /// A recognisable "session" (stands in for i2d bytes holding a master secret).
    private static func secret(_ n: Int, count: Int = 100) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: 0xA0 &+ n &* 13 &+ $0 &* 7) | 1 }
    }

    @discardableResult
    private func store(_ c: SessionCache, _ n: Int, now: UInt64, count: Int = 100) -> SessionCache.StoreResult {
        Self.store(c, n, now: now, count: count)
    }

    @discardableResult
    private static func store(_ c: SessionCache, _ n: Int, now: UInt64, count: Int = 100) -> SessionCache.StoreResult {
        id(n).withUnsafeBytes { i in secret(n, count: count).withUnsafeBytes { c.store(id: i, session: $0, now: now) } }
    }

    private func get(_ c: SessionCache, _ n: Int, now: UInt64) -> [UInt8]? { Self.get(c, n, now: now) }

    private static func get(_ c: SessionCache, _ n: Int, now: UInt64) -> [UInt8]? {
        id(n).withUnsafeBytes { i in c.lookup(id: i, now: now) { [UInt8]($0) } }
    }

    private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if Array(haystack[i..<(i + needle.count)]) == needle { return true }
        }
        return false
    }

    func testStoreAndLookupReturnTheBytes() {
        let c = SessionCache(capacity: 8, ttlNanoseconds: 60 * second, shards: 1)
        XCTAssertEqual(store(c, 1, now: 0), .stored)
        XCTAssertEqual(get(c, 1, now: 1), secret(1))
        XCTAssertNil(get(c, 2, now: 1))
        let s = c.statistics
        XCTAssertEqual(s.entries, 1)
        XCTAssertEqual(s.hits, 1)
        XCTAssertEqual(s.misses, 1)
        XCTAssertEqual(s.stores, 1)
    }

    func testIDsOfDifferentLengthsAreDifferentKeys() {
        let c = SessionCache(capacity: 8, ttlNanoseconds: 60 * second, shards: 1)
        let long = [UInt8](repeating: 0, count: 32)
        let short = [UInt8](repeating: 0, count: 16)
        long.withUnsafeBytes { i in secret(1).withUnsafeBytes { _ = c.store(id: i, session: $0, now: 0) } }
        XCTAssertNil(short.withUnsafeBytes { c.lookup(id: $0, now: 0) { [UInt8]($0) } })
        XCTAssertEqual(long.withUnsafeBytes { c.lookup(id: $0, now: 0) { [UInt8]($0) } }, secret(1))
    }

    func testLeastRecentlyUsedIsEvictedFirst() {
        let c = SessionCache(capacity: 3, ttlNanoseconds: 60 * second, shards: 1)
        for n in 1...3 { store(c, n, now: 0) }
        XCTAssertNotNil(get(c, 1, now: 1))  // 1 is now the most recently used; 2 is the coldest
        store(c, 4, now: 2)
        XCTAssertNil(get(c, 2, now: 3))
        for n in [1, 3, 4] { XCTAssertEqual(get(c, n, now: 3), secret(n), "entry \(n)") }
        XCTAssertEqual(c.statistics.evictions, 1)
        XCTAssertEqual(c.statistics.entries, 3)
    }

    func testEntriesExpireAfterTheTTL() {
        let c = SessionCache(capacity: 4, ttlNanoseconds: 10 * second, shards: 1)
        store(c, 1, now: 0)
        XCTAssertNotNil(get(c, 1, now: 10 * second - 1))
        XCTAssertNil(get(c, 1, now: 10 * second))
        XCTAssertEqual(c.statistics.expirations, 1)
        XCTAssertEqual(c.statistics.entries, 0)
        // A hit does not extend the lifetime: the TTL counts from the full handshake.
        store(c, 2, now: 100 * second)
        XCTAssertNotNil(get(c, 2, now: 109 * second))
        XCTAssertNil(get(c, 2, now: 110 * second))
    }

    func testSweepRemovesOnlyExpiredEntries() {
        let c = SessionCache(capacity: 8, ttlNanoseconds: 10 * second, shards: 2)
        for n in 1...4 { store(c, n, now: 0) }
        for n in 5...6 { store(c, n, now: 5 * second) }
        XCTAssertEqual(c.sweep(now: 12 * second), 4)
        XCTAssertEqual(c.statistics.entries, 2)
        for n in 5...6 { XCTAssertNotNil(get(c, n, now: 12 * second)) }
    }

    func testReplacingAnIDKeepsOneEntry() {
        let c = SessionCache(capacity: 4, ttlNanoseconds: 10 * second, shards: 1)
        store(c, 1, now: 0)
        let other = secret(9)
        id(1).withUnsafeBytes { i in other.withUnsafeBytes { _ = c.store(id: i, session: $0, now: 1) } }
        XCTAssertEqual(get(c, 1, now: 2), other)
        XCTAssertEqual(c.statistics.entries, 1)
        XCTAssertFalse(contains(c._copyOfStorageForTesting(), secret(1)))
    }

    func testBoundsHoldUnderManyStores() {
        let c = SessionCache(capacity: 100, ttlNanoseconds: 60 * second, shards: 4)
        XCTAssertEqual(c.capacity, 100)
        XCTAssertEqual(c.reservedBytes, 100 * SessionCache.slotSize)
        for n in 0..<10_000 { store(c, n, now: UInt64(n)) }
        let s = c.statistics
        XCTAssertLessThanOrEqual(s.entries, 100)
        XCTAssertEqual(s.stores, 10_000)
        XCTAssertEqual(s.evictions, 10_000 - s.entries)
        // The storage is exactly the slabs reserved at start, page-rounded per shard.
        XCTAssertLessThanOrEqual(c._copyOfStorageForTesting().count, 100 * SessionCache.slotSize + 4 * 4096)
        // The most recent entries are the ones kept.
        XCTAssertEqual(get(c, 9_999, now: 10_000), secret(9_999))
    }

    func testOversizedSessionsAndBadIDsAreRefused() {
        let c = SessionCache(capacity: 4, ttlNanoseconds: 60 * second, shards: 1)
        XCTAssertEqual(store(c, 1, now: 0, count: SessionCache.slotSize + 1), .tooLarge)
        XCTAssertEqual(store(c, 2, now: 0, count: SessionCache.slotSize), .stored)
        XCTAssertEqual(c.statistics.tooLarge, 1)
        let tooLong = [UInt8](repeating: 1, count: 33)
        let result = tooLong.withUnsafeBytes { i in secret(1).withUnsafeBytes { c.store(id: i, session: $0, now: 0) } }
        XCTAssertEqual(result, .invalidID)
        let empty: [UInt8] = []
        XCTAssertEqual(
            empty.withUnsafeBytes { i in secret(1).withUnsafeBytes { c.store(id: i, session: $0, now: 0) } },
            .invalidID
        )
    }

    func testEvictedExpiredAndRemovedSessionsAreWiped() {
        let c = SessionCache(capacity: 2, ttlNanoseconds: 10 * second, shards: 1)
        store(c, 1, now: 0)
        store(c, 2, now: 0)
        XCTAssertTrue(contains(c._copyOfStorageForTesting(), secret(1)))
        store(c, 3, now: 1)  // evicts 1 (LRU)
        XCTAssertFalse(contains(c._copyOfStorageForTesting(), secret(1)), "evicted session left in memory")
        id(2).withUnsafeBytes { c.remove(id: $0) }
        XCTAssertFalse(contains(c._copyOfStorageForTesting(), secret(2)), "removed session left in memory")
        XCTAssertNil(get(c, 2, now: 2))
        XCTAssertEqual(c.sweep(now: 20 * second), 1)
        XCTAssertFalse(contains(c._copyOfStorageForTesting(), secret(3)), "expired session left in memory")
        XCTAssertTrue(c._copyOfStorageForTesting().allSatisfy { $0 == 0 })
    }

    func testConcurrentWorkersSeeEachOthersSessions() {
        let c = SessionCache(capacity: 4096, ttlNanoseconds: 60 * second)
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            for n in stride(from: t, to: 2000, by: 4) { Self.store(c, n, now: 0) }
        }
        let found = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            var local = 0
            for n in stride(from: (t + 1) % 4, to: 2000, by: 4) where Self.get(c, n, now: 1) == Self.secret(n) {
                local += 1
            }
            found.withLock { $0 += local }
        }
        XCTAssertEqual(found.withLock { $0 }, 2000)
    }
}
