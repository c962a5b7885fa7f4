import Glibc
import ProxyCore
import XCTest

@testable import ProxyTickets

final class TicketKeyWrappingTests: XCTestCase {
    let slot = "edgeproxy:tickets:epoch:3600000:42"

    func wrapping(_ id: String, byte: UInt8) -> WrappingKey {
        let bytes = [UInt8](repeating: byte, count: 32)
        return try! bytes.withUnsafeBytes { try WrappingKey(id: id, bytes: $0) }
    }

    func testRoundTripKeepsNameCipherAndSecrets() throws {
        for cipher in [TicketCipher.aes256cbc, .aes128cbc] {
            let key = makeKey(name: 0xA5, cipher: cipher, aes: 0x31, hmac: 0x77)
            let w = TicketKeyWrapper(current: wrapping("k1", byte: 1))
            let sealed = try w.seal(key, slot: slot, created: t(1000))
            let opened = try w.open(sealed, slot: slot)
            XCTAssertEqual(opened.key.nameBytes, key.nameBytes)
            XCTAssertEqual(opened.key.cipher, cipher)
            XCTAssertEqual(opened.key.aesBytes, key.aesBytes)
            XCTAssertEqual(opened.key.hmacBytes, key.hmacBytes)
            XCTAssertEqual(opened.created, t(1000))
            XCTAssertNil(opened.notAfter)
            XCTAssertEqual(TicketKeyWrapper.wrappingKeyID(of: sealed), "k1")
        }
    }

    func testSealedEntryNeverContainsTheSecretsAndUsesFreshNonces() throws {
        let key = makeKey(name: 0x01, aes: 0x40, hmac: 0x90)
        let w = TicketKeyWrapper(current: wrapping("k1", byte: 7))
        let a = try w.seal(key, slot: slot, created: t(1))
        let b = try w.seal(key, slot: slot, created: t(1))
        XCTAssertNotEqual(a, b, "each seal uses a fresh nonce")
        for needle in [key.aesBytes, key.hmacBytes, Array(key.aesBytes[0..<8]), Array(key.hmacBytes[0..<8])] {
            XCTAssertNil(find(needle, in: a), "plaintext secret bytes found in the sealed entry")
        }
    }

    func testEveryFlippedByteIsRejectedAsTamperedOrMalformed() throws {
        let w = TicketKeyWrapper(current: wrapping("k1", byte: 3))
        let sealed = try w.seal(makeKey(name: 9), slot: slot, created: t(5))
        var tampered = 0
        for i in 0..<sealed.count {
            var bad = sealed
            bad[i] ^= 0x01
            do {
                _ = try w.open(bad, slot: slot)
                XCTFail("byte \(i) flipped and the entry still opened")
            } catch let e {
                if case .tampered = e { tampered += 1 }
            }
        }
        XCTAssertGreaterThan(tampered, sealed.count - 10)
        XCTAssertThrowsError(try w.open(Array(sealed.dropLast()), slot: slot))
        XCTAssertThrowsError(try w.open([], slot: slot)) {
            XCTAssertEqual($0 as? TicketKeyWrapper.OpenError, .malformed)
        }
    }

    /// Sessions share the ticket keys' sealed format (one envelope): round trip, and nothing opens under another
    /// session ID, another key, another format's magic, or with any byte changed.
    func testSealedSessionsOpenOnlyForTheirSessionIDAndKey() throws {
        let w = TicketKeyWrapper(current: wrapping("k1", byte: 3))
        let session: [UInt8] = Array(0..<200)
        let sid: [UInt8] = Array(repeating: 7, count: 32)
        let sealed = try XCTUnwrap(
            session.withUnsafeBytes { s in sid.withUnsafeBytes { w.sealSession(s, sessionID: $0) } }
        )
        XCTAssertFalse(sealed.starts(with: Array("EPK1".utf8)))
        func open(_ e: [UInt8], _ wrapper: TicketKeyWrapper = w, sid: [UInt8] = sid) -> [UInt8]? {
            sid.withUnsafeBytes { wrapper.openSession(e, sessionID: $0) { Array($0) } }
        }
        XCTAssertEqual(open(sealed), session)
        XCTAssertNil(open(sealed, sid: Array(repeating: 8, count: 32)), "another session ID")
        XCTAssertNil(open(sealed, TicketKeyWrapper(current: wrapping("k1", byte: 4))), "same id, other key")
        XCTAssertNil(open(sealed, TicketKeyWrapper(current: wrapping("k2", byte: 3))), "unknown id")
        for i in stride(from: 0, to: sealed.count, by: 7) {
            var bad = sealed
            bad[i] ^= 0x01
            XCTAssertNil(open(bad), "byte \(i) flipped")
        }
        XCTAssertNil(open(Array(sealed.prefix(sealed.count - 1))), "truncated")
        // A ticket-key entry is not a session entry, even under the same key and "context".
        let keyEntry = try w.seal(makeKey(name: 9), slot: String(decoding: sid, as: UTF8.self), created: t(5))
        XCTAssertNil(open(keyEntry))
    }

    func testEntryMovedToAnotherSlotDoesNotOpen() throws {
        let w = TicketKeyWrapper(current: wrapping("k1", byte: 3))
        let sealed = try w.seal(makeKey(name: 9), slot: slot, created: t(5))
        XCTAssertThrowsError(try w.open(sealed, slot: "edgeproxy:tickets:epoch:3600000:43")) {
            XCTAssertEqual($0 as? TicketKeyWrapper.OpenError, .tampered(id: "k1"))
        }
    }

    func testUnknownIDIsForeignAndSameIDWithOtherBytesIsTampered() throws {
        let sealed = try TicketKeyWrapper(current: wrapping("other", byte: 3)).seal(
            makeKey(name: 9),
            slot: slot,
            created: t(5)
        )
        XCTAssertThrowsError(try TicketKeyWrapper(current: wrapping("k1", byte: 3)).open(sealed, slot: slot)) {
            XCTAssertEqual($0 as? TicketKeyWrapper.OpenError, .foreign(id: "other"))
        }
        XCTAssertThrowsError(try TicketKeyWrapper(current: wrapping("other", byte: 4)).open(sealed, slot: slot)) {
            XCTAssertEqual($0 as? TicketKeyWrapper.OpenError, .tampered(id: "other"))
        }
    }

    func testOldIDStillOpensAfterWrappingKeyRotationAndNewSealsUseTheNewID() throws {
        let old = wrapping("k1", byte: 1)
        let new = wrapping("k2", byte: 2)
        let key = makeKey(name: 0x33)
        let sealedOld = try TicketKeyWrapper(current: old).seal(key, slot: slot, created: t(1))
        let rotated = TicketKeyWrapper(current: new, previous: [old])
        XCTAssertEqual(try rotated.open(sealedOld, slot: slot).key.nameBytes, key.nameBytes)
        let sealedNew = try rotated.seal(key, slot: slot, created: t(2))
        XCTAssertEqual(TicketKeyWrapper.wrappingKeyID(of: sealedNew), "k2")
        // Once the old key is dropped from the configuration, its entries no longer open.
        XCTAssertThrowsError(try TicketKeyWrapper(current: new).open(sealedOld, slot: slot)) {
            XCTAssertEqual($0 as? TicketKeyWrapper.OpenError, .foreign(id: "k1"))
        }
    }

    func testImportedNotAfterRoundTrips() throws {
        let w = TicketKeyWrapper(current: wrapping("k1", byte: 1))
        let sealed = try w.seal(makeKey(name: 2), slot: "p:imported:x", created: t(10), notAfter: t(99))
        XCTAssertEqual(try w.open(sealed, slot: "p:imported:x").notAfter, t(99))
    }

    func testWrappingKeyLoadsFromHexFileRawFileAndEnv() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "wrap-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        )
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let hexPath = dir.appendingPathComponent("hex").path
        try (String(repeating: "ab", count: 32) + "\n").write(toFile: hexPath, atomically: true, encoding: .utf8)
        let rawPath = dir.appendingPathComponent("raw").path
        try Data(repeating: 0xab, count: 32).write(to: URL(fileURLWithPath: rawPath))
        let badPath = dir.appendingPathComponent("bad").path
        try "not a key".write(toFile: badPath, atomically: true, encoding: .utf8)

        let key = makeKey(name: 5)
        let a = TicketKeyWrapper(current: try WrappingKey.load(id: "x", file: hexPath))
        let b = TicketKeyWrapper(current: try WrappingKey.load(id: "x", file: rawPath))
        XCTAssertNoThrow(
            try b.open(try a.seal(key, slot: slot, created: t(1)), slot: slot),
            "hex and raw forms are the same key"
        )
        setenv("EDGEPROXY_TEST_WRAP", String(repeating: "AB", count: 32), 1)
        let c = TicketKeyWrapper(current: try WrappingKey.load(id: "x", env: "EDGEPROXY_TEST_WRAP"))
        XCTAssertNoThrow(try c.open(try a.seal(key, slot: slot, created: t(1)), slot: slot))
        XCTAssertThrowsError(try WrappingKey.load(id: "x", file: badPath))
        XCTAssertThrowsError(try WrappingKey.load(id: "x", env: "EDGEPROXY_TEST_WRAP_UNSET"))
        XCTAssertThrowsError(try WrappingKey.load(id: "has space", file: hexPath))
        XCTAssertEqual("\(try WrappingKey.load(id: "x", file: hexPath))", "WrappingKey(x, redacted)")
    }

    func testTestHookIsOffByDefault() {
        XCTAssertFalse(TicketKeyMaterialTestHook.isEnabled)
        XCTAssertNil(TicketKeyMaterialTestHook.material(of: makeKey(name: 1)))
    }

    private func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard needle.count <= hay.count else { return nil }
        for i in 0...(hay.count - needle.count) where Array(hay[i..<(i + needle.count)]) == needle { return i }
        return nil
    }
}
