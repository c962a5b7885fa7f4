import XCTest

@testable import ProxyFingerprint

/// JA3/JA4 of every fixture against the reference values in the file.
final class FingerprintFixtureTests: XCTestCase {
    func testEveryFixtureMatchesItsReferenceFingerprints() throws {
        let fixtures = try HelloFixture.all()
        XCTAssertGreaterThanOrEqual(fixtures.count, 20, "fixture directory not found or emptied")
        var ja3Checked = 0
        var ja4Checked = 0
        for f in fixtures {
            let hello = try ClientHello(fixtureJSON: f.bytes)
            if let ja3 = f.string("ja3_string") {
                XCTAssertEqual(hello.ja3.string, ja3, f.name)
                ja3Checked += 1
            }
            if let md5 = f.string("ja3_md5") {
                XCTAssertEqual(hello.ja3.md5, md5, f.name)
            }
            if let ja4 = f.string("ja4") {
                XCTAssertEqual(hello.ja4.fingerprint, ja4, f.name)
                XCTAssertEqual(hello.ja4Fingerprint, ja4, f.name)
                ja4Checked += 1
            }
        }
        // 22 fixtures carry a JA3 string, 19 a JA4: make sure the loop really compared them.
        XCTAssertGreaterThanOrEqual(ja3Checked, 20)
        XCTAssertGreaterThanOrEqual(ja4Checked, 17)
    }

    func testRawHandshakeAndRecordParseIdentically() throws {
        var checked = 0
        for f in try HelloFixture.all() {
            guard let raw = try f.hex("raw_hex"), let record = try f.hex("raw_record_hex") else { continue }
            let a = try ClientHello.parse(handshake: raw)
            var b = try ClientHello.parse(records: record)
            XCTAssertEqual(
                b.recordVersion,
                UInt16(f.string("record_version").map { String($0.dropFirst(2)) } ?? "", radix: 16),
                f.name
            )
            b.recordVersion = nil
            XCTAssertEqual(a, b, f.name)
            XCTAssertEqual(try ClientHello.parse(bytes: raw), a, f.name)
            XCTAssertEqual(try ClientHello.parse(bytes: record).ja4, a.ja4, f.name)
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 15)
    }

    /// The decoded fields agree with what the fixture recorded from the same bytes.
    func testParsedFieldsMatchFixtureFields() throws {
        func hexList(_ v: Any?) -> [UInt16]? {
            (v as? [Any])?.map { e in
                if let s = e as? String { return UInt16(s.dropFirst(2), radix: 16)! }
                return UInt16(e as! Int)
            }
        }
        for f in try HelloFixture.all() where f.string("raw_hex") != nil {
            let h = try ClientHello(fixtureJSON: f.bytes)
            XCTAssertEqual(h.cipherSuites, hexList(f.json["cipher_suites"]), f.name)
            XCTAssertEqual(h.extensions.map(\.type), hexList(f.json["extensions"]), f.name)
            XCTAssertEqual(h.supportedGroups, hexList(f.json["supported_groups"]) ?? [], f.name)
            XCTAssertEqual(h.signatureAlgorithms, hexList(f.json["signature_algorithms"]) ?? [], f.name)
            XCTAssertEqual(h.supportedVersions, hexList(f.json["supported_versions"]), f.name)
            XCTAssertEqual(h.keyShareGroups, hexList(f.json["key_share_groups"]) ?? [], f.name)
            XCTAssertEqual(h.alpn, (f.json["alpn"] as? [String]) ?? [], f.name)
            XCTAssertEqual(h.serverName, f.json["sni"] as? String, f.name)
            XCTAssertEqual(h.ecPointFormats, ((f.json["ec_point_formats"] as? [Int]) ?? []).map { UInt8($0) }, f.name)
            if let sid = f.json["session_id_len"] as? Int { XCTAssertEqual(h.sessionIDLength, sid, f.name) }
        }
    }

    /// serialize() → parse gives the same hello and fingerprints, for captured and rebuilt fixtures alike.
    func testSerializeRoundTrip() throws {
        for f in try HelloFixture.all() {
            let hello = try ClientHello(fixtureJSON: f.bytes)
            var again = try ClientHello.parse(handshake: hello.serialize())
            again.recordVersion = hello.recordVersion
            XCTAssertEqual(again, hello, f.name)
            XCTAssertEqual(again.ja3, hello.ja3, f.name)
            XCTAssertEqual(again.ja4, hello.ja4, f.name)
            let records = try ClientHello.parse(records: hello.serializeRecords(version: 0x0301, maxFragment: 100))
            XCTAssertEqual(records.ja4, hello.ja4, f.name)
            XCTAssertEqual(records.recordVersion, 0x0301, f.name)
        }
    }

    /// The fields-only builder and the raw capture agree: rebuild each captured fixture without its raw bytes.
    func testBuilderFromFieldsMatchesCapture() throws {
        for f in try HelloFixture.all() where f.string("raw_hex") != nil {
            var json = f.json
            json["raw_hex"] = NSNull()
            json["raw_record_hex"] = NSNull()
            let data = try JSONSerialization.data(withJSONObject: json)
            let rebuilt = try ClientHello(fixtureJSON: [UInt8](data))
            let captured = try ClientHello(fixtureJSON: f.bytes)
            XCTAssertEqual(rebuilt.ja3, captured.ja3, f.name)
            XCTAssertEqual(rebuilt.ja4, captured.ja4, f.name)
            XCTAssertEqual(rebuilt.features, captured.features, f.name)
        }
    }

    /// JA4.md's worked example: the Chrome fixture has the same sorted lists, so its ja4_r is the spec's string.
    func testJA4RawFormsMatchSpecExample() throws {
        let chrome = try ClientHello.parse(handshake: try HelloFixture.raw("chrome-110-desktop"))
        let ja4 = chrome.ja4
        XCTAssertEqual(
            ja4.raw,
            "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"
        )
        // Original order keeps SNI/ALPN and wire order (this capture's own permutation).
        XCTAssertEqual(
            ja4.rawOriginal,
            "t13d1516h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_001b,0017,ff01,0010,000d,002b,0005,0023,0033,0000,0012,000b,000a,4469,002d,0015_0403,0804,0401,0503,0805,0501,0806,0601"
        )
        // The hashed forms are the truncated SHA-256 of the raw parts.
        for (hashed, raw) in [(ja4.fingerprint, ja4.raw), (ja4.original, ja4.rawOriginal)] {
            let h = hashed.split(separator: "_")
            let r = raw.split(separator: "_", maxSplits: 2)
            XCTAssertEqual(h[0], r[0])
            XCTAssertEqual(String(h[1]), Digest.sha256Hex(Array(r[1].utf8), prefix: 12))
            XCTAssertEqual(String(h[2]), Digest.sha256Hex(Array(r[2].utf8), prefix: 12))
        }
        XCTAssertEqual(Digest.md5Hex(Array("abc".utf8)), "900150983cd24fb0d6963f7d28e17f72")
        XCTAssertEqual(
            Digest.sha256Hex(Array("abc".utf8)),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        )
    }

    func testJA4EdgeCases() throws {
        // No ciphers, no extensions: both hashes are twelve zeros; no ALPN → 00; no SNI → i.
        let empty = ClientHello(legacyVersion: 0x0301, cipherSuites: [], extensions: [])
        XCTAssertEqual(empty.ja4.fingerprint, "t10i000000_000000000000_000000000000")
        XCTAssertEqual(empty.ja3.string, "769,,,,")
        XCTAssertEqual(empty.ja3.md5, Digest.md5Hex(Array("769,,,,".utf8)))

        // Non-alphanumeric ALPN ends use the hex form's first and last characters; one-char names repeat.
        XCTAssertEqual(JA4Parts.alpnCode([0xab, 0x68, 0xcd]).0, UInt8(ascii: "a"))
        XCTAssertEqual(JA4Parts.alpnCode([0xab, 0x68, 0xcd]).1, UInt8(ascii: "d"))
        XCTAssertTrue(JA4Parts.alpnCode(Array("h".utf8)) == (UInt8(ascii: "h"), UInt8(ascii: "h")))
        XCTAssertTrue(JA4Parts.alpnCode(Array("http/1.1".utf8)) == (UInt8(ascii: "h"), UInt8(ascii: "1")))
        XCTAssertTrue(JA4Parts.alpnCode(Array("x-".utf8)) == (UInt8(ascii: "7"), UInt8(ascii: "d")))
        XCTAssertTrue(JA4Parts.alpnCode(nil) == (UInt8(ascii: "0"), UInt8(ascii: "0")))

        // Counts cap at 99; GREASE-only supported_versions falls back to legacy_version; s3 code.
        let many = ClientHello(
            legacyVersion: 0x0300,
            cipherSuites: (1...120).map { UInt16($0) },
            extensions: [.supportedVersions([0x1a1a])] + (100..<220).map { .init(type: UInt16($0), body: []) }
        )
        let parsed = try ClientHello.parse(handshake: many.serialize())
        XCTAssertTrue(parsed.ja4.fingerprint.hasPrefix("ts3i999900_"), parsed.ja4.fingerprint)
        // No signature algorithms: no "_sigs" part.
        XCTAssertFalse(parsed.ja4.raw.split(separator: "_").count > 3)
    }
}

/// The detector's cache key (`ja4InputsHash`): equal for hellos whose JA4 inputs are equal (whatever the order of
/// ciphers and extensions, and GREASE), different whenever JA4 differs.
final class JA4InputsHashTests: XCTestCase {
    func testEqualJA4InputsEqualHashesAndDistinctJA4DistinctHashes() throws {
        var byHash: [UInt64: String] = [:]
        var checked = 0
        for f in try HelloFixture.all() {
            let hello = try ClientHello(fixtureJSON: f.bytes)
            let ja4 = hello.ja4Fingerprint
            if let seen = byHash[hello.ja4InputsHash] {
                XCTAssertEqual(seen, ja4, "\(f.name): two JA4s share one cache key")
            }
            byHash[hello.ja4InputsHash] = ja4
            // Shuffled ciphers and extensions (JA4 sorts them), GREASE added: the same JA4 and the same key.
            var shuffled = hello
            shuffled.cipherSuites = [0x0A0A] + hello.cipherSuites.reversed()
            shuffled.extensions = [ClientHello.Extension(type: 0x1A1A, body: [])] + hello.extensions.reversed()
            XCTAssertEqual(shuffled.ja4Fingerprint, ja4, f.name)
            XCTAssertEqual(shuffled.ja4InputsHash, hello.ja4InputsHash, f.name)
            // Each input JA4 reads changes the key.
            var other = hello
            other.cipherSuites.append(0x00FF)
            XCTAssertNotEqual(other.ja4InputsHash, hello.ja4InputsHash, f.name)
            other = hello
            other.signatureAlgorithms.reverse()
            if other.signatureAlgorithms != hello.signatureAlgorithms {
                XCTAssertNotEqual(other.ja4Fingerprint, ja4)
                XCTAssertNotEqual(other.ja4InputsHash, hello.ja4InputsHash, f.name)
            }
            other = hello
            other.extensions.append(ClientHello.Extension(type: 0x4469, body: []))
            XCTAssertNotEqual(other.ja4InputsHash, hello.ja4InputsHash, f.name)
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 20)
        XCTAssertGreaterThanOrEqual(Set(byHash.values).count, 15, "the fixtures have many distinct JA4s")
    }
}
