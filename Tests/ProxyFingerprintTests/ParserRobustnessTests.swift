import XCTest

@testable import ProxyFingerprint

/// Malformed, hostile and unusual inputs: every one must throw a specific error or parse, never crash.
final class ParserRobustnessTests: XCTestCase {
    /// A small TLS 1.2-style hello: ciphers 1301,1302; no session id; compression [0]; extensions as given.
    /// Layout: 0 type, 1-3 length, 4-5 version, 6-37 random, 38 sid len, 39-40 cipher len, 41-44 ciphers,
    /// 45 compression len, 46 method, 47-48 extensions length, 49... extensions.
    func small(_ extensions: [ClientHello.Extension]) -> [UInt8] {
        ClientHello(legacyVersion: 0x0303, cipherSuites: [0x1301, 0x1302], extensions: extensions).serialize()
    }

    func setU16(_ b: inout [UInt8], _ at: Int, _ v: Int) {
        b[at] = UInt8(v >> 8 & 0xff)
        b[at + 1] = UInt8(v & 0xff)
    }

    func testTruncatedAtEveryOffsetThrows() throws {
        for name in ["chrome-110-desktop", "schannel-msie10-win7-tls10", "curl-openssl1.0"] {
            let raw = try HelloFixture.raw(name)
            let record = try ClientHello.parse(handshake: raw).serializeRecords(maxFragment: 300)
            for n in 0..<raw.count {
                let prefix = Array(raw[0..<n])
                let e = assertParseError(try ClientHello.parse(handshake: prefix), "\(name) cut at \(n)")
                switch (n, e) {
                case (0, .empty?): break
                case (1..<4, .truncated(.handshakeHeader, 0, 4, n)?): break
                case (4..., .truncated(.handshake, 4, raw.count - 4, n - 4)?): break
                default: XCTFail("\(name) cut at \(n): \(String(describing: e))")
                }
                assertParseError(try ClientHello.parse(bytes: prefix))
            }
            for n in 0..<record.count {
                let e = assertParseError(
                    try ClientHello.parse(records: Array(record[0..<n])),
                    "\(name) record cut at \(n)"
                )
                if n > 0, case .truncated = e {
                } else if n > 0 {
                    XCTFail("\(name) record cut at \(n): \(String(describing: e))")
                }
            }
        }
    }

    func testLyingLengths() {
        let base = small([.serverName("a.example"), .supportedGroups([29, 23])])
        var b = base
        setU16(&b, 2, base.count - 4 + 1)  // handshake length one too long
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(handshake: b)),
            .truncated(what: .handshake, offset: 4, needed: base.count - 3, available: base.count - 4)
        )
        b = base
        setU16(&b, 2, base.count - 4 - 1)  // one too short
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(handshake: b)),
            .trailingBytes(what: .handshake, offset: base.count - 1, count: 1)
        )

        b = base
        setU16(&b, 39, 0xfffe)  // cipher list longer than the hello
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(handshake: b)),
            .lengthMismatch(what: .cipherSuites, offset: 39, declared: 0xfffe, actual: base.count - 41)
        )
        b = base
        setU16(&b, 39, 3)  // odd cipher list
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(handshake: b)),
            .badVectorLength(what: .cipherSuites, offset: 41, length: 3)
        )
        b = base
        b[38] = 33  // session id > 32
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(handshake: b)),
            .badVectorLength(what: .sessionID, offset: 38, length: 33)
        )

        b = base
        setU16(&b, 47, base.count - 49 + 2)  // extensions block longer than the rest
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(handshake: b)),
            .lengthMismatch(what: .extensions, offset: 47, declared: base.count - 47, actual: base.count - 49)
        )
        b = base
        setU16(&b, 47, base.count - 49 - 2)  // shorter: bytes left over after the block
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(handshake: b)),
            .lengthMismatch(what: .extensions, offset: 47, declared: base.count - 51, actual: base.count - 49)
        )
        b = base
        setU16(&b, 51, 200)  // first extension body longer than the block
        if case .lengthMismatch(.extensionBody, 51, 200, _)? = assertParseError(try ClientHello.parse(handshake: b)) {
        } else {
            XCTFail()
        }
        b = base
        setU16(&b, 53, 100)  // server_name list length lies
        if case .lengthMismatch(.serverName, 53, 100, _)? = assertParseError(try ClientHello.parse(handshake: b)) {
        } else {
            XCTFail()
        }
        b = base
        setU16(&b, 56, 1)  // host_name length shorter than its list
        if case .lengthMismatch(.serverName, _, _, _)? = assertParseError(try ClientHello.parse(handshake: b)) {
        } else {
            XCTFail()
        }
    }

    func testMalformedDecodedExtensionBodies() {
        let cases: [(ClientHello.Extension, ClientHelloParseError.Field)] = [
            (.init(type: 10, body: [0, 3, 0, 29, 0]), .supportedGroups),  // odd list
            (.init(type: 10, body: [0, 4, 0, 29]), .supportedGroups),  // list longer than body
            (.init(type: 10, body: []), .supportedGroups),  // no length at all
            (.init(type: 43, body: [3, 3, 4, 3]), .supportedVersions),
            (.init(type: 43, body: [4, 3, 4]), .supportedVersions),
            (.init(type: 11, body: [2, 0]), .ecPointFormats),
            (.init(type: 13, body: [0, 2, 4]), .signatureAlgorithms),
            (.init(type: 16, body: [0, 3, 0, 1, 0x68]), .alpn),  // empty protocol name
            (.init(type: 16, body: [0, 3, 5, 0x68, 0x32]), .alpn),  // name longer than list
            (.init(type: 51, body: [0, 6, 0, 29, 0, 32, 1, 2]), .keyShare),  // key longer than entry
            (.init(type: 51, body: [0, 3, 0, 29, 0]), .keyShare),
            (.init(type: 0, body: [0, 5, 0, 0, 0]), .serverName),  // empty host_name
            (.init(type: 0, body: [0]), .serverName),
        ]
        for (ext, field) in cases {
            let e = assertParseError(try ClientHello.parse(handshake: small([ext])), "\(ext)")
            switch e {
            case .lengthMismatch(let f, _, _, _)?, .badVectorLength(let f, _, _)?, .truncated(let f, _, _, _)?:
                XCTAssertEqual(f, field, "\(ext): \(String(describing: e))")
            default: XCTFail("\(ext): \(String(describing: e))")
            }
        }
        // Unknown extensions are kept raw whatever their body; empty decoded lists are accepted.
        let ok = try? ClientHello.parse(
            handshake: small([
                .init(type: 0x4469, body: [1, 2, 3]), .init(type: 10, body: [0, 0]), .init(type: 16, body: [0, 0]),
                .init(type: 51, body: [0, 0]), .init(type: 0, body: []),
            ])
        )
        XCTAssertEqual(ok?.extensions.first?.body, [1, 2, 3])
        XCTAssertEqual(ok?.serverName, nil)
        XCTAssertEqual(ok?.features.sniPresent, true)
    }

    /// Extension bodies share one array (the caller's, or one copy of the block); each still reads as its own bytes,
    /// whichever entry point parsed it, and mutating one body leaves the others and the input alone.
    func testExtensionBodiesAreTheirOwnBytesWhicheverEntryPoint() throws {
        let exts: [ClientHello.Extension] = [
            .init(type: 0x4469, body: [1, 2, 3]), .init(type: 23, body: []), .init(type: 0xfe0d, body: [9, 8, 7, 6]),
        ]
        var raw = small(exts)
        let fromArray = try ClientHello.parse(handshake: raw)
        let fromPointer = try raw.withUnsafeBytes { try ClientHello.parse(handshake: $0) }
        let fromRecords = try ClientHello.parse(records: fromArray.serializeRecords(maxFragment: 7))
        for hello in [fromArray, fromPointer, fromRecords] {
            XCTAssertEqual(hello.extensions.map(\.type), [0x4469, 23, 0xfe0d])
            XCTAssertEqual(hello.extensions.map(\.body), [[1, 2, 3], [], [9, 8, 7, 6]])
            XCTAssertEqual(hello.extensions.map(\.bodyCount), [3, 0, 4])
            XCTAssertEqual(hello.extensions[2].withBody { Array($0) }, [9, 8, 7, 6])
            XCTAssertEqual(hello.extensions, exts)
            XCTAssertEqual(hello.serialize(), raw)
        }
        var copy = fromArray
        copy.extensions[0].body = [5]
        XCTAssertEqual(copy.extensions[0].body, [5])
        XCTAssertEqual(copy.extensions[2].body, [9, 8, 7, 6])
        XCTAssertEqual(fromArray.extensions[0].body, [1, 2, 3])
        XCTAssertNotEqual(copy.extensions[0], fromArray.extensions[0])
        // The parsed hello does not see later changes to the caller's array.
        raw[raw.count - 1] = 0
        XCTAssertEqual(fromArray.extensions[2].body, [9, 8, 7, 6])
    }

    func testDuplicateExtensions() {
        let dup = small([.supportedGroups([29]), .init(type: 23, body: []), .supportedGroups([23])])
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(handshake: dup)),
            .duplicateExtension(type: 10, offset: 49 + 8 + 4)
        )
        // Past 32 extensions the check switches to a set: still caught.
        var many: [ClientHello.Extension] = (1000..<1040).map { .init(type: UInt16($0), body: []) }
        many.append(.init(type: 1037, body: []))
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(handshake: small(many))),
            .duplicateExtension(type: 1037, offset: 49 + 40 * 4)
        )
    }

    func testEmptyCipherListAndNoExtensions() throws {
        // No extensions block at all (SSLv3 / TLS 1.0 style).
        var b = ClientHello(legacyVersion: 0x0300, cipherSuites: [], extensions: []).serialize()
        XCTAssertEqual(b.count, 4 + 2 + 32 + 1 + 2 + 2)
        var h = try ClientHello.parse(handshake: b)
        XCTAssertEqual(h.cipherSuites, [])
        XCTAssertEqual(h.extensions, [])
        XCTAssertNil(h.supportedVersions)
        XCTAssertEqual(h.ja3.string, "768,,,,")
        XCTAssertEqual(h.ja4.fingerprint, "ts3i000000_000000000000_000000000000")
        // An empty but present extensions block.
        b += [0, 0]
        b[3] += 2
        h = try ClientHello.parse(handshake: b)
        XCTAssertEqual(h.extensions, [])
        // A single byte where the block length should be.
        b.removeLast()
        b[3] -= 1
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(handshake: b)),
            .truncated(what: .extensions, offset: 43, needed: 2, available: 1)
        )
    }

    func testOversizeAndWrongTypes() {
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(handshake: [1, 2, 1, 0x45] + [UInt8](repeating: 0, count: 20))),
            .oversized(what: .handshake, length: 131_397, limit: ClientHello.maxHandshakeLength)
        )
        XCTAssertEqual(
            assertParseError(
                try ClientHello.parse(records: [22, 3, 1, 0x40, 0x01] + [UInt8](repeating: 0, count: 0x4001))
            ),
            .oversized(what: .record, length: 16_385, limit: 16_384)
        )
        // An oversized message declared in the first fragment is refused before anything is buffered.
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(records: [22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff])),
            .oversized(what: .handshake, length: 0xffffff, limit: ClientHello.maxHandshakeLength)
        )
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(handshake: [2, 0, 0, 0])),
            .notClientHello(handshakeType: 2)
        )
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(records: [23, 3, 3, 0, 1, 0])),
            .notHandshakeRecord(contentType: 23, version: 0x0303, offset: 0)
        )
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(records: [22, 2, 0, 0, 1, 1])),
            .notHandshakeRecord(contentType: 22, version: 0x0200, offset: 0)
        )
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(bytes: Array("GET / HTTP/1.1\r\n".utf8))),
            .notHandshakeRecord(contentType: 0x47, version: 0x4554, offset: 0)
        )
        XCTAssertEqual(assertParseError(try ClientHello.parse(bytes: [])), .empty)
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(records: [22, 3, 1, 0, 0])),
            .badVectorLength(what: .record, offset: 3, length: 0)
        )
    }

    func testFragmentedAcrossRecords() throws {
        let raw = try HelloFixture.raw("chrome-110-desktop")
        let whole = try ClientHello.parse(handshake: raw)
        func record(_ bytes: ArraySlice<UInt8>, version: UInt16 = 0x0301) -> [UInt8] {
            [22, UInt8(version >> 8), UInt8(version & 0xff), UInt8(bytes.count >> 8), UInt8(bytes.count & 0xff)] + bytes
        }
        // Every two-record split, including splits inside the 4-byte handshake header.
        for split in 1..<raw.count {
            var h = try ClientHello.parse(records: record(raw[0..<split]) + record(raw[split...], version: 0x0303))
            XCTAssertEqual(h.recordVersion, 0x0301)
            h.recordVersion = nil
            XCTAssertEqual(h, whole, "split at \(split)")
        }
        // One byte per record.
        let tiny = raw.indices.flatMap { record(raw[$0...$0]) }
        XCTAssertEqual(try ClientHello.parse(records: tiny).ja4, whole.ja4)
        XCTAssertEqual(try ClientHello.parse(bytes: tiny).ja3, whole.ja3)
        // Missing last fragment → truncated; an extra record or extra bytes after the hello → trailing bytes.
        let three = record(raw[0..<100]) + record(raw[100..<200]) + record(raw[200...])
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(records: Array(three[0..<(105 + 105)]))),
            .truncated(what: .handshake, offset: 200, needed: raw.count - 200, available: 0)
        )
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(records: three + record([0x14][...]))),
            .trailingBytes(what: .record, offset: three.count, count: 6)
        )
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(records: record(raw[...]) + [0x14])),
            .trailingBytes(what: .record, offset: raw.count + 5, count: 1)
        )
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(records: record((raw + [2, 0, 0, 0])[...]))),
            .trailingBytes(what: .handshake, offset: raw.count + 5, count: 4)
        )
        // parsePrefix leaves later records to the caller.
        let withCCS = three + record([1][...]) + [23, 3, 3]
        let prefix = try withCCS.withUnsafeBytes { b in try ClientHello.parsePrefix(records: b) }
        XCTAssertEqual(prefix.consumed, three.count)
        XCTAssertEqual(prefix.hello.ja4, whole.ja4)
        // A fragmented non-ClientHello is refused as soon as its header is complete.
        XCTAssertEqual(
            assertParseError(try ClientHello.parse(records: record([2, 0][...]) + record([0, 9, 9, 9][...]))),
            .notClientHello(handshakeType: 2)
        )
    }

    func testGREASEInsideBodies() throws {
        let plain = ClientHello(
            legacyVersion: 0x0303,
            cipherSuites: [0x1301, 0xc02b],
            extensions: [
                .serverName("grease.example"), .supportedGroups([29, 23]), .supportedVersions([0x0304, 0x0303]),
                .keyShare(groups: [29]), .signatureAlgorithms([0x0403, 0x0804]), .alpn(["h2"]),
            ]
        )
        let greased = ClientHello(
            legacyVersion: 0x0303,
            cipherSuites: [0x2a2a, 0x1301, 0xc02b],
            extensions: [
                .init(type: 0x0a0a, body: []), .serverName("grease.example"), .supportedGroups([0xfafa, 29, 23]),
                .supportedVersions([0x7a7a, 0x0304, 0x0303]), .keyShare(groups: [0xfafa, 29]),
                .signatureAlgorithms([0x0403, 0x0804]), .alpn(["h2"]), .init(type: 0xdada, body: [0]),
            ]
        )
        let p = try ClientHello.parse(handshake: plain.serialize())
        let g = try ClientHello.parse(handshake: greased.serialize())
        // Wire order and GREASE kept in the parsed hello...
        XCTAssertEqual(g.supportedGroups, [0xfafa, 29, 23])
        XCTAssertEqual(g.supportedVersions, [0x7a7a, 0x0304, 0x0303])
        XCTAssertEqual(g.keyShareGroups, [0xfafa, 29])
        XCTAssertEqual(g.cipherSuites.first, 0x2a2a)
        // ...and removed from fingerprints and features.
        XCTAssertEqual(g.ja3, p.ja3)
        XCTAssertEqual(g.ja4, p.ja4)
        XCTAssertEqual(g.ja4.fingerprint.prefix(10), "t13d0206h2")
        var gf = g.features
        XCTAssertTrue(gf.greasePresent)
        XCTAssertFalse(p.features.greasePresent)
        XCTAssertEqual(gf.keyShareGroups, [29])
        XCTAssertEqual(gf.supportedVersions, [0x0304, 0x0303])
        XCTAssertEqual(gf.highestVersion, 0x0304)
        gf.greasePresent = false
        XCTAssertEqual(gf, p.features)
        XCTAssertTrue(ClientHello.isGREASE(0x0a0a) && ClientHello.isGREASE(0xfafa) && !ClientHello.isGREASE(0x0a1a))
    }

    func testFeaturesOfRealHellos() throws {
        let chrome = try ClientHello.parse(handshake: try HelloFixture.raw("chrome-110-desktop")).features
        XCTAssertTrue(chrome.greasePresent)
        XCTAssertTrue(chrome.sniPresent)
        XCTAssertTrue(
            chrome.sessionTicketExtPresent && chrome.extendedMasterSecretExtPresent
                && chrome.renegotiationInfoExtPresent
        )
        XCTAssertEqual(chrome.highestVersion, 0x0304)
        XCTAssertEqual(chrome.cipherSuites.count, 15)
        XCTAssertEqual(chrome.extensions.count, 16)
        XCTAssertEqual(chrome.alpn, ["h2", "http/1.1"])
        XCTAssertEqual(chrome.sessionIDLength, 32)

        let curl = try ClientHello.parse(handshake: try HelloFixture.raw("curl-7.88-openssl3-local")).features
        XCTAssertTrue(curl.renegotiationSCSVPresent)
        XCTAssertFalse(curl.greasePresent || curl.sessionTicketExtPresent || curl.renegotiationInfoExtPresent)

        let ie10 = try ClientHello.parse(handshake: try HelloFixture.raw("schannel-msie10-win7-tls10")).features
        XCTAssertEqual(ie10.highestVersion, 0x0301)
        XCTAssertEqual(ie10.supportedVersions, [])
    }

    /// Deterministic mutation smoke test (the fuzzer does the real work): flipped bytes, spliced lengths and
    /// truncations of real hellos must parse or throw.
    func testMutationsNeverCrash() throws {
        var state: UInt64 = 0x9e37_79b9_7f4a_7c15
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: state >> 33)
        }
        var parsed = 0
        for name in ["chrome-110-desktop", "firefox-120plus", "schannel-win11-22h2-tls13"] {
            let raw = try HelloFixture.raw(name)
            let hello = try ClientHello.parse(handshake: raw)
            let forms = [raw, hello.serializeRecords(maxFragment: 77)]
            for _ in 0..<1500 {
                var b = forms[next() & 1]
                for _ in 0...(next() % 4) {
                    let i = next() % b.count
                    switch next() % 3 {
                    case 0: b[i] = UInt8(truncatingIfNeeded: next())
                    case 1: b[i] ^= 0x80
                    default: b.removeSubrange(i...)
                    }
                    if b.isEmpty { break }
                }
                if let h = try? ClientHello.parse(bytes: b) {
                    _ = h.ja3
                    _ = h.ja4
                    _ = h.features
                    XCTAssertEqual(try ClientHello.parse(handshake: h.serialize()).ja4, h.ja4)
                    parsed += 1
                }
            }
        }
        XCTAssertGreaterThan(parsed, 0)
    }

    func testErrorDescriptionsSayWhereAndWhy() {
        XCTAssertEqual(
            ClientHelloParseError.truncated(what: .cipherSuites, offset: 41, needed: 4, available: 2).description,
            "ClientHello: truncated at offset 41 in cipher_suites: need 4 bytes, 2 left"
        )
        XCTAssertTrue(ClientHelloParseError.duplicateExtension(type: 10, offset: 60).description.contains("0x000a"))
        XCTAssertTrue(
            ClientHelloParseError.lengthMismatch(what: .extensions, offset: 47, declared: 9, actual: 3).description
                .contains("lies")
        )
    }
}
