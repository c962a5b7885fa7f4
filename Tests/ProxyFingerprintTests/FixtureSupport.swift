import Foundation
import XCTest

@testable import ProxyFingerprint

/// One ClientHello fixture file (Tests/Fixtures/clienthellos, located from this file so `swift test` works from
/// any directory).
struct HelloFixture {
    var name: String
    var bytes: [UInt8]
    var json: [String: Any]

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/clienthellos")

    /// Every fixture that describes a ClientHello (the msdocs cipher-order file does not).
    static func all() throws -> [HelloFixture] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".json") }
            .sorted()
        var out: [HelloFixture] = []
        for n in names {
            let data = try Data(contentsOf: directory.appendingPathComponent(n))
            let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any], n)
            if json["cipher_suites"] == nil { continue }
            out.append(HelloFixture(name: n, bytes: [UInt8](data), json: json))
        }
        return out
    }

    func string(_ key: String) -> String? {
        guard let s = json[key] as? String, s != "-", !s.isEmpty else { return nil }
        return s
    }

    func hex(_ key: String) throws -> [UInt8]? {
        try string(key).map { try ClientHello.fixtureHexBytes($0, key) }
    }

    /// The fixture's raw handshake message, if it has one.
    static func raw(_ name: String) throws -> [UInt8] {
        let f = try XCTUnwrap(try all().first { $0.name == name + ".json" }, name)
        return try XCTUnwrap(try f.hex("raw_hex"), name)
    }
}

/// Asserts `body` throws a ClientHelloParseError (and returns it).
@discardableResult
func assertParseError(
    _ body: @autoclosure () throws(ClientHelloParseError) -> ClientHello,
    _ message: String = "",
    file: StaticString = #filePath,
    line: UInt = #line
) -> ClientHelloParseError? {
    do {
        let hello = try body()
        XCTFail(
            "expected a parse error, got a hello with \(hello.cipherSuites.count) suites \(message)",
            file: file,
            line: line
        )
        return nil
    } catch {
        XCTAssertFalse(error.description.isEmpty, file: file, line: line)
        return error
    }
}
