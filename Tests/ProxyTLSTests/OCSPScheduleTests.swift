import ProxyTLS
import XCTest

/// The OCSP stapler's pure decisions (issue 11 §2): when to refresh after a response, how to back off after failures
/// while a good staple is still held, and that an expired response is never stapleable. The live behaviour (real
/// responder, outage, expiry, revocation) is covered by `Tests/Integration/test_ocsp.py`.
final class OCSPScheduleTests: XCTestCase {
    let now: Int64 = 1_800_000_000

    func testRefreshHalfwayThroughTheValidityWindow() {
        // A one-minute window fetched at thisUpdate: refresh after 30 s.
        XCTAssertEqual(OCSPSchedule.refreshAfterSuccess(now: now, thisUpdate: now, nextUpdate: now + 60), now + 30)
        // A response already 20 s old with a 100 s window: halfway is 30 s from now.
        XCTAssertEqual(
            OCSPSchedule.refreshAfterSuccess(now: now, thisUpdate: now - 20, nextUpdate: now + 80),
            now + 30
        )
    }

    func testRefreshAtMostHourlyAndNeverSoonerThanTheMinimum() {
        // A 7-day window (typical of public CAs): halfway would be 3.5 days; capped at an hour.
        XCTAssertEqual(
            OCSPSchedule.refreshAfterSuccess(now: now, thisUpdate: now, nextUpdate: now + 7 * 86400),
            now + OCSPSchedule.maximumInterval
        )
        // Past halfway already (a stale response served by a CDN): not a tight loop.
        XCTAssertEqual(
            OCSPSchedule.refreshAfterSuccess(now: now, thisUpdate: now - 100, nextUpdate: now + 10),
            now + OCSPSchedule.minimumInterval
        )
        // No nextUpdate: treated as valid for `validityWithoutNextUpdate` after thisUpdate.
        XCTAssertEqual(
            OCSPSchedule.refreshAfterSuccess(now: now, thisUpdate: now, nextUpdate: nil),
            now + OCSPSchedule.validityWithoutNextUpdate / 2
        )
    }

    func testBackoffDoublesUpToTheCap() {
        let waits = (1...10).map { OCSPSchedule.retryAfterFailure(now: now, failures: $0, heldExpiry: nil) - now }
        XCTAssertEqual(waits, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600])
        // A huge failure count does not overflow.
        XCTAssertEqual(OCSPSchedule.retryAfterFailure(now: now, failures: 10_000, heldExpiry: nil), now + 600)
    }

    func testBackoffTriesAgainBeforeAHeldStapleExpires() {
        // 8th failure would wait 600 s, but the staple held expires in 100 s: try again halfway there.
        XCTAssertEqual(OCSPSchedule.retryAfterFailure(now: now, failures: 8, heldExpiry: now + 100), now + 50)
        // Close to expiry: no faster than the base interval.
        XCTAssertEqual(OCSPSchedule.retryAfterFailure(now: now, failures: 3, heldExpiry: now + 4), now + 5)
        // An already expired staple does not shorten the backoff.
        XCTAssertEqual(OCSPSchedule.retryAfterFailure(now: now, failures: 3, heldExpiry: now - 1), now + 20)
        // A held staple far away leaves the normal backoff.
        XCTAssertEqual(OCSPSchedule.retryAfterFailure(now: now, failures: 1, heldExpiry: now + 86400), now + 5)
    }

    func testNeverStapleAnExpiredResponse() {
        XCTAssertTrue(OCSPSchedule.isStapleable(expiry: now + 1, now: now))
        XCTAssertFalse(OCSPSchedule.isStapleable(expiry: now, now: now))
        XCTAssertFalse(OCSPSchedule.isStapleable(expiry: now - 3600, now: now))
        XCTAssertEqual(OCSPSchedule.expiry(thisUpdate: now, nextUpdate: now + 60), now + 60)
        XCTAssertEqual(
            OCSPSchedule.expiry(thisUpdate: now, nextUpdate: nil),
            now + OCSPSchedule.validityWithoutNextUpdate
        )
    }
}
