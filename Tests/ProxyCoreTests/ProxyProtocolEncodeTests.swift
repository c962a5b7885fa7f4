import XCTest

@testable import ProxyCore

/// The sending side, checked against the bytes of HAProxy's spec and against our own parser (a header we send must
/// be one we would accept, naming the same client).
final class ProxyProtocolEncodeTests: XCTestCase {
    let v4 = ProxyProtocol.Source(address: [192, 0, 2, 7], port: 56324)
    let v4dst = ProxyProtocol.Source(address: [198, 51, 100, 1], port: 443)
    let v6 = ProxyProtocol.Source(address: [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [1], port: 1)

    func parse(_ bytes: [UInt8]) -> ProxyProtocol.Result { bytes.withUnsafeBytes { ProxyProtocol.parse($0) } }

    func testV1TCP4IsTheSpecLine() {
        let h = ProxyProtocol.encodeV1(source: v4, destination: v4dst)
        XCTAssertEqual(String(decoding: h, as: UTF8.self), "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n")
        XCTAssertEqual(parse(h + [0x16]), .header(length: h.count, version: 1, source: v4))
    }

    func testV1TCP6AndMixedFamiliesAreMapped() {
        let h = ProxyProtocol.encodeV1(source: v4, destination: v6)
        XCTAssertEqual(
            String(decoding: h, as: UTF8.self),
            "PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 56324 1\r\n"
        )
        guard case .header(h.count, 1, let src?) = parse(h) else { return XCTFail("\(parse(h))") }
        XCTAssertEqual(src.host, "::ffff:192.0.2.7")
    }

    func testV1UnknownWhenAnAddressIsMissing() {
        XCTAssertEqual(
            String(decoding: ProxyProtocol.encodeV1(source: nil, destination: v4dst), as: UTF8.self),
            "PROXY UNKNOWN\r\n"
        )
        XCTAssertEqual(ProxyProtocol.encodeV1(source: v4, destination: nil), Array("PROXY UNKNOWN\r\n".utf8))
        XCTAssertEqual(
            parse(ProxyProtocol.encodeV1(source: nil, destination: nil)),
            .header(length: 15, version: 1, source: nil)
        )
    }

    func testV1LongestFitsTheSpecBound() {
        let a = ProxyProtocol.Source(address: [UInt8](repeating: 0xFF, count: 16), port: 65535)
        let h = ProxyProtocol.encodeV1(source: a, destination: a)
        XCTAssertLessThanOrEqual(h.count, ProxyProtocol.v1MaxLength)
        XCTAssertEqual(parse(h), .header(length: h.count, version: 1, source: a))
    }

    func testV2IPv4Bytes() {
        let h = ProxyProtocol.encodeV2(source: v4, destination: v4dst)
        XCTAssertEqual(
            h,
            ProxyProtocol.v2Signature + [0x21, 0x11, 0x00, 12] + [192, 0, 2, 7, 198, 51, 100, 1]
                + [0xDC, 0x04, 0x01, 0xBB]
        )
        XCTAssertEqual(parse(h + [0x16, 0x03]), .header(length: h.count, version: 2, source: v4))
    }

    func testV2IPv6() {
        let h = ProxyProtocol.encodeV2(source: v6, destination: v6)
        XCTAssertEqual(h[13], 0x21)
        XCTAssertEqual(h.count, 16 + 36)
        XCTAssertEqual(parse(h), .header(length: h.count, version: 2, source: v6))
    }

    func testV2LocalWhenUnknown() {
        let h = ProxyProtocol.encodeV2(source: nil, destination: nil)
        XCTAssertEqual(h, ProxyProtocol.v2Signature + [0x20, 0x00, 0x00, 0x00])
        XCTAssertEqual(parse(h), .header(length: 16, version: 2, source: nil))
    }

    /// TLVs walk as type, 2-byte length, value; every one EdgeProxy sends is there with its value.
    func testV2TLVs() {
        let tls = ProxyProtocol.TLSDetails(
            sni: "www.example.com",
            alpn: "h2",
            version: "TLSv1.3",
            cipher: "TLS_AES_128_GCM_SHA256",
            ja4: "t13d1516h2_8daaf6152771_02713d6af862"
        )
        let h = ProxyProtocol.encodeV2(source: v4, destination: v4dst, tls: tls)
        XCTAssertEqual(parse(h), .header(length: h.count, version: 2, source: v4))
        let payloadLength = Int(h[14]) << 8 | Int(h[15])
        XCTAssertEqual(h.count, 16 + payloadLength)
        func walk(_ bytes: ArraySlice<UInt8>) -> [UInt8: [UInt8]] {
            var out: [UInt8: [UInt8]] = [:]
            var i = bytes.startIndex
            while i < bytes.endIndex {
                XCTAssertLessThanOrEqual(i + 3, bytes.endIndex)
                let n = Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
                XCTAssertLessThanOrEqual(i + 3 + n, bytes.endIndex)
                out[bytes[i]] = Array(bytes[(i + 3)..<(i + 3 + n)])
                i += 3 + n
            }
            return out
        }
        let tlvs = walk(h[(16 + 12)...])
        XCTAssertEqual(tlvs[0x01], Array("h2".utf8))
        XCTAssertEqual(tlvs[0x02], Array("www.example.com".utf8))
        XCTAssertEqual(tlvs[0xE0], Array("t13d1516h2_8daaf6152771_02713d6af862".utf8))
        guard let ssl = tlvs[0x20] else { return XCTFail("no PP2_TYPE_SSL") }
        XCTAssertEqual(ssl.prefix(5), [0x01, 0, 0, 0, 0])
        let sub = walk(ssl[5...])
        XCTAssertEqual(sub[0x21], Array("TLSv1.3".utf8))
        XCTAssertEqual(sub[0x23], Array("TLS_AES_128_GCM_SHA256".utf8))
    }

    func testV2OnlyTheSelectedTLVs() {
        let tls = ProxyProtocol.TLSDetails(sni: "a.test", alpn: "h2", version: "TLSv1.3", cipher: "X", ja4: "j")
        let bare = ProxyProtocol.encodeV2(source: v4, destination: v4dst)
        XCTAssertEqual(ProxyProtocol.encodeV2(source: v4, destination: v4dst, tls: tls, tlvs: []), bare)
        let sniOnly = ProxyProtocol.encodeV2(source: v4, destination: v4dst, tls: tls, tlvs: [.authority])
        XCTAssertEqual(Array(sniOnly[(16 + 12)...]), [0x02, 0x00, 0x06] + Array("a.test".utf8))
        // Without TLVs the header fits nginx's 107-byte limit on TLS listeners, IPv6 included.
        XCTAssertLessThanOrEqual(ProxyProtocol.encodeV2(source: v6, destination: v6, tls: tls, tlvs: []).count, 107)
    }

    func testV2EmptyTLSFieldsAreLeftOut() {
        let h = ProxyProtocol.encodeV2(source: v4, destination: v4dst, tls: .init())
        // Only PP2_TYPE_SSL with its 5 fixed bytes.
        XCTAssertEqual(Array(h[(16 + 12)...]), [0x20, 0x00, 0x05, 0x01, 0, 0, 0, 0])
    }
}
