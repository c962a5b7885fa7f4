import ProxyConfig
import XCTest

/// `[detector]` (issue #14): defaults, every key, ranges and unknown keys with file:line:column.
final class DetectorConfigTests: XCTestCase {
    func testDefaultsAndEveryKey() throws {
        XCTAssertEqual(ProxyConfiguration().detector.mode, .observe)
        let text = """
            [detector]
            mode = "quarantine"
            fingerprints = 500
            window = "30m"
            min_aborts = 4
            min_abort_percent = 80
            baseline_factor = 3
            min_prefixes = 2
            fallback_window = "10s"
            quarantine_ttl = "24h"
            max_quarantined = 7
            state_file = "state/detector.tsv"
            """
        let d = try ProxyConfiguration.parse(text: text, fileName: "t.toml", baseDirectory: "/etc/ep").detector
        XCTAssertEqual(d.mode, .quarantine)
        XCTAssertEqual(d.fingerprints, 500)
        XCTAssertEqual(d.window, .minutes(30))
        XCTAssertEqual(d.minAborts, 4)
        XCTAssertEqual(d.minAbortPercent, 80)
        XCTAssertEqual(d.baselineFactor, 3)
        XCTAssertEqual(d.minPrefixes, 2)
        XCTAssertEqual(d.fallbackWindow, .seconds(10))
        XCTAssertEqual(d.quarantineTTL, .hours(24))
        XCTAssertEqual(d.maxQuarantined, 7)
        XCTAssertEqual(d.stateFile, "/etc/ep/state/detector.tsv", "relative to the configuration file")
        XCTAssertNil(ProxyConfiguration().detector.stateFile)
    }

    func testErrorsArePositioned() {
        assertSingleError("[detector]\nmode = \"on\"\n", at: "2:1", "\"off\", \"observe\", \"quarantine\"")
        assertSingleError("[detector]\n\nmin_prefix = 3\n", at: "3:1", "unknown key \"min_prefix\" in [detector]")
        assertSingleError("[detector]\nmin_prefixes = 1\n", at: "2:1", "detector.min_prefixes must be between 2")
        assertSingleError("[detector]\nmin_abort_percent = 101\n", at: "2:1", "between 1 and 100")
        assertSingleError("[detector]\nwindow = \"1s\"\n", at: "2:1", "detector.window must be between")
        assertSingleError("[detector]\nstate_file = \"\"\n", at: "2:1", "detector.state_file must not be empty")
    }
}
