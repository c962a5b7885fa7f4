import ProxyCore
import XCTest

@testable import ProxyTickets

final class TicketKeyRingTests: XCTestCase {
    func testKeyStates() {
        let k = makeKey(name: 1, encryptFrom: t(100), encryptUntil: t(200), decryptUntil: t(300))
        XCTAssertEqual(k.state(at: t(99)), .next)
        XCTAssertEqual(k.state(at: t(100)), .current)
        XCTAssertEqual(k.state(at: t(200).adding(nanoseconds: -1)), .current)
        XCTAssertEqual(k.state(at: t(200)), .stale)
        XCTAssertEqual(k.state(at: t(300)), .expired)
    }

    func testLookupByNameAndWords() {
        let current = makeKey(name: 0xA1, encryptFrom: t(100), encryptUntil: t(200), decryptUntil: t(300))
        let stale = makeKey(name: 0xA2, encryptFrom: t(0), encryptUntil: t(100), decryptUntil: t(200))
        let next = makeKey(name: 0xA3, encryptFrom: t(200), encryptUntil: t(300), decryptUntil: t(400))
        let ring = TicketKeyRing(generation: 1, keys: [next, current, stale], encryptionKey: current)
        let now = t(150)
        XCTAssertTrue(ring.encryptionKey(at: now) === current)
        XCTAssertTrue(ring.encryptionKey(at: t(250)) === next, "follows the boundary without a new ring")
        XCTAssertTrue(ring.encryptionKey(at: t(5000)) === current, "falls back to the designated key")

        for (key, state) in [(current, KeyState.current), (stale, .stale), (next, .next)] {
            let found = key.nameBytes.withUnsafeBytes { ring.lookup(name: $0, at: now) }
            XCTAssertTrue(found?.key === key)
            XCTAssertEqual(found?.state, state)
            let byWords = ring.lookup(nameHigh: key.nameHigh, nameLow: key.nameLow, at: now)
            XCTAssertTrue(byWords?.key === key)
        }
        // writeName round-trips through the words.
        var out = [UInt8](repeating: 0, count: 16)
        out.withUnsafeMutableBytes { current.writeName(to: $0.baseAddress!) }
        XCTAssertEqual(out, [UInt8](repeating: 0xA1, count: 16))
    }

    func testUnknownAndExpiredNamesAreNil() {
        let key = makeKey(name: 7, encryptFrom: t(0), encryptUntil: t(10), decryptUntil: t(20))
        let ring = TicketKeyRing(generation: 1, keys: [key], encryptionKey: key)
        var unknown = key.nameBytes
        unknown[15] ^= 1  // differs only in the last byte (the low word)
        XCTAssertNil(unknown.withUnsafeBytes { ring.lookup(name: $0, at: t(5)) })
        unknown = key.nameBytes
        unknown[0] ^= 1  // and only in the first (the high word)
        XCTAssertNil(unknown.withUnsafeBytes { ring.lookup(name: $0, at: t(5)) })
        XCTAssertNotNil(key.nameBytes.withUnsafeBytes { ring.lookup(name: $0, at: t(19)) })
        XCTAssertNil(key.nameBytes.withUnsafeBytes { ring.lookup(name: $0, at: t(20)) }, "expired = unknown")
    }

    func testInfoNeverContainsSecrets() {
        let keys = [
            makeKey(name: 0x31, cipher: .aes128cbc, aes: 0x40, hmac: 0x80, encryptUntil: .distantPast),
            makeKey(name: 0x32, cipher: .aes256cbc, aes: 0x90, hmac: 0xC0),
        ]
        let ring = TicketKeyRing(generation: 3, keys: keys, encryptionKey: keys[1])
        let info = ring.info(at: t(0))
        var text = String(describing: info) + String(reflecting: info) + keys.map(\.description).joined()
        dump(info, to: &text)
        dump(keys, to: &text)
        for key in keys {
            for secret in [key.aesBytes, key.hmacBytes] {
                XCTAssertFalse(text.contains(hex(secret)), "secret hex leaked")
                XCTAssertFalse(text.contains(hex(secret).uppercased()), "secret hex leaked")
                XCTAssertFalse(text.contains(hex(secret.prefix(8))), "part of a secret leaked")
            }
            XCTAssertTrue(text.contains(key.nameHex), "the public name is shown")
        }
        XCTAssertEqual(info.map(\.state), [.stale, .current])
        XCTAssertEqual(info.map(\.isEncryptionKey), [false, true])
        XCTAssertEqual(info[0].nameHex, String(repeating: "31", count: 16))
        XCTAssertEqual(info[0].cipher, .aes128cbc)
    }

    func testStorePublishAndWorkerReader() {
        let a = makeKey(name: 1)
        let store = TicketKeyStore(initial: TicketKeyRing(generation: 1, keys: [a], encryptionKey: a))
        let reader = TicketKeyRingReader(store: store)
        XCTAssertEqual(store.generation, 1)
        XCTAssertFalse(reader.refresh(), "nothing new")
        let b = makeKey(name: 2)
        store.publish(TicketKeyRing(generation: 2, keys: [b, a], encryptionKey: b))
        XCTAssertEqual(store.generation, 2)
        XCTAssertTrue(reader.ring.encryptionKey === a, "the worker keeps its ring until it refreshes")
        XCTAssertTrue(reader.refresh())
        XCTAssertTrue(reader.ring.encryptionKey === b)
        XCTAssertEqual(reader.ring.generation, 2)
        XCTAssertFalse(reader.refresh())
        XCTAssertTrue(store.current() === reader.ring)
    }
}
