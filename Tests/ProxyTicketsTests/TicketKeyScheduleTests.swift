import ProxyCore
import XCTest

@testable import ProxyTickets

final class TicketKeyScheduleTests: XCTestCase {
    let hour: Int64 = 3600

    func testDefaults() {
        let s = TicketKeySchedule.default
        XCTAssertEqual(s.rotationNanoseconds, 3600 * 1_000_000_000)
        XCTAssertEqual(s.lifetimeNanoseconds, 18 * 3600 * 1_000_000_000)
        XCTAssertEqual(s.ringSize, 20)
    }

    func testEpochBoundariesAreExact() throws {
        let s = try TicketKeySchedule(rotationSeconds: hour, lifetimeSeconds: 2 * hour)
        let boundary = t(10 * hour)
        XCTAssertEqual(s.epoch(at: boundary), 10)
        XCTAssertEqual(s.epoch(at: boundary.adding(nanoseconds: -1)), 9)
        XCTAssertEqual(s.epoch(at: Timestamp(nanosecondsSinceEpoch: -1)), -1)
        XCTAssertEqual(s.encryptFrom(epoch: 10), boundary)
        XCTAssertEqual(s.encryptUntil(epoch: 10), t(11 * hour))
        XCTAssertEqual(s.decryptUntil(epoch: 10), t(13 * hour))
    }

    func testWhichKeyEncryptsAndWhichDecrypt() throws {
        let s = try TicketKeySchedule(rotationSeconds: hour, lifetimeSeconds: 2 * hour)
        let now = t(10 * hour + 1800)  // middle of epoch 10
        XCTAssertEqual(s.epochs(at: now), 8...11)
        XCTAssertEqual(s.state(ofEpoch: 11, at: now), .next)
        XCTAssertEqual(s.state(ofEpoch: 10, at: now), .current)
        XCTAssertEqual(s.state(ofEpoch: 9, at: now), .stale)
        XCTAssertEqual(s.state(ofEpoch: 8, at: now), .stale)  // decrypts until 11h
        XCTAssertEqual(s.state(ofEpoch: 7, at: now), .expired)  // stopped at 10h
        // Exactly at a boundary: the new epoch encrypts, the previous one is stale, epoch 8's key just expired.
        let b = t(11 * hour)
        XCTAssertEqual(s.state(ofEpoch: 11, at: b), .current)
        XCTAssertEqual(s.state(ofEpoch: 10, at: b), .stale)
        XCTAssertEqual(s.state(ofEpoch: 8, at: b), .expired)
        XCTAssertEqual(s.state(ofEpoch: 8, at: b.adding(nanoseconds: -1)), .stale)
        XCTAssertEqual(s.epochs(at: b), 9...12)
        // Every epoch in epochs(at:) decrypts at that time; the neighbours outside do not exist.
        for n in s.epochs(at: now) { XCTAssertTrue(s.state(ofEpoch: n, at: now).decrypts, "\(n)") }
    }

    func testRingSizeAndTheNextKeyAlwaysPresent() throws {
        let cases: [(Int64, Int64, Int)] = [
            (3600, 18 * 3600, 20), (3600, 0, 2), (3600, 1, 3), (3600, 5400, 4), (60, 60, 3),
        ]
        for (r, l, size) in cases {
            let s = try TicketKeySchedule(rotationSeconds: r, lifetimeSeconds: l)
            XCTAssertEqual(s.ringSize, size, "R=\(r) L=\(l)")
            // Scan times across several periods, including exact boundaries and one ns before them.
            var maxCount = 0
            for k in Int64(0)..<Int64(40) {
                for now in [t(1_000_000 * r + k * r / 4), t(1_000_000 * r + k * r / 4).adding(nanoseconds: -1)] {
                    let epochs = s.epochs(at: now)
                    maxCount = max(maxCount, epochs.count)
                    XCTAssertLessThanOrEqual(epochs.count, s.ringSize)
                    XCTAssertEqual(epochs.upperBound, s.epoch(at: now) + 1, "next key must exist")
                    XCTAssertEqual(s.state(ofEpoch: epochs.upperBound, at: now), .next)
                    XCTAssertEqual(s.state(ofEpoch: epochs.lowerBound - 1, at: now), .expired)
                    XCTAssertNotEqual(s.state(ofEpoch: epochs.lowerBound, at: now), .expired)
                }
            }
            XCTAssertEqual(maxCount, size, "R=\(r) L=\(l): the bound is reached")
        }
    }

    func testInvalidSchedulesAreRejected() {
        XCTAssertThrowsError(try TicketKeySchedule(rotationSeconds: 0, lifetimeSeconds: 10))
        XCTAssertThrowsError(try TicketKeySchedule(rotationSeconds: 10, lifetimeSeconds: -1))
        XCTAssertThrowsError(try TicketKeySchedule(rotationSeconds: 60, lifetimeSeconds: 63 * 60)) { error in
            XCTAssertEqual(error as? TicketKeySchedule.Invalid, .ringTooLarge(needed: 65))
        }
        XCTAssertNoThrow(try TicketKeySchedule(rotationSeconds: 60, lifetimeSeconds: 62 * 60))
    }
}
