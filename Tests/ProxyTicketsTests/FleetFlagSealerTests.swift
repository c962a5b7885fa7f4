import ProxyCore
import XCTest

@testable import ProxyTickets

/// The detector's fleet entries (issue #14): sealed under a key derived from the wrapping key, bound to their Redis
/// key, with an authenticated expiry.
final class FleetFlagSealerTests: XCTestCase {
    let ja4 = "t12d1209h2_d34a8e72043a_b39be8c56a14"
    var slot: String { "edgeproxy:tickets:detector:" + ja4 }

    func wrapping(_ id: String, byte: UInt8) -> WrappingKey {
        let bytes = [UInt8](repeating: byte, count: 32)
        return try! bytes.withUnsafeBytes { try WrappingKey(id: id, bytes: $0) }
    }

    func entry(expires: Int64 = 1000, tag: String? = "schannel") -> FleetFlagEntry {
        FleetFlagEntry(
            ja4: ja4,
            ja3Hash: "0123456789abcdef0123456789abcdef",
            tag: tag,
            flaggedAt: t(100),
            expiresAt: t(expires),
            aborts: 10.25,
            abortRate: 1,
            baselineAbortRate: 0.015,
            prefixes: 4,
            fallbacks: 9.5,
            instance: "host-a:4242"
        )
    }

    func testRoundTripKeepsEveryField() throws {
        let s = try FleetFlagSealer(wrapping: TicketKeyWrapper(current: wrapping("k1", byte: 1)))
        for e in [entry(), entry(tag: nil)] {
            let sealed = try XCTUnwrap(s.seal(e, slot: slot))
            XCTAssertEqual(try s.open(sealed, slot: slot, now: t(500)).get(), e)
            XCTAssertEqual(TicketKeyWrapper.wrappingKeyID(of: sealed), nil, "not a ticket-key entry (other magic)")
            XCTAssertEqual(Array(sealed[0..<4]), Array("EPD1".utf8))
            XCTAssertNil(find(Array(ja4.utf8), in: sealed), "the plaintext is encrypted")
        }
    }

    func testExpiredEntryIsRefusedEvenThoughAuthentic() throws {
        let s = try FleetFlagSealer(wrapping: TicketKeyWrapper(current: wrapping("k1", byte: 1)))
        let sealed = try XCTUnwrap(s.seal(entry(expires: 1000), slot: slot))
        XCTAssertEqual(s.open(sealed, slot: slot, now: t(1000)), .failure(.expired))
        XCTAssertEqual(s.open(sealed, slot: slot, now: t(5000)), .failure(.expired))
        XCTAssertNoThrow(try s.open(sealed, slot: slot, now: t(999)).get())
    }

    func testEveryFlippedByteIsRejected() throws {
        let s = try FleetFlagSealer(wrapping: TicketKeyWrapper(current: wrapping("k1", byte: 3)))
        let sealed = try XCTUnwrap(s.seal(entry(), slot: slot))
        var tampered = 0
        for i in 0..<sealed.count {
            var bad = sealed
            bad[i] ^= 0x01
            switch s.open(bad, slot: slot, now: t(500)) {
            case .success: XCTFail("byte \(i) flipped and the entry still opened")
            case .failure(.envelope(.tampered)): tampered += 1
            case .failure: break
            }
        }
        XCTAssertGreaterThan(tampered, sealed.count - 10)
        XCTAssertEqual(
            s.open(Array(sealed.dropLast()), slot: slot, now: t(500)),
            .failure(.envelope(.tampered(id: "k1")))
        )
        XCTAssertEqual(s.open([], slot: slot, now: t(500)), .failure(.envelope(.malformed)))
    }

    func testEntryMovedToAnotherFingerprintsKeyDoesNotOpen() throws {
        let s = try FleetFlagSealer(wrapping: TicketKeyWrapper(current: wrapping("k1", byte: 3)))
        let sealed = try XCTUnwrap(s.seal(entry(), slot: slot))
        let other = "edgeproxy:tickets:detector:t13d1516h2_8daaf6152771_02713d6af862"
        XCTAssertEqual(s.open(sealed, slot: other, now: t(500)), .failure(.envelope(.tampered(id: "k1"))))
    }

    func testWrongKeySameIDIsTamperedUnknownIDIsForeign() throws {
        let a = try FleetFlagSealer(wrapping: TicketKeyWrapper(current: wrapping("k1", byte: 1)))
        let b = try FleetFlagSealer(wrapping: TicketKeyWrapper(current: wrapping("k1", byte: 2)))
        let c = try FleetFlagSealer(wrapping: TicketKeyWrapper(current: wrapping("k2", byte: 1)))
        let sealed = try XCTUnwrap(a.seal(entry(), slot: slot))
        XCTAssertEqual(b.open(sealed, slot: slot, now: t(500)), .failure(.envelope(.tampered(id: "k1"))))
        XCTAssertEqual(c.open(sealed, slot: slot, now: t(500)), .failure(.envelope(.foreign(id: "k1"))))
    }

    func testTheFlagKeyIsDerivedNotTheWrappingKeyItself() throws {
        // Sealed directly under the wrapping key (what a careless implementation would do) with the flag format's
        // magic: must not open, so the wrapping key alone (say, leaked from a ticket-key tool) forges nothing here
        // without the derivation, and the derived key differs from the wrapping key.
        let wk = wrapping("k1", byte: 9)
        let s = try FleetFlagSealer(wrapping: TicketKeyWrapper(current: wk))
        let plain = FleetFlagSealer.encode(entry())
        let direct = try XCTUnwrap(
            plain.withUnsafeBytes {
                TicketKeyWrapper(current: wk).sealEnvelope(
                    magic: FleetFlagSealer.magic,
                    context: Array(slot.utf8),
                    plain: $0
                )
            }
        )
        XCTAssertEqual(s.open(direct, slot: slot, now: t(500)), .failure(.envelope(.tampered(id: "k1"))))
        let derived = try FleetFlagSealer.derive(wk)
        XCTAssertEqual(derived.id, "k1")
        let same = derived.secret.withUnsafeBytes { d in wk.secret.withUnsafeBytes { Array(d) == Array($0) } }
        XCTAssertFalse(same)
        // Deterministic: every instance with the wrapping key derives the same flag key.
        let again = try FleetFlagSealer.derive(wk)
        XCTAssertTrue(derived.secret.withUnsafeBytes { d in again.secret.withUnsafeBytes { Array(d) == Array($0) } })
    }

    func testPreviousWrappingKeyStillOpens() throws {
        let old = wrapping("old", byte: 4)
        let sealed = try XCTUnwrap(FleetFlagSealer(wrapping: TicketKeyWrapper(current: old)).seal(entry(), slot: slot))
        let rotated = try FleetFlagSealer(
            wrapping: TicketKeyWrapper(current: wrapping("new", byte: 5), previous: [old])
        )
        XCTAssertNoThrow(try rotated.open(sealed, slot: slot, now: t(500)).get())
    }

    func testAuthenticPlaintextOfAnotherShapeIsMalformed() throws {
        let wk = wrapping("k1", byte: 9)
        let s = try FleetFlagSealer(wrapping: TicketKeyWrapper(current: wk))
        let derived = TicketKeyWrapper(current: try FleetFlagSealer.derive(wk))
        for plain in [[UInt8]([2]), [1, 2, 3], FleetFlagSealer.encode(entry()) + [0]] {
            let sealed = try XCTUnwrap(
                plain.withUnsafeBytes {
                    derived.sealEnvelope(magic: FleetFlagSealer.magic, context: Array(slot.utf8), plain: $0)
                }
            )
            XCTAssertEqual(s.open(sealed, slot: slot, now: t(500)), .failure(.malformed))
        }
        // An honest entry for another JA4 stored under this JA4's key (sealed for that key) is refused too.
        var e = entry()
        e.ja4 = "t13d1516h2_8daaf6152771_02713d6af862"
        let sealed = try XCTUnwrap(s.seal(e, slot: slot))
        XCTAssertEqual(s.open(sealed, slot: slot, now: t(500)), .failure(.malformed))
    }

    private func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard needle.count <= hay.count else { return nil }
        for i in 0...(hay.count - needle.count) where Array(hay[i..<(i + needle.count)]) == needle { return i }
        return nil
    }
}
