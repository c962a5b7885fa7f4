import XCTest

@testable import ProxyUpstreams

final class HealthStateTests: XCTestCase {
    func testPassiveEjectionTable() {
        typealias P = PassiveHealth
        // (state, event, now, maxFails, expected state, ejected)
        let cases: [(P, P.Event, UInt64, Int, P, Bool, String)] = [
            (P(), .failure, 100, 3, P(failures: 1), false, "first failure counts"),
            (P(failures: 1), .failure, 100, 3, P(failures: 2), false, "second"),
            (P(failures: 2), .failure, 100, 3, P(failures: 3, ejectedUntil: 1100), true, "third ejects"),
            (
                P(failures: 3, ejectedUntil: 1100), .failure, 500, 3, P(failures: 4, ejectedUntil: 1100), false,
                "in-flight failure while ejected neither extends nor re-ejects"
            ),
            (
                P(failures: 4, ejectedUntil: 1100), .failure, 1100, 3, P(failures: 5, ejectedUntil: 2100), true,
                "after the timeout one failure ejects again"
            ),
            (P(failures: 4, ejectedUntil: 1100), .success, 1200, 3, P(), false, "success clears"),
            (P(failures: 2), .success, 100, 3, P(), false, "success resets the count"),
            (P(), .failure, 100, 1, P(failures: 1, ejectedUntil: 1100), true, "max_fails = 1"),
            (P(failures: 9), .failure, 100, 0, P(failures: 10), false, "max_fails = 0: counted, never ejected"),
            (P(failures: 0xFFFF), .failure, 100, 0, P(failures: 0xFFFF), false, "count saturates"),
        ]
        for (state, event, now, maxFails, expected, ejected, why) in cases {
            let (next, didEject) = state.next(event, now: now, maxFails: maxFails, failTimeout: 1000)
            XCTAssertEqual(next, expected, why)
            XCTAssertEqual(didEject, ejected, why)
        }
    }

    func testPassiveIsEjected() {
        let s = PassiveHealth(failures: 3, ejectedUntil: 1000)
        XCTAssertTrue(s.isEjected(now: 999))
        XCTAssertFalse(s.isEjected(now: 1000))
        XCTAssertFalse(PassiveHealth().isEjected(now: 0))
    }

    func testPassivePacking() {
        for s in [
            PassiveHealth(), PassiveHealth(failures: 0xFFFF, ejectedUntil: 0xFFFF_FFFF_FFFF),
            PassiveHealth(failures: 7, ejectedUntil: 123_456),
        ] {
            XCTAssertEqual(PassiveHealth(packed: s.packed), s)
        }
    }

    func testActiveRiseFall() {
        // rise 2, fall 3, starting up with a clean streak.
        var s = ActiveHealth(isUp: true, streak: 0)
        func step(_ ok: Bool) -> Bool {
            let (n, changed) = s.next(
                ok: ok,
                reason: ok ? .none : .connectRefused,
                status: ok ? 200 : 0,
                rise: 2,
                fall: 3
            )
            s = n
            return changed
        }
        XCTAssertFalse(step(false))
        XCTAssertFalse(step(false))
        XCTAssertFalse(step(true), "a good check resets the streak")
        XCTAssertFalse(step(false))
        XCTAssertFalse(step(false))
        XCTAssertTrue(step(false), "third consecutive failure: down")
        XCTAssertFalse(s.isUp)
        XCTAssertEqual(s.reason, .connectRefused)
        XCTAssertFalse(step(false))
        XCTAssertFalse(step(true))
        XCTAssertFalse(step(false), "a failure while down resets the rise streak")
        XCTAssertFalse(step(true))
        XCTAssertTrue(step(true), "second consecutive good check: up")
        XCTAssertTrue(s.isUp)
        XCTAssertEqual(s.reason, .none)
    }

    func testActiveInitialStateIsOneFailureFromDown() {
        let (n, changed) = ActiveHealth.initial(fall: 3).next(
            ok: false,
            reason: .connectTimeout,
            status: 0,
            rise: 2,
            fall: 3
        )
        XCTAssertTrue(changed)
        XCTAssertFalse(n.isUp)
        let (good, _) = ActiveHealth.initial(fall: 3).next(ok: true, reason: .none, status: 200, rise: 2, fall: 3)
        XCTAssertEqual(good, ActiveHealth(isUp: true, streak: 0, lastStatus: 200))
        XCTAssertEqual(ActiveHealth.initial(fall: 1), ActiveHealth(isUp: true, streak: 0))
    }

    func testRiseAndFallOfOne() {
        let (down, c1) = ActiveHealth(isUp: true, streak: 0).next(
            ok: false,
            reason: .unexpectedStatus,
            status: 503,
            rise: 1,
            fall: 1
        )
        XCTAssertTrue(c1)
        XCTAssertEqual(down, ActiveHealth(isUp: false, streak: 0, reason: .unexpectedStatus, lastStatus: 503))
        let (up, c2) = down.next(ok: true, reason: .none, status: 200, rise: 1, fall: 1)
        XCTAssertTrue(c2)
        XCTAssertTrue(up.isUp)
    }

    func testActivePacking() {
        for s in [
            ActiveHealth(isUp: true, streak: 0),
            ActiveHealth(isUp: false, streak: 99, reason: .unexpectedStatus, lastStatus: 503),
            ActiveHealth(isUp: true, streak: 2, reason: .responseTimeout),
        ] {
            XCTAssertEqual(ActiveHealth(packed: s.packed), s)
        }
    }
}
