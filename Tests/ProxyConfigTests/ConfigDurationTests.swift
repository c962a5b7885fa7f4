import XCTest

@testable import ProxyConfig

final class ConfigDurationTests: XCTestCase {
    func testAcceptedSpellings() throws {
        let table: [(String, Int64)] = [
            ("500ms", 500), ("2s", 2000), ("1m", 60_000), ("1h", 3_600_000), ("1h30m", 5_400_000),
            ("18h", 64_800_000), ("30", 30_000), ("0", 0), ("0s", 0), ("1m30s", 90_000), ("2s500ms", 2500),
            ("1h2m3s4ms", 3_723_004), (" 5s ", 5000), ("90m", 5_400_000),
        ]
        for (text, ms) in table {
            XCTAssertEqual(try ConfigDuration(parsing: text).milliseconds, ms, text)
        }
    }

    func testRejectedSpellingsSayWhy() {
        let table: [(String, String)] = [
            ("-5s", "cannot be negative"), ("-1", "cannot be negative"), ("", "empty duration"),
            ("abc", "invalid duration"), ("5x", "unknown unit \"x\""), ("1.5s", "fractions are not supported"),
            ("30m1h", "largest first"), ("1s1s", "largest first"), ("5 s", "missing unit"), ("h", "invalid duration"),
            ("99999999999999999999", "too large"), ("9999999999999999h", "too large"), ("1d", "unknown unit \"d\""),
        ]
        for (text, fragment) in table {
            XCTAssertThrowsError(try ConfigDuration(parsing: text), text) { error in
                let message = (error as? ConfigDuration.ParseError)?.message ?? ""
                XCTAssertTrue(message.contains(fragment), "\(text): \(message)")
            }
        }
        XCTAssertThrowsError(try ConfigDuration(seconds: -3))
    }

    func testDescriptionRoundTrips() throws {
        for ms: Int64 in [0, 1, 500, 1000, 61_000, 5_400_000, 3_723_004, 64_800_000] {
            let d = ConfigDuration(milliseconds: ms)
            XCTAssertEqual(try ConfigDuration(parsing: d.description), d, d.description)
        }
        XCTAssertEqual(ConfigDuration.hours(1).description, "1h")
        XCTAssertEqual(ConfigDuration.milliseconds(5_400_000).description, "1h30m")
        XCTAssertEqual(ConfigDuration.seconds(2).duration, .seconds(2))
        XCTAssertLessThan(ConfigDuration.minutes(59), ConfigDuration.hours(1))
    }
}
