import ProxyCore
import XCTest

@testable import ProxyTickets

final class MemoryKeySourceTests: XCTestCase {
    let hour: Int64 = 3600
    var schedule: TicketKeySchedule { try! TicketKeySchedule(rotationSeconds: hour, lifetimeSeconds: 3 * hour) }

    /// The promises that must hold after every tick.
    func assertInvariants(
        _ store: TicketKeyStore,
        at now: Timestamp,
        file: StaticString = #filePath,
        line: UInt = #line
    ) {
        let ring = store.current()
        let current = ring.keys.filter { $0.state(at: now) == .current }
        XCTAssertEqual(current.count, 1, "exactly one current key", file: file, line: line)
        XCTAssertTrue(ring.encryptionKey === current.first, file: file, line: line)
        XCTAssertTrue(ring.encryptionKey(at: now) === current.first, file: file, line: line)
        let next = ring.keys.filter { $0.encryptFrom == ring.encryptionKey.encryptUntil }
        XCTAssertEqual(next.count, 1, "the next key exists", file: file, line: line)
        XCTAssertEqual(next.first?.state(at: now), .next, file: file, line: line)
        XCTAssertLessThanOrEqual(ring.keys.count, schedule.ringSize, file: file, line: line)
        XCTAssertTrue(
            ring.keys.allSatisfy { $0.state(at: now).decrypts },
            "no expired key in the ring",
            file: file,
            line: line
        )
        XCTAssertTrue(ring.keys.allSatisfy { !$0.isZeroized }, file: file, line: line)
        XCTAssertEqual(ring.generation, store.generation, file: file, line: line)
    }

    func testStartsWithCurrentAndNextAndPublishesOnlyOnChange() throws {
        let start = t(100 * hour + 1800)
        let source = try MemoryKeySource(schedule: schedule, now: start)
        let store = source.store
        XCTAssertEqual(store.generation, 1)
        XCTAssertEqual(store.current().keys.count, 2)
        XCTAssertEqual(store.current().encryptionKey.encryptFrom, t(100 * hour), "aligned to the epoch")
        XCTAssertEqual(store.current().encryptionKey.cipher, .aes256cbc)
        assertInvariants(store, at: start)
        XCTAssertFalse(try source.tick(now: start))
        XCTAssertFalse(try source.tick(now: t(101 * hour).adding(nanoseconds: -1)))
        XCTAssertEqual(store.generation, 1)
        let next = store.current().keys.first { $0.state(at: start) == .next }!
        XCTAssertTrue(try source.tick(now: t(101 * hour)), "boundary: a new next key is made")
        XCTAssertEqual(store.generation, 2)
        XCTAssertTrue(store.current().encryptionKey === next, "the pre-made next key takes over")
        assertInvariants(store, at: t(101 * hour))
    }

    func testSimulatedDayRetiresAndZeroizesKeys() throws {
        let start = t(100 * hour)
        let source = try MemoryKeySource(schedule: schedule, now: start, zeroizeGraceSeconds: 60)
        let store = source.store
        let first = store.current().encryptionKey  // epoch 100: decrypts until 104h
        XCTAssertEqual(first.decryptUntil, t(104 * hour))
        var everSeen: [TicketKey] = store.current().keys
        var generation = store.generation
        var boundaries = 0
        var now = start
        // Every 5 minutes for 30 hours.
        for step in 1...(30 * 12) {
            now = start.adding(seconds: Int64(step) * 300)
            let published = try source.tick(now: now)
            if now.nanosecondsSinceEpoch % (hour * 1_000_000_000) == 0 { boundaries += 1 }
            XCTAssertEqual(published, store.generation != generation)
            generation = store.generation
            assertInvariants(store, at: now)
            everSeen.append(contentsOf: store.current().keys.filter { k in !everSeen.contains { $0 === k } })

            if now == t(104 * hour) {
                XCTAssertFalse(store.current().keys.contains { $0 === first }, "retired at decryptUntil")
                XCTAssertFalse(first.isZeroized, "not wiped before the grace")
            }
            if now == t(104 * hour + 300) { XCTAssertTrue(first.isZeroized, "wiped after the grace") }
        }
        XCTAssertEqual(boundaries, 30)
        XCTAssertEqual(store.generation, 1 + 30, "one publication per boundary, none in between")
        XCTAssertEqual(store.current().keys.count, schedule.ringSize)
        // Every key that left the ring more than the grace ago was wiped; the others were not.
        for key in everSeen {
            let inRing = store.current().keys.contains { $0 === key }
            let wipeDue = key.decryptUntil.adding(seconds: 60) <= now
            XCTAssertEqual(key.isZeroized, !inRing && wipeDue, key.description)
            if key.isZeroized {
                XCTAssertTrue(key.aesBytes.allSatisfy { $0 == 0 } && key.hmacBytes.allSatisfy { $0 == 0 })
            }
        }
        XCTAssertEqual(everSeen.count, 2 + 30)
        XCTAssertEqual(Set(everSeen.map(\.nameHex)).count, everSeen.count, "names are unique")
    }

    func testLongPauseCatchesUp() throws {
        let source = try MemoryKeySource(schedule: schedule, now: t(100 * hour))
        XCTAssertTrue(try source.tick(now: t(200 * hour + 5)))
        assertInvariants(source.store, at: t(200 * hour + 5))
        XCTAssertEqual(source.store.current().keys.count, 2, "all old keys expired")
        XCTAssertEqual(source.store.current().encryptionKey.encryptFrom, t(200 * hour))
    }

    func testRotateNow() throws {
        let now = t(100 * hour + 1000)
        let source = try MemoryKeySource(schedule: schedule, now: t(100 * hour))
        let store = source.store
        let oldRing = store.current()
        let oldCurrent = oldRing.encryptionKey
        let oldNext = oldRing.keys.first { $0.state(at: now) == .next }!

        let promoted = try source.rotateNow(now: now)
        let ring = store.current()
        XCTAssertEqual(ring.generation, oldRing.generation + 1)
        XCTAssertEqual(promoted.nameHex, oldNext.nameHex, "the next key becomes current")
        XCTAssertTrue(ring.encryptionKey === promoted)
        XCTAssertEqual(promoted.state(at: now), .current)
        XCTAssertEqual(promoted.encryptFrom, now)
        XCTAssertEqual(promoted.encryptUntil, t(102 * hour), "keeps its scheduled end: the grid stays aligned")
        XCTAssertEqual(promoted.aesBytes, oldNext.aesBytes, "same secrets")

        let demoted = ring.lookup(nameHigh: oldCurrent.nameHigh, nameLow: oldCurrent.nameLow, at: now)
        XCTAssertEqual(demoted?.state, .stale, "the current key becomes stale")
        XCTAssertEqual(demoted?.key.encryptUntil, now)
        XCTAssertEqual(demoted?.key.decryptUntil, now.adding(seconds: 3 * hour))

        let newNext = ring.keys.filter { $0.state(at: now) == .next }
        XCTAssertEqual(newNext.count, 1, "a new next key is made")
        XCTAssertEqual(newNext.first?.encryptFrom, t(102 * hour))
        XCTAssertNotEqual(newNext.first?.nameHex, oldNext.nameHex)
        assertInvariants(store, at: now)
        XCTAssertFalse(oldCurrent.isZeroized, "workers on the old ring still decrypt with it")

        // A tick at the same time changes nothing; the schedule resumes at the next boundary.
        XCTAssertFalse(try source.tick(now: now))
        XCTAssertTrue(try source.tick(now: t(102 * hour)))
        XCTAssertEqual(store.current().encryptionKey.nameHex, newNext.first?.nameHex)
        assertInvariants(store, at: t(102 * hour))
    }

    func testRepeatedRotationStaysBounded() throws {
        let source = try MemoryKeySource(schedule: schedule, now: t(100 * hour))
        var now = t(100 * hour)
        for _ in 0..<100 {
            now = now.adding(seconds: 1)
            try source.rotateNow(now: now)
            XCTAssertLessThanOrEqual(source.store.current().keys.count, TicketKeySchedule.maxRingSize)
        }
        XCTAssertEqual(source.store.current().keys.count, TicketKeySchedule.maxRingSize)
        XCTAssertEqual(source.store.generation, 101)
        XCTAssertEqual(source.store.current().keys.filter { $0.state(at: now) == .current }.count, 1)
    }

    func testPublishesIntoAnExistingStore() throws {
        let seed = makeKey(name: 9)
        let store = TicketKeyStore(initial: TicketKeyRing(generation: 7, keys: [seed], encryptionKey: seed))
        let source = try MemoryKeySource(schedule: schedule, now: t(5 * hour), store: store)
        XCTAssertTrue(source.store === store)
        XCTAssertEqual(store.generation, 8)
    }
}
