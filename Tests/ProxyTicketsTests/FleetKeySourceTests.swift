import ProxyCore
import XCTest

@testable import ProxyTickets

final class FleetKeyPlanTests: XCTestCase {
    func plan(
        r: Int64 = 3600,
        l: Int64 = 18 * 3600,
        skew: Int64 = 60,
        grace: Int64 = 300,
        poll: Int64 = 1
    )
        -> FleetKeyPlan
    {
        FleetKeyPlan(
            schedule: try! TicketKeySchedule(rotationSeconds: r, lifetimeSeconds: l),
            maxClockSkewNanoseconds: skew * 1_000_000_000,
            graceNanoseconds: grace * 1_000_000_000,
            pollNanoseconds: poll * 1_000_000_000,
            prefix: "ep:"
        )
    }

    func testSlotNamesCarryThePeriodAndRoundTrip() {
        let p = plan()
        XCTAssertEqual(p.slot(epoch: 480_000), "ep:epoch:3600000:480000")
        XCTAssertEqual(p.epoch(ofSlot: "ep:epoch:3600000:480000"), 480_000)
        XCTAssertNil(p.epoch(ofSlot: "ep:epoch:2000:480000"), "another period's slot is not ours")
        XCTAssertNil(plan(r: 2, l: 6).epoch(ofSlot: p.slot(epoch: 5)))
        XCTAssertEqual(p.slot(epoch: -3), "ep:epoch:3600000:-3")
    }

    func testLookaheadCoversTwiceTheSkewPlusOnePoll() {
        XCTAssertEqual(plan().lookahead, 1, "R = 1 h, S = 1 min: one period ahead is enough")
        XCTAssertEqual(plan(r: 2, l: 6, skew: 0).lookahead, 1)
        XCTAssertEqual(plan(r: 60, l: 600, skew: 60).lookahead, 3, "2S + poll = 121 s needs 3 periods of 60 s")
        for (r, s) in [(Int64(3600), Int64(60)), (60, 60), (10, 7), (2, 0)] {
            let p = plan(r: r, l: r * 3, skew: s)
            // The reader that runs S behind holds key n from local (n - lookahead)R + poll; the first writer that
            // runs S ahead encrypts with it at true nR - S, i.e. reader-local nR - 2S.
            let holdsFrom = -p.lookahead * r + 1
            XCTAssertLessThanOrEqual(holdsFrom, -2 * s, "r=\(r) s=\(s)")
        }
    }

    func testDecryptWindowAndExpiryIncludeTwiceTheSkew() {
        let p = plan()
        XCTAssertEqual(p.decryptUntil(epoch: 10), Timestamp(secondsSinceEpoch: 11 * 3600 + 18 * 3600 + 120))
        // Created one period ahead, the entry outlives the decrypt window by one period.
        let created = Timestamp(secondsSinceEpoch: 9 * 3600)
        XCTAssertEqual(p.ttlMilliseconds(epoch: 10, now: created), (2 * 3600 + 18 * 3600 + 120 + 3600) * 1000)
        let e = p.epochsToHold(at: Timestamp(secondsSinceEpoch: 100 * 3600 + 5))
        XCTAssertEqual(e.upperBound, 101)
        // Epoch 81 decrypts until 82h + 18h + 120s = 100h + 120s > now; epoch 80 ended at 99h + 120s.
        XCTAssertEqual(e.lowerBound, 81)
        XCTAssertEqual(p.epochsToCreate(at: Timestamp(secondsSinceEpoch: 100 * 3600 + 5)), 100...101)
        XCTAssertLessThanOrEqual(e.count, p.ringSize)
    }

    func testSkewedInstancesAlwaysHoldEachOthersEncryptionKey() {
        // Two instances, clocks S ahead and S behind true time, sampled across boundaries: whatever key either
        // encrypts with, the other holds it (epochs to hold include it) and it decrypts there.
        let r: Int64 = 60
        let s: Int64 = 20
        let p = plan(r: r, l: 120, skew: s)
        for trueSecond in stride(from: Int64(6000), to: 6000 + 4 * r, by: 1) {
            for (writerOffset, readerOffset) in [(s, -s), (-s, s)] {
                let wNow = Timestamp(secondsSinceEpoch: trueSecond + writerOffset)
                let rNow = Timestamp(secondsSinceEpoch: trueSecond + readerOffset)
                let n = p.epoch(at: wNow)
                XCTAssertTrue(p.epochsToHold(at: rNow.adding(seconds: -1)).contains(n), "t=\(trueSecond) n=\(n)")
                XCTAssertLessThan(rNow, p.decryptUntil(epoch: n))
            }
        }
    }
}

final class FleetKeySourceTests: XCTestCase {
    let plan = FleetKeyPlan(
        schedule: try! TicketKeySchedule(rotationSeconds: 10, lifetimeSeconds: 20),
        maxClockSkewNanoseconds: 0,
        graceNanoseconds: 3_000_000_000,
        pollNanoseconds: 1_000_000_000,
        prefix: "ep:"
    )

    func encName(_ s: FleetKeySource, _ now: Timestamp) -> [UInt8] {
        s.store.current().encryptionKey(at: now).nameBytes
    }

    func testSharedCurrentKeyEncryptsAndNextSwitchesExactlyOnTheBoundary() throws {
        let k10 = makeKey(name: 10)
        let k11 = makeKey(name: 11)
        let src = try FleetKeySource(plan: plan, now: t(105), initialShared: [10: k10, 11: k11])
        XCTAssertEqual(encName(src, t(105)), k10.nameBytes)
        let ring = src.store.current()
        XCTAssertEqual(ring.lookup(name: k11.nameBytes.withUnsafeBytes { $0 }, at: t(105))?.state, .next)
        XCTAssertEqual(ring.encryptionKey(at: t(110)).nameBytes, k11.nameBytes, "same ring, past the boundary")
        XCTAssertEqual(src.localKeysMade, 0)
    }

    func testStoreDownAtStartMakesALocalKeyAndTheSharedKeyWinsLater() throws {
        let src = try FleetKeySource(plan: plan, now: t(105))
        XCTAssertEqual(src.localKeysMade, 1)
        let local = src.store.current().encryptionKey(at: t(105))
        let k10 = makeKey(name: 10)
        try src.adopt(shared: [10: k10, 11: makeKey(name: 11)], imported: nil, now: t(106))
        XCTAssertEqual(encName(src, t(106)), k10.nameBytes)
        // The local key still decrypts (tickets issued meanwhile keep resuming) but is stale.
        let found = src.store.current().lookup(nameHigh: local.nameHigh, nameLow: local.nameLow, at: t(106))
        XCTAssertEqual(found?.state, .stale)
        XCTAssertEqual(src.origins()[local.nameHex], .local)
    }

    func testMissingNextKeyExtendsCurrentForTheGraceThenFallsBackToALocalKey() throws {
        let k10 = makeKey(name: 10)
        let src = try FleetKeySource(plan: plan, now: t(105), initialShared: [10: k10])
        XCTAssertEqual(src.store.current().encryptionKey(at: t(112)).nameBytes, k10.nameBytes, "within grace")
        try src.tick(now: t(112))
        XCTAssertEqual(src.localKeysMade, 0)
        try src.tick(now: t(113))  // grace (3 s) over
        XCTAssertEqual(src.localKeysMade, 1)
        let enc = src.store.current().encryptionKey(at: t(113))
        XCTAssertNotEqual(enc.nameBytes, k10.nameBytes)
        XCTAssertEqual(src.origins()[enc.nameHex], .local)
        // k10's tickets still resume (stale) after the fallback.
        XCTAssertEqual(
            src.store.current().lookup(nameHigh: k10.nameHigh, nameLow: k10.nameLow, at: t(113))?.state,
            .stale
        )
    }

    func testStoreRestartedWithADifferentKeyForAnEpochAdoptsItAndKeepsTheOldOneDecrypting() throws {
        let old = makeKey(name: 10)
        let src = try FleetKeySource(plan: plan, now: t(105), initialShared: [10: old, 11: makeKey(name: 11)])
        let new = makeKey(name: 0x10)
        let replaced = try src.adopt(shared: [10: new], imported: nil, now: t(106))
        XCTAssertEqual(replaced, [10])
        XCTAssertEqual(encName(src, t(106)), new.nameBytes)
        XCTAssertEqual(
            src.store.current().lookup(nameHigh: old.nameHigh, nameLow: old.nameLow, at: t(106))?.state,
            .stale
        )
        XCTAssertEqual(src.origins()[old.nameHex], .replaced)
        XCTAssertEqual(try src.adopt(shared: [10: new], imported: nil, now: t(107)), [], "same key: nothing replaced")
    }

    func testExpiredEpochsLeaveTheRingAndAreReportedExpired() throws {
        let k10 = makeKey(name: 10)
        let src = try FleetKeySource(plan: plan, now: t(105), initialShared: [10: k10, 11: makeKey(name: 11)])
        try src.adopt(
            shared: [12: makeKey(name: 12), 13: makeKey(name: 13), 14: makeKey(name: 14)],
            imported: nil,
            now: t(131)
        )
        // Epoch 10 decrypts until 110 + 20 = 130.
        let ring = src.store.current()
        XCTAssertNil(ring.lookup(nameHigh: k10.nameHigh, nameLow: k10.nameLow, at: t(131)))
        XCTAssertTrue(ring.isExpired(nameHigh: k10.nameHigh, nameLow: k10.nameLow, at: t(131)))
        XCTAssertLessThanOrEqual(ring.keys.count, plan.ringSize)
    }

    func testImportedKeysOnlyDecryptUntilTheirEnd() throws {
        let src = try FleetKeySource(
            plan: plan,
            now: t(105),
            initialShared: [10: makeKey(name: 10), 11: makeKey(name: 11)]
        )
        let imp = makeKey(name: 0x77)
        try src.adopt(shared: [:], imported: [(imp, t(150))], now: t(106))
        let ring = src.store.current()
        XCTAssertEqual(ring.lookup(nameHigh: imp.nameHigh, nameLow: imp.nameLow, at: t(106))?.state, .stale)
        XCTAssertNotEqual(encName(src, t(106)), imp.nameBytes)
        try src.tick(now: t(150))
        XCTAssertNil(src.store.current().lookup(nameHigh: imp.nameHigh, nameLow: imp.nameLow, at: t(150)))
    }

    func testNoPublishWhenNothingChanged() throws {
        let src = try FleetKeySource(
            plan: plan,
            now: t(105),
            initialShared: [10: makeKey(name: 10), 11: makeKey(name: 11)]
        )
        let g = src.store.generation
        XCTAssertFalse(try src.tick(now: t(106)))
        try src.adopt(shared: [10: makeKey(name: 10), 11: makeKey(name: 11)], imported: nil, now: t(107))
        XCTAssertEqual(src.store.generation, g)
    }
}
