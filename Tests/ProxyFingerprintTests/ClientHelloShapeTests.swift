import EdgeProxyTestSupport
import XCTest

@testable import ProxyFingerprint

/// `ClientHelloShape` stands in for the parse: equal shapes must mean equal parse outcomes, feature sets, JA3 and
/// JA4 (what policies and the detector read): one shape, one outcome, "does not parse" included.
final class ClientHelloShapeTests: XCTestCase {
    /// What a shape must determine.
    struct Outcome: Equatable {
        var features: ClientHelloFeatures
        var ja3: String
        var ja4: String
        var ja4Raw: String
        var inputsHash: UInt64
    }

    static func outcome(_ bytes: [UInt8]) -> Outcome? {
        guard let h = try? ClientHello.parse(handshake: bytes) else { return nil }
        return Outcome(
            features: h.features,
            ja3: h.ja3.string,
            ja4: h.ja4Fingerprint,
            ja4Raw: JA4Parts(h).render(sorted: false, hashed: false),
            inputsHash: h.ja4InputsHash
        )
    }

    /// Every fixture as a handshake message (its raw capture, else its fields serialized).
    static func fixtureHellos() throws -> [(String, [UInt8])] {
        try HelloFixture.all().map { f in
            if let raw = try f.hex("raw_hex") { return (f.name, raw) }
            return (f.name, try ClientHello(fixtureJSON: f.bytes).serialize())
        }
    }

    /// Records shape → outcome (nil: does not parse) and fails when one shape is seen with two outcomes. That is
    /// the property the cache needs: it only holds verdicts of hellos that parsed, so a hit must parse alike.
    /// (A shape for a hello that does not parse is fine: a malformed body kept as sent differs from every body
    /// that parsed, so it can never hit.)
    struct Ledger {
        var seen: [[UInt8]: (String, Outcome?)] = [:]
        var shapes = 0
        var parsed = 0

        mutating func add(_ bytes: [UInt8], _ label: String, file: StaticString = #filePath, line: UInt = #line) {
            guard let shape = ClientHelloShape.of(handshake: bytes) else { return }
            shapes += 1
            let o = ClientHelloShapeTests.outcome(bytes)
            if o != nil { parsed += 1 }
            if let (first, earlier) = seen[shape] {
                XCTAssertEqual(earlier, o, "\(label) and \(first) share a shape", file: file, line: line)
            } else {
                seen[shape] = (label, o)
            }
        }
    }

    func testEveryFixtureHasAShapeAndDistinctFixturesKeepDistinctAnswers() throws {
        var ledger = Ledger()
        for (name, raw) in try Self.fixtureHellos() {
            XCTAssertNotNil(ClientHelloShape.of(handshake: raw), name)
            ledger.add(raw, name)
        }
        XCTAssertGreaterThan(ledger.shapes, 20)
    }

    /// The parts that change between connections of one client leave the shape as it is.
    func testPerConnectionPartsDoNotChangeTheShape() throws {
        var rng = SplitMix64(seed: 7)
        var greaseRNG = SplitMix64(seed: 8)  // its own: `otherGREASE` runs while `rng` is lent out
        for (name, raw) in try Self.fixtureHellos() {
            let hello = try ClientHello.parse(handshake: raw)
            let base = try XCTUnwrap(ClientHelloShape.of(handshake: raw), name)
            for round in 0..<8 {
                var v = hello
                var usedGREASE: Set<UInt16> = []  // distinct values (16 exist; hellos use < 10)
                func otherGREASE() -> UInt16 {
                    while true {
                        let x = UInt16(greaseRNG.next() % 16)
                        let g = x << 12 | 0x0a00 | x << 4 | 0x0a  // 0x?a?a, both nibbles equal
                        if usedGREASE.insert(g).inserted { return g }
                    }
                }
                v.cipherSuites = v.cipherSuites.map { ClientHello.isGREASE($0) ? otherGREASE() : $0 }
                v.extensions = v.extensions.map { e in
                    var e = e
                    if ClientHello.isGREASE(e.type) { e.type = otherGREASE() }
                    switch e.type {
                    case 51: e.body = Self.rekeyed(keyShare: e.body, &rng, grease: otherGREASE)
                    case 10, 13: e.body = Self.regreased(e.body, lengthBytes: 2, grease: otherGREASE)
                    case 43: e.body = Self.regreased(e.body, lengthBytes: 1, grease: otherGREASE)
                    case 35: e.body = rng.bytes(Int(rng.next() % 300))  // a ticket, or none
                    case 41: e.body = rng.bytes(Int(rng.next() % 200))
                    case 21: e.body = [UInt8](repeating: 0, count: Int(rng.next() % 300))
                    default: break
                    }
                    return e
                }
                var bytes = v.serialize()
                // Random and session ID bytes (the serializer writes zeros; the hello's sid length stays).
                for i in 6..<(39 + Int(bytes[38])) where i != 38 { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
                let label = "\(name) variant \(round)"
                XCTAssertEqual(ClientHelloShape.of(handshake: bytes), base, label)
                XCTAssertEqual(Self.outcome(bytes), Self.outcome(raw), label)
            }
        }
    }

    /// What policies read changes the shape: a cipher, an extension, a group, the SNI name, the session ID length.
    func testWhatPoliciesReadChangesTheShape() throws {
        let raw = try HelloFixture.raw("chrome-110-desktop")
        let hello = try ClientHello.parse(handshake: raw)
        let base = try XCTUnwrap(ClientHelloShape.of(handshake: raw))
        var changes: [(String, ClientHello)] = []
        var h = hello
        h.cipherSuites.removeLast()
        changes.append(("one cipher fewer", h))
        h = hello
        h.cipherSuites.swapAt(1, 2)
        changes.append(("cipher order", h))
        h = hello
        h.extensions.swapAt(1, 2)
        changes.append(("extension order", h))
        h = hello
        h.extensions.removeAll { $0.type == 35 }
        changes.append(("no session_ticket", h))
        h = hello
        for i in h.extensions.indices where h.extensions[i].type == 0 {
            h.extensions[i] = .serverName("other.example")
        }
        changes.append(("another SNI name", h))
        h = hello
        for i in h.extensions.indices where h.extensions[i].type == 10 {
            h.extensions[i] = .supportedGroups([0x001d, 0x0017])
        }
        changes.append(("other groups", h))
        h = hello
        for i in h.extensions.indices where h.extensions[i].type == 51 {
            h.extensions[i] = .keyShare(groups: [0x0017])
        }
        changes.append(("another key share group", h))
        h = hello
        h.sessionIDLength = 0
        changes.append(("no session ID", h))
        for (what, changed) in changes {
            XCTAssertNotEqual(ClientHelloShape.of(handshake: changed.serialize()), base, what)
        }
    }

    /// Mutations anywhere in real hellos: a shape only for what parses, and one outcome per shape.
    func testMutatedHellosNeverShareAShapeWithADifferentOutcome() throws {
        var rng = SplitMix64(seed: 11)
        var ledger = Ledger()
        var parsedWithoutShape = 0
        for (name, raw) in try Self.fixtureHellos() {
            ledger.add(raw, name)
            for i in 0..<600 {
                var m = raw
                switch i % 4 {
                case 0:  // one byte anywhere
                    m[Int(rng.next() % UInt64(m.count))] = UInt8(truncatingIfNeeded: rng.next())
                case 1:  // one byte in the first 80 (header, version, session ID, cipher list)
                    m[Int(rng.next() % UInt64(min(80, m.count)))] = UInt8(truncatingIfNeeded: rng.next())
                case 2:  // one bit anywhere
                    m[Int(rng.next() % UInt64(m.count))] ^= 1 << UInt8(rng.next() % 8)
                default:  // a GREASE value written over any aligned pair
                    let at = Int(rng.next() % UInt64(m.count - 1))
                    let g = UInt8(rng.next() % 16) << 4 | 0x0a
                    m[at] = g
                    m[at + 1] = g
                }
                ledger.add(m, "\(name) mutation \(i)")
                if ClientHelloShape.of(handshake: m) == nil, Self.outcome(m) != nil { parsedWithoutShape += 1 }
            }
        }
        XCTAssertGreaterThan(ledger.parsed, 5_000)
        XCTAssertGreaterThan(ledger.shapes - ledger.parsed, 100, "the mutations reach malformed hellos too")
        // Hellos that parse but get no shape are allowed (the full path takes them), but must stay rare.
        XCTAssertLessThan(parsedWithoutShape, ledger.parsed / 50)
    }

    func testGREASEWordTestIsExactForEveryValueInEveryLane() {
        for filler: UInt16 in [0x0000, 0x0a0a, 0x1a0a, 0x0a1a, 0xfafa, 0xffff, 0x1301, 0x0a0b] {
            for lane in 0..<4 {
                for v in 0...0xFFFF {
                    var w: UInt64 = 0
                    for k in 0..<4 { w |= UInt64(k == lane ? UInt16(v) : filler) << (16 * UInt64(k)) }
                    let expected = ClientHello.isGREASE(UInt16(v)) || ClientHello.isGREASE(filler)
                    if ClientHelloShape.mayHoldGREASE(w) != expected {
                        XCTFail("value \(v) in lane \(lane) next to \(filler)")
                        return
                    }
                }
            }
        }
    }

    func testDuplicateExtensionsOnBothSidesOfTypeSixtyFourHaveNoShape() throws {
        // Types below 64 are tracked in a bit set, the rest in a list: a repeat must be caught in both, with other
        // extensions between the two, and the parser must agree.
        func hello(_ types: [UInt16]) -> [UInt8] {
            let exts = types.map { ClientHello.Extension(type: $0, body: $0 == 10 ? [0, 2, 0, 0x1d] : []) }
            return ClientHello(legacyVersion: 0x0303, cipherSuites: [0x1301], extensions: exts).serialize()
        }
        for t: UInt16 in [0, 5, 10, 63, 64, 65, 0xff01] {
            let twice = hello([t, 10 == t ? 11 : 10, 0xff01 == t ? 23 : 0xff01, t])
            XCTAssertNil(try? ClientHello.parse(handshake: twice), "\(t) twice")
            XCTAssertNil(ClientHelloShape.of(handshake: twice), "\(t) twice")
        }
        let distinct = hello([0xff01, 65, 63, 0, 10, 64])
        XCTAssertNotNil(try? ClientHello.parse(handshake: distinct))
        XCTAssertNotNil(ClientHelloShape.of(handshake: distinct))
    }

    func testDuplicateExtensionsHaveNoShape() throws {
        let ext = ClientHello.Extension(type: 0x1a1a, body: [])
        let same = ClientHello(legacyVersion: 0x0303, cipherSuites: [0x1301], extensions: [ext, ext]).serialize()
        XCTAssertNil(try? ClientHello.parse(handshake: same))
        XCTAssertNil(ClientHelloShape.of(handshake: same))
        // Two GREASE extensions of different values are fine for the parser, and so for the shape.
        let other = ClientHello.Extension(type: 0x2a2a, body: [])
        let two = ClientHello(legacyVersion: 0x0303, cipherSuites: [0x1301], extensions: [ext, other]).serialize()
        XCTAssertNotNil(try? ClientHello.parse(handshake: two))
        XCTAssertNotNil(ClientHelloShape.of(handshake: two))
    }

    func testOversizedShapesAreLeftToTheFullParse() throws {
        let many = ClientHello(
            legacyVersion: 0x0303,
            cipherSuites: (0..<2_000).map { UInt16($0) },
            extensions: []
        ).serialize()
        XCTAssertNotNil(try? ClientHello.parse(handshake: many))
        XCTAssertNil(ClientHelloShape.of(handshake: many))
    }

    // MARK: - ShapeCache

    func testCacheHitsOnlyTheSameShapeAndForgets() throws {
        let chrome = try HelloFixture.raw("chrome-110-desktop")
        let curl = try HelloFixture.raw("curl-openssl1.0")
        let cache = ShapeCache<String>(slots: 8)
        func probe(_ b: [UInt8]) -> ShapeCache<String>.Probe? { b.withUnsafeBytes { cache.probe(handshake: $0) } }
        let p1 = try XCTUnwrap(probe(chrome))
        XCTAssertNil(cache.value(for: p1))
        cache.insert("chrome", for: p1)
        var again = chrome
        again[10] ^= 0xff  // the random
        XCTAssertEqual(probe(again).flatMap { cache.value(for: $0) }, "chrome")
        XCTAssertNil(probe(curl).flatMap { cache.value(for: $0) })
        XCTAssertNil(probe([1, 0, 0, 1, 3]))
        XCTAssertEqual(cache.count, 1)
        cache.removeAll()
        XCTAssertEqual(cache.count, 0)
        XCTAssertNil(probe(chrome).flatMap { cache.value(for: $0) })
    }

    func testCacheWithOneSlotKeepsTheLatestShape() throws {
        let chrome = try HelloFixture.raw("chrome-110-desktop")
        let curl = try HelloFixture.raw("curl-openssl1.0")
        let cache = ShapeCache<String>(slots: 1)
        func probe(_ b: [UInt8]) -> ShapeCache<String>.Probe { b.withUnsafeBytes { cache.probe(handshake: $0)! } }
        cache.insert("chrome", for: probe(chrome))
        cache.insert("curl", for: probe(curl))
        XCTAssertNil(cache.value(for: probe(chrome)))
        XCTAssertEqual(cache.value(for: probe(curl)), "curl")
        XCTAssertEqual(cache.count, 1)
    }

    /// The slot hash spreads shapes: no collisions among 20,000 distinct inputs (lengths 0–600, tails of every
    /// length), and no slot of 256 holding more than twice its share.
    func testSlotHashSpreadsShapes() {
        var rng = SplitMix64(seed: 3)
        var seen: [UInt64: [UInt8]] = [:]
        var slots = [Int](repeating: 0, count: 256)
        let count = 20_000
        for i in 0..<count {
            let input = rng.bytes(i % 601)
            let h = input.withUnsafeBytes { ShapeCache<Int>.hash($0, 0x1234) }
            if let other = seen[h] { XCTAssertEqual(other, input, "hash collision") }
            seen[h] = input
            slots[Int(h & 255)] += 1
        }
        XCTAssertLessThan(slots.max()!, 2 * count / 256)
        XCTAssertGreaterThan(slots.min()!, count / 256 / 2)
        // One byte more or less, or one bit flipped, changes it.
        let base: [UInt8] = Array(repeating: 7, count: 13)
        let h = base.withUnsafeBytes { ShapeCache<Int>.hash($0, 1) }
        XCTAssertNotEqual(h, Array(base.dropLast()).withUnsafeBytes { ShapeCache<Int>.hash($0, 1) })
        XCTAssertNotEqual(h, (base + [0]).withUnsafeBytes { ShapeCache<Int>.hash($0, 1) })
        var flipped = base
        flipped[12] ^= 1
        XCTAssertNotEqual(h, flipped.withUnsafeBytes { ShapeCache<Int>.hash($0, 1) })
    }

    // MARK: - Helpers

    /// A key_share body with new key bytes of the same lengths and GREASE groups replaced.
    static func rekeyed(keyShare body: [UInt8], _ rng: inout SplitMix64, grease: () -> UInt16) -> [UInt8] {
        var out = Array(body[0..<2])
        var i = 2
        while i + 4 <= body.count {
            var group = UInt16(body[i]) << 8 | UInt16(body[i + 1])
            if ClientHello.isGREASE(group) { group = grease() }
            let n = Int(body[i + 2]) << 8 | Int(body[i + 3])
            out += [UInt8(group >> 8), UInt8(group & 0xff), body[i + 2], body[i + 3]] + rng.bytes(n)
            i += 4 + n
        }
        return out
    }

    /// A u16 list body with its GREASE values replaced.
    static func regreased(_ body: [UInt8], lengthBytes: Int, grease: () -> UInt16) -> [UInt8] {
        var out = body
        var i = lengthBytes
        while i + 1 < out.count {
            let v = UInt16(out[i]) << 8 | UInt16(out[i + 1])
            if ClientHello.isGREASE(v) {
                let g = grease()
                out[i] = UInt8(g >> 8)
                out[i + 1] = UInt8(g & 0xff)
            }
            i += 2
        }
        return out
    }
}
