import Foundation
import XCTest

@testable import ProxyFingerprint

/// Real captured ClientHellos (SSL Labs captures of browsers, Java, OpenSSL, IE/Edge on Windows 7-10) shipped by
/// Debian's testssl.sh package.
final class TestsslClientSimulationTests: XCTestCase {
    static let path = "/etc/testssl/client-simulation.txt"

    func testEveryClientSimulationHelloParses() throws {
        guard FileManager.default.fileExists(atPath: Self.path) else {
            throw XCTSkip("\(Self.path) not installed (Debian package testssl.sh)")
        }
        let text = try String(contentsOfFile: Self.path, encoding: .utf8)
        var hellos: [String] = []
        for line in text.split(separator: "\n") {
            guard let start = line.range(of: "handshakebytes+=(\"") else { continue }
            let rest = line[start.upperBound...]
            hellos.append(String(rest.prefix { $0 != "\"" }))
        }
        XCTAssertGreaterThan(hellos.count, 100)
        var sslv2 = 0
        var tls13 = 0
        for (i, hex) in hellos.enumerated() {
            do {
                let hello = try ClientHello.parse(bytes: try ClientHello.fixtureHexBytes(hex, "handshakebytes"))
                if hello.isSSLv2Compatible { sslv2 += 1 }
                if hello.features.highestVersion == 0x0304 { tls13 += 1 }
                XCTAssertFalse(hello.cipherSuites.isEmpty, "hello \(i)")
                XCTAssertEqual(hello.ja4.fingerprint.count, 36, "hello \(i)")
                XCTAssertEqual(hello.ja3.md5.count, 32, "hello \(i)")
            } catch {
                XCTFail("client-simulation hello \(i) (\(hex.prefix(24))...): \(error)")
            }
        }
        XCTAssertEqual(sslv2, 2)
        XCTAssertGreaterThan(tls13, 0)
    }

    /// The SSLv2-compatible form: specs with a zero first byte become TLS suites; truncation always throws.
    func testSSLv2CompatibleHello() throws {
        // CLIENT-HELLO, version 3.1, three specs (one SSLv2-only), no session id, 16-byte challenge.
        var body: [UInt8] = [1, 3, 1, 0, 9, 0, 0, 0, 16, 0x07, 0x00, 0xc0, 0x00, 0x00, 0x2f, 0x00, 0x00, 0xff]
        body += [UInt8](repeating: 0xab, count: 16)
        let msg = [0x80 | UInt8(body.count >> 8), UInt8(body.count & 0xff)] + body
        let h = try ClientHello.parse(bytes: msg)
        XCTAssertTrue(h.isSSLv2Compatible)
        XCTAssertEqual(h.legacyVersion, 0x0301)
        XCTAssertEqual(h.cipherSuites, [0x002f, 0x00ff])
        XCTAssertEqual(h.ja3.string, "769,47-255,,,")
        for n in 1..<msg.count { assertParseError(try ClientHello.parse(bytes: Array(msg[0..<n])), "cut at \(n)") }
        var bad = msg
        bad[6] = 8  // spec length not a multiple of 3
        if case .badVectorLength(.sslv2Hello, _, 8)? = assertParseError(try ClientHello.parse(bytes: bad)) {
        } else {
            XCTFail()
        }
    }
}
