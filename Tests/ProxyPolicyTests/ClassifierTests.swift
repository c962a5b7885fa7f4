import Foundation
import XCTest

@testable import ProxyFingerprint
@testable import ProxyPolicy

/// `edgeproxy classify` support: input auto-detection, JSON shape, errors.
final class ClassifierTests: XCTestCase {
    private var set: CompiledPolicySet!

    override func setUpWithError() throws { set = try loadShippedPolicies().set }

    private func fixture(_ name: String) throws -> (data: [UInt8], json: [String: Any]) {
        let data = try Data(contentsOf: TestPaths.fixtures.appendingPathComponent(name + ".json"))
        return ([UInt8](data), try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any]))
    }

    private func classify(_ input: [UInt8]) throws -> [String: Any] {
        let out = try Classifier.classify(input: input, policies: set)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], out)
    }

    func testHexHandshakeRecordBinaryAndFixtureAgree() throws {
        let (data, json) = try fixture("schannel-win10-tls12-nopss")
        let rawHex = try XCTUnwrap(json["raw_hex"] as? String)
        let recordHex = try XCTUnwrap(json["raw_record_hex"] as? String)
        // Colon-separated, wrapped hex with a 0x prefix.
        let colons =
            "0x"
            + stride(from: 0, to: rawHex.count, by: 2).map { i -> String in
                let s = rawHex.index(rawHex.startIndex, offsetBy: i)
                return String(rawHex[s..<rawHex.index(s, offsetBy: 2)])
            }.enumerated().map { $0.offset % 16 == 15 ? $0.element + "\n" : $0.element + ":" }.joined()
        let inputs: [(String, [UInt8])] = [
            ("hex handshake", Array(rawHex.utf8)), ("hex record with spaces", Array(("  " + recordHex + "\n").utf8)),
            ("binary record", try hexBytes(recordHex)), ("binary handshake", try hexBytes(rawHex)),
            ("colon hex", Array(colons.utf8)), ("fixture JSON", data),
        ]
        for (what, input) in inputs {
            let o = try classify(input)
            XCTAssertEqual(
                Set(o.keys),
                ["ja3", "ja3_hash", "ja4", "ja4_r", "ja4_o", "features", "policy", "actions"],
                what
            )
            XCTAssertEqual(o["ja4"] as? String, json["ja4"] as? String, what)
            XCTAssertEqual(o["ja3_hash"] as? String, json["ja3_md5"] as? String, what)
            XCTAssertEqual(o["policy"] as? String, "schannel", what)
            let actions = try XCTUnwrap(o["actions"] as? [String: Any], what)
            XCTAssertEqual(actions["stale_ticket"] as? String, "full-handshake", what)
            XCTAssertEqual(actions["tag"] as? String, "schannel", what)
            let f = try XCTUnwrap(o["features"] as? [String: Any], what)
            XCTAssertEqual(f["legacy_version"] as? String, "0x0303", what)
            XCTAssertEqual((f["cipher_suites"] as? [String])?.first, "0xc02c", what)
            XCTAssertEqual((f["extension_names"] as? [Any])?.last as? String, "renegotiation_info", what)
            XCTAssertEqual(f["grease"] as? Bool, false, what)
        }
    }

    func testNonSChannelHelloHasNullPolicy() throws {
        let (data, _) = try fixture("chrome-110-desktop")
        let o = try classify(data)
        XCTAssertTrue(o["policy"] is NSNull)
        XCTAssertEqual((o["actions"] as? [String: Any])?.count, 0)
        XCTAssertEqual(o["ja4"] as? String, "t13d1516h2_8daaf6152771_e5627efa2ab1")
        XCTAssertEqual((o["features"] as? [String: Any])?["grease"] as? Bool, true)
    }

    func testObserveMatchIsReported() throws {
        let s = try loadPolicies(
            """
            [[policy]]
            name = "watch-tls13"
            priority = 1
            mode = "observe"
            match = { highest_version = "1.3" }
            actions = { tickets = "off", tag = "t13" }
            """
        ).set
        let (data, _) = try fixture("chrome-110-desktop")
        let out = try Classifier.classify(input: data, policies: s)
        XCTAssertTrue(
            out.hasSuffix(
                #""policy":"watch-tls13","actions":{"mode":"observe","would_apply":{"tickets":"off","tag":"t13"}}}"#
            ),
            out
        )
    }

    func testMalformedInputThrowsReadableErrors() {
        let cases: [([UInt8], String)] = [
            ([], "empty input"),
            (Array("   \n".utf8), "empty input"),
            (Array("16 03 01 zz".utf8), "invalid character 'z' at offset 9"),
            (Array("160301".utf8) + [0x34], "odd number of hex digits"),
            (Array("17030100050102030405".utf8), "not a ClientHello"),
            ([0x16, 0x03, 0x01, 0x00, 0x40, 0x01], "not a ClientHello"),
            (Array("{\"cipher_suites\": 3}".utf8), "invalid fixture JSON"),
        ]
        for (input, expected) in cases {
            XCTAssertThrowsError(try Classifier.classify(input: input, policies: set)) { e in
                XCTAssertTrue("\(e)".contains(expected), "\(e) should mention \(expected)")
            }
        }
    }

    func testJSONEscaping() {
        XCTAssertEqual(JSON.string("a\"b\\c\n\u{1}é").render(), #""a\"b\\c\n\u0001é""#)
    }
}
