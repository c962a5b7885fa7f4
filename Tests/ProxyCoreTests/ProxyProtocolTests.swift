import XCTest

@testable import ProxyCore

final class ProxyProtocolTests: XCTestCase {
    func parse(_ bytes: [UInt8]) -> ProxyProtocol.Result { bytes.withUnsafeBytes { ProxyProtocol.parse($0) } }
    func parse(_ text: String) -> ProxyProtocol.Result { parse(Array(text.utf8)) }

    func v2(command: UInt8 = 1, family: UInt8, body: [UInt8], version: UInt8 = 2) -> [UInt8] {
        ProxyProtocol.v2Signature + [version << 4 | command, family, UInt8(body.count >> 8), UInt8(body.count & 0xFF)]
            + body
    }

    func testV1TCP4AndTheBytesAfterAreNotPartOfIt() {
        let line = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n"
        XCTAssertEqual(
            parse(line + "\u{16}\u{03}\u{01}"),
            .header(length: line.utf8.count, version: 1, source: .init(address: [192, 0, 2, 7], port: 56324))
        )
    }

    func testV1TCP6() {
        let line = "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"
        guard case .header(let n, 1, let src?) = parse(line) else { return XCTFail() }
        XCTAssertEqual(n, line.utf8.count)
        XCTAssertEqual(src.host, "2001:db8::1")
        XCTAssertEqual(src.port, 1)
    }

    func testV1Unknown() {
        XCTAssertEqual(parse("PROXY UNKNOWN\r\n"), .header(length: 15, version: 1, source: nil))
        let line = "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"
        XCTAssertEqual(parse(line + "GET"), .header(length: line.utf8.count, version: 1, source: nil))
    }

    func testV1EveryPrefixNeedsMore() {
        let line = Array("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n".utf8)
        for n in 0..<line.count { XCTAssertEqual(parse(Array(line[..<n])), .needMore, "prefix \(n)") }
    }

    func testV1Malformed() {
        let bad = [
            "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\n",  // LF without CR
            "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\rX",  // CR without LF
            "PROXY  TCP4 192.0.2.7 198.51.100.1 56324 443\r\n",  // double space
            "PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n",  // 4 fields
            "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443 9\r\n",  // 6 fields
            "PROXY TCP4 192.0.2.256 198.51.100.1 56324 443\r\n",  // bad octet
            "PROXY TCP4 2001:db8::1 198.51.100.1 56324 443\r\n",  // v6 address as TCP4
            "PROXY TCP6 192.0.2.7 2001:db8::2 1 2\r\n",  // v4 address as TCP6
            "PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n",  // port too big
            "PROXY TCP4 192.0.2.7 198.51.100.1 0443 443\r\n",  // leading zero
            "PROXY TCP4 192.0.2.7 198.51.100.1 -1 443\r\n",
            "PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
            "PROXY tcp4 192.0.2.7 198.51.100.1 1 2\r\n",
            "PROXX TCP4",
            "GET / HTTP/1.1\r\n",
            "\u{16}\u{03}\u{01}\u{02}\u{00}",  // a TLS ClientHello without the header
        ]
        for b in bad {
            guard case .invalid = parse(b) else { return XCTFail("accepted \(b.debugDescription): \(parse(b))") }
        }
        // No CRLF within 107 bytes: refused, not buffered.
        guard case .invalid = parse("PROXY TCP4 " + String(repeating: "1", count: 120)) else { return XCTFail() }
    }

    func testV2IPv4WithTLVs() {
        let body: [UInt8] = [10, 1, 2, 3, 10, 0, 0, 1, 0xC3, 0x50, 0x01, 0xBB] + [0x01, 0x00, 0x02, 0x68, 0x32]
        let h = v2(family: 0x11, body: body)
        XCTAssertEqual(
            parse(h + [0x16, 0x03]),
            .header(length: h.count, version: 2, source: .init(address: [10, 1, 2, 3], port: 50000))
        )
        for n in 0..<h.count { XCTAssertEqual(parse(Array(h[..<n])), .needMore, "prefix \(n)") }
    }

    func testV2IPv6() {
        var body = [UInt8](repeating: 0, count: 36)
        body[0] = 0x20
        body[1] = 0x01
        body[15] = 9
        body[32] = 0x12
        body[33] = 0x34
        guard case .header(let n, 2, let src?) = parse(v2(family: 0x21, body: body)) else { return XCTFail() }
        XCTAssertEqual(n, 52)
        XCTAssertEqual(src.host, "2001::9")
        XCTAssertEqual(src.port, 0x1234)
    }

    func testV2LocalAndUnspecKeepTheSocketAddress() {
        XCTAssertEqual(parse(v2(command: 0, family: 0x00, body: [])), .header(length: 16, version: 2, source: nil))
        XCTAssertEqual(
            parse(v2(command: 0, family: 0x11, body: [UInt8](repeating: 1, count: 12))),
            .header(length: 28, version: 2, source: nil)
        )
        XCTAssertEqual(parse(v2(family: 0x00, body: [])), .header(length: 16, version: 2, source: nil))
        XCTAssertEqual(
            parse(v2(family: 0x31, body: [UInt8](repeating: 0, count: 216))),
            .header(length: 232, version: 2, source: nil)
        )
    }

    func testV2Malformed() {
        var sig = ProxyProtocol.v2Signature
        sig[7] = 0x52
        let bad: [[UInt8]] = [
            sig + [0x21, 0x11, 0, 12] + [UInt8](repeating: 0, count: 12),  // wrong signature
            v2(family: 0x11, body: [UInt8](repeating: 0, count: 12), version: 1),  // version 1 in a v2 frame
            v2(command: 2, family: 0x11, body: [UInt8](repeating: 0, count: 12)),  // unknown command
            v2(family: 0x11, body: [UInt8](repeating: 0, count: 11)),  // short IPv4 block
            v2(family: 0x21, body: [UInt8](repeating: 0, count: 35)),  // short IPv6 block
            v2(family: 0x41, body: [UInt8](repeating: 0, count: 12)),  // unknown family
            v2(family: 0x13, body: [UInt8](repeating: 0, count: 12)),  // unknown transport
            ProxyProtocol.v2Signature + [0x21, 0x11, 0x04, 0x01],  // 1,025 + 16 bytes: over the bound
        ]
        for b in bad {
            guard case .invalid = parse(b) else { return XCTFail("accepted \(b): \(parse(b))") }
        }
    }

    func testCIDR() {
        let v4 = CIDRBlock("10.1.0.0/16")!
        XCTAssertTrue(v4.contains([10, 1, 200, 3]))
        XCTAssertFalse(v4.contains([10, 2, 0, 1]))
        XCTAssertTrue(v4.contains([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 1, 0, 1]), "IPv4-mapped")
        XCTAssertEqual(CIDRBlock("10.1.2.3/16")?.description, "10.1.0.0/16", "host bits ignored")
        XCTAssertTrue(CIDRBlock("127.0.0.1")!.contains([127, 0, 0, 1]))
        XCTAssertFalse(CIDRBlock("127.0.0.1")!.contains([127, 0, 0, 2]))
        XCTAssertTrue(CIDRBlock("0.0.0.0/0")!.contains([8, 8, 8, 8]))
        XCTAssertTrue(CIDRBlock("10.0.0.0/9")!.contains([10, 127, 0, 0]))
        XCTAssertFalse(CIDRBlock("10.0.0.0/9")!.contains([10, 128, 0, 0]))
        let v6 = CIDRBlock("2001:db8::/32")!
        XCTAssertTrue(v6.contains([0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 7, count: 12)))
        XCTAssertFalse(v6.contains([10, 1, 0, 1]))
        for bad in ["10.0.0.0/33", "10.0.0/8", "::1/129", "x", "10.0.0.0/", "10.0.0.0/+8", "10.0.0.0/8/8", ""] {
            XCTAssertNil(CIDRBlock(bad), bad)
        }
    }
}
