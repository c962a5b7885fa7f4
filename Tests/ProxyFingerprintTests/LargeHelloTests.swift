import XCTest

@testable import ProxyFingerprint

/// Hellos over 64 KiB that OpenSSL negotiates must parse (issue 15, item 12): the fingerprint parser used to cap the
/// handshake at 65,536 bytes and the proxy refused them with decode_error. Each case mirrors a tlsfuzzer script that
/// sends one; the integration test `test_tls_conformance.py` runs the same shapes through real handshakes.
final class LargeHelloTests: XCTestCase {
    private func u16(_ v: Int) -> [UInt8] { [UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
    /// RFC 8701 GREASE values (0x0a0a, 0x1a1a, ... 0xfafa), which the fingerprints leave out.
    private func isGREASE(_ v: UInt16) -> Bool { v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff }

    /// tlsfuzzer `test-client-hello-max-size.py` "max client hello": 32,767 cipher suites, a 32-byte session ID,
    /// 255 compression methods and an ALPN list filling the extensions block (~131 KB, OpenSSL's maximum).
    func testMaxSizeClientHello() throws {
        var ciphers = (0..<32_765).map { UInt16(0x0100 + $0) }
        ciphers += [0x002f, 0x00ff]
        var protocols: [UInt8] = []
        for _ in 0..<255 { protocols += [255] + [UInt8](repeating: 0x41, count: 255) }
        protocols += [239] + [UInt8](repeating: 0x42, count: 239)
        protocols += [8] + Array("http/1.1".utf8)
        let alpn = ClientHello.Extension(type: 16, body: u16(protocols.count) + protocols)
        var hello = ClientHello(legacyVersion: 0x0303, cipherSuites: ciphers, extensions: [alpn])
        hello.sessionIDLength = 32
        hello.compressionMethods = (0..<255).map { UInt8($0) }
        let raw = hello.serialize()
        XCTAssertGreaterThan(raw.count, 131_000)
        XCTAssertLessThanOrEqual(raw.count - 4, ClientHello.maxHandshakeLength)
        let parsed = try ClientHello.parse(handshake: raw)
        XCTAssertEqual(parsed.cipherSuites.count, 32_767)
        XCTAssertEqual(parsed.compressionMethods.count, 255)
        XCTAssertEqual(parsed.alpn.count, 257)
        XCTAssertEqual(parsed.alpn.last, "http/1.1")
        // The record form, fragmented as a client must (≤ 2^14 per record), parses identically, and the
        // fingerprints are computed over every value.
        let viaRecords = try ClientHello.parse(records: parsed.serializeRecords(version: 0x0301))
        XCTAssertEqual(viaRecords.cipherSuites, parsed.cipherSuites)
        XCTAssertTrue(parsed.ja4Fingerprint.hasPrefix("t12i9901"), parsed.ja4Fingerprint)
        XCTAssertEqual(
            parsed.ja3.string.split(separator: ",")[1].split(separator: "-").count,
            ciphers.filter { !isGREASE($0) }.count
        )
    }

    /// tlsfuzzer `test-extensions.py` "16383 extensions": 16,382 empty extensions from type 90 up plus
    /// renegotiation_info, a 65,533-byte extensions block.
    func testSixteenThousandExtensions() throws {
        var exts = (0..<16_382).map { ClientHello.Extension(type: UInt16(90 + $0), body: []) }
        exts.append(.init(type: 0xff01, body: [0]))
        let raw = ClientHello(legacyVersion: 0x0303, cipherSuites: [0x002f], extensions: exts).serialize()
        XCTAssertGreaterThan(raw.count, 65_536)
        let parsed = try ClientHello.parse(handshake: raw)
        XCTAssertEqual(parsed.extensions.count, 16_383)
        XCTAssertEqual(parsed.features.extensions.count, exts.filter { !isGREASE($0.type) }.count)
        XCTAssertTrue(parsed.features.renegotiationInfoExtPresent)
        // Duplicates are still found at this count (the set-based check above 32 extensions).
        var dup = exts
        dup[16_000] = .init(type: 95, body: [])
        let dupRaw = ClientHello(legacyVersion: 0x0303, cipherSuites: [0x002f], extensions: dup).serialize()
        guard case .duplicateExtension(95, _)? = assertParseError(try ClientHello.parse(handshake: dupRaw)) else {
            return XCTFail("duplicate not reported")
        }
    }

    /// tlsfuzzer `test-signature-algorithms.py` "tolerance 32760 methods": a signature_algorithms list of 32,760
    /// entries (65,520 bytes) ending with one the server supports.
    func testThirtyTwoThousandSignatureAlgorithms() throws {
        var algs: [UInt8] = []
        for i in 0..<32_759 { algs += u16(0x0900 + i % 0x7000) }
        algs += u16(0x0403)
        let body = u16(algs.count) + algs
        let raw = ClientHello(
            legacyVersion: 0x0303,
            cipherSuites: [0xc02b],
            extensions: [.init(type: 13, body: body), .init(type: 10, body: [0, 2, 0, 23])]
        ).serialize()
        XCTAssertGreaterThan(raw.count, 65_536)
        let parsed = try ClientHello.parse(handshake: raw)
        XCTAssertEqual(parsed.signatureAlgorithms.count, 32_760)
        XCTAssertEqual(parsed.signatureAlgorithms.last, 0x0403)
    }

    /// What OpenSSL refuses is still refused, before anything is buffered: a declared length above its limit.
    func testAboveOpenSSLLimitIsRefused() {
        let n = ClientHello.maxHandshakeLength + 1
        XCTAssertEqual(
            assertParseError(
                try ClientHello.parse(records: [
                    22, 3, 1, 0, 4, 1, UInt8(n >> 16), UInt8(n >> 8 & 0xff), UInt8(n & 0xff),
                ])
            ),
            .oversized(what: .handshake, length: n, limit: ClientHello.maxHandshakeLength)
        )
    }
}
