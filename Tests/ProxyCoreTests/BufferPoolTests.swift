import XCTest

@testable import ProxyCore

final class BufferPoolTests: XCTestCase {
    func testKeepsWhatAPeakNeededAndTrimsWhatStayedUnused() {
        let pool = BufferPool(bufferSize: 4096)
        // A burst of 10 concurrent users, then all released.
        let burst = (0..<10).map { _ in pool.acquire() }
        for b in burst { pool.release(b) }
        XCTAssertEqual(pool.freeCount, 10)
        // Steady state of 2 concurrent users for an interval: 8 buffers were never needed.
        pool.trim(now: 1_000_000_000)  // starts an interval
        for _ in 0..<100 {
            let a = pool.acquire()
            let b = pool.acquire()
            pool.release(a)
            pool.release(b)
        }
        XCTAssertEqual(pool.trim(now: 2_000_000_000), 8)
        XCTAssertEqual(pool.freeCount, 2)
        // Not again before the interval has passed.
        XCTAssertEqual(pool.trim(now: 2_500_000_000), 0)
    }

    func testReusesReleasedBuffers() {
        let pool = BufferPool(bufferSize: 4096)
        let a = pool.acquire()
        pool.release(a)
        XCTAssertTrue(pool.acquire() === a)
    }
}
