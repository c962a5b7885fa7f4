import ProxyTLS
import XCTest

/// The ALPN decision (issue 15, item 11): RFC 7301 §3.2 — no common protocol is a fatal `no_application_protocol`
/// alert unless the lenient mode is configured. The live handshake is covered by `test_tls_conformance.py`.
final class ALPNSelectionTests: XCTestCase {
    /// A ProtocolNameList body (without its own 2-byte length), as OpenSSL hands it to the callback.
    private func list(_ names: [String]) -> [UInt8] {
        names.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
    }

    private func choose(_ offered: [String], _ prefs: [String], strict: Bool = true) -> (ALPNSelection, String?) {
        let bytes = list(offered)
        return bytes.withUnsafeBytes { b in
            let c = ALPNSelection.choose(offered: b, preferences: prefs.map { Array($0.utf8) }, strict: strict)
            if case .select(let o, let l) = c {
                return (c, String(decoding: b[o..<(o + l)], as: UTF8.self))
            }
            return (c, nil)
        }
    }

    func testServerPreferenceOrderWins() {
        XCTAssertEqual(choose(["http/1.1", "h2"], ["h2", "http/1.1"]).1, "h2")
        XCTAssertEqual(choose(["http/1.1", "h2"], ["http/1.1", "h2"]).1, "http/1.1")
        XCTAssertEqual(choose(["spdy/3", "foo", "http/1.1"], ["h2", "http/1.1"]).1, "http/1.1")
        XCTAssertEqual(choose(["http/1.0"], ["h2", "http/1.1", "http/1.0"]).1, "http/1.0")
    }

    func testNoOverlapIsRejectedWhenStrict() {
        XCTAssertEqual(choose(["spdy/3", "foo"], ["h2", "http/1.1"]).0, .reject)
        XCTAssertEqual(choose(["h2"], ["http/1.1"]).0, .reject)
        // Prefixes and case differences are not matches.
        XCTAssertEqual(choose(["http/1", "HTTP/1.1", "h2c"], ["h2", "http/1.1"]).0, .reject)
    }

    func testNoOverlapContinuesWhenLenient() {
        XCTAssertEqual(choose(["spdy/3", "foo"], ["h2", "http/1.1"], strict: false).0, .noOverlap)
        XCTAssertEqual(choose(["http/1.1"], ["h2", "http/1.1"], strict: false).1, "http/1.1")
    }

    func testALPNOffNeverRejects() {
        XCTAssertEqual(choose(["foo"], [], strict: true).0, .noOverlap)
        XCTAssertEqual(choose(["h2"], [], strict: true).0, .noOverlap)
    }

    func testMalformedListNeverReadsPastIt() {
        // A name length running past the end, and a zero-length name: no match, no out-of-bounds read.
        for bytes: [UInt8] in [[9, 0x68, 0x32], [0, 2, 0x68, 0x32], [], [2]] {
            bytes.withUnsafeBytes { b in
                XCTAssertEqual(ALPNSelection.choose(offered: b, preferences: [Array("h2".utf8)], strict: true), .reject)
            }
        }
    }

    func testLongListFindsLastName() {
        let offered = (0..<255).map { _ in String(repeating: "A", count: 255) } + ["http/1.1"]
        let (c, name) = choose(offered, ["h2", "http/1.1"])
        XCTAssertEqual(name, "http/1.1")
        XCTAssertEqual(c, .select(offset: 255 * 256 + 1, length: 8))
    }
}
