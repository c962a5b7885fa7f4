import EdgeProxyTestSupport
import Foundation
import ProxyCore
import XCTest

@testable import ProxyDetector

/// The detector against synthetic observation streams: a renewal-intolerant population is flagged exactly when
/// every threshold is met; normal populations with random drops, one address, or one network are not.
final class DetectorTests: XCTestCase {
    private let brokenLabels = FingerprintLabels(ja4: "t12d1209h1_broken_000000000000", ja3Hash: "aa", tag: nil)
    private let normalLabels = FingerprintLabels(ja4: "t13d1516h2_normal_000000000000", ja3Hash: "bb", tag: nil)
    private var clock: UInt64 = 1_000_000_000_000

    private func obs(
        _ labels: FingerprintLabels,
        _ kind: HandshakeObservation.Kind,
        _ result: HandshakeObservation.Result,
        from a: UInt32,
        version: UInt16 = 0x0303,
        scsv: Bool = false,
        after ms: UInt64 = 10
    ) -> HandshakeObservation {
        clock += ms * 1_000_000
        return HandshakeObservation(
            key: DetectorKey.of(ja4: labels.ja4),
            labels: labels,
            kind: kind,
            result: result,
            address: .v4(a),
            highestVersion: version,
            fallbackSCSV: scsv,
            time: clock
        )
    }

    private func ip(_ b: UInt32, _ c: UInt32, _ d: UInt32 = 1) -> UInt32 { 127 << 24 | b << 16 | c << 8 | d }

    private func settings() -> DetectorSettings {
        var s = DetectorSettings()
        s.minAborts = 10
        s.minPrefixes = 3
        return s
    }

    /// Broken clients from four /24s: each visit is a full handshake (baseline, completes), then a stale-ticket
    /// resumption with inline renewal that aborts, then a TLS 1.0 retry (a fallback).
    func testBrokenPopulationFlaggedAtThreshold() {
        let d = Detector(settings: settings())
        let key = DetectorKey.of(ja4: brokenLabels.ja4)
        var abortsBeforeFlag = 0
        var flaggedAt: Int?
        for round in 0..<10 {
            for c in 0..<4 {
                let a = ip(UInt32(2 + c), 0)
                d.record(obs(brokenLabels, .baseline, .completed, from: a), wall: 1000)
                let f = d.record(obs(brokenLabels, .renewal, .aborted, from: a), wall: 1000)
                if flaggedAt == nil { abortsBeforeFlag += 1 }
                d.record(obs(normalLabels, .baseline, .failed, from: a, version: 0x0301), wall: 1000)
                if f != nil {
                    XCTAssertNil(flaggedAt, "flagged once")
                    flaggedAt = round * 4 + c
                }
            }
        }
        XCTAssertEqual(abortsBeforeFlag, 10, "flagged on the minAborts-th abort (decay is negligible within seconds)")
        XCTAssertNotNil(d.flagged[key])
        XCTAssertEqual(d.quarantinedKeys, [], "observe mode quarantines nothing")
        let e = d.entries[key]!
        XCTAssertEqual(e.totalFallbacks, 40, "every TLS 1.0 retry after an abort is a fallback")
        XCTAssertEqual(e.distinctAbortPrefixes, 4)
        XCTAssertNil(d.flagged[DetectorKey.of(ja4: normalLabels.ja4)])
    }

    func testQuarantineModePublishesFlaggedKeys() {
        var s = settings()
        s.mode = .quarantine
        let d = Detector(settings: s)
        for i in 0..<12 { d.record(obs(brokenLabels, .renewal, .aborted, from: ip(UInt32(2 + i % 3), 0)), wall: 1) }
        XCTAssertEqual(d.quarantinedKeys, [DetectorKey.of(ja4: brokenLabels.ja4)])
    }

    /// One address (or one /24) aborting every renewal never flags, however many aborts.
    func testOneAddressOrOneNetworkCannotFlag() {
        let d = Detector(settings: settings())
        for _ in 0..<500 { d.record(obs(brokenLabels, .renewal, .aborted, from: ip(9, 9)), wall: 1) }
        for i in 0..<500 { d.record(obs(brokenLabels, .renewal, .aborted, from: ip(9, 9, UInt32(i % 250))), wall: 1) }
        XCTAssertTrue(d.flagged.isEmpty)
        // Two prefixes are still one short of the default three.
        for _ in 0..<50 { d.record(obs(brokenLabels, .renewal, .aborted, from: ip(9, 10)), wall: 1) }
        XCTAssertTrue(d.flagged.isEmpty)
        d.record(obs(brokenLabels, .renewal, .aborted, from: ip(9, 11)), wall: 1)
        XCTAssertEqual(d.flagged.count, 1)
    }

    /// Normal clients that drop connections at random points at a few per cent, 10,000 handshakes from many
    /// prefixes: the renewal abort rate stays near the baseline's, nothing is flagged.
    func testRandomDropsNeverFlag() {
        let d = Detector(settings: settings())
        var rng = SplitMix64(seed: 42)
        let labels = (0..<5).map { FingerprintLabels(ja4: "t13d15\($0)6h2_x_y", ja3Hash: "\($0)", tag: nil) }
        var aborts = 0
        for _ in 0..<10_000 {
            let l = labels[Int(rng.next() % 5)]
            let kind: HandshakeObservation.Kind = rng.next() % 2 == 0 ? .renewal : .baseline
            let drop = rng.next() % 100 < 4
            if drop { aborts += 1 }
            d.record(
                obs(
                    l,
                    kind,
                    drop ? .aborted : .completed,
                    from: ip(UInt32(rng.next() % 200), UInt32(rng.next() % 200)),
                    after: 5
                ),
                wall: 1
            )
        }
        XCTAssertGreaterThan(aborts, 200)
        XCTAssertTrue(d.flagged.isEmpty)
    }

    /// A fingerprint whose other handshakes abort just as often (a bad network) is not flagged: the ratio against
    /// its baseline fails.
    func testHighBaselineAbortsDoNotFlag() {
        let d = Detector(settings: settings())
        for i in 0..<100 {
            let a = ip(UInt32(i % 10), 1)
            d.record(obs(brokenLabels, .renewal, i % 3 == 0 ? .completed : .aborted, from: a), wall: 1)
            d.record(obs(brokenLabels, .baseline, i % 3 == 0 ? .completed : .aborted, from: a), wall: 1)
        }
        XCTAssertTrue(d.flagged.isEmpty)
    }

    /// Counts decay: aborts spread over many half-lives never accumulate to the threshold.
    func testEvidenceDecays() {
        var s = settings()
        s.halfLife = 60
        let d = Detector(settings: s)
        for i in 0..<30 {
            d.record(obs(brokenLabels, .renewal, .aborted, from: ip(UInt32(i % 5), 0), after: 300_000), wall: 1)
        }
        XCTAssertTrue(d.flagged.isEmpty)
        let e = d.entries[DetectorKey.of(ja4: brokenLabels.ja4)]!
        XCTAssertLessThan(e.renewalAborts, 1.1)
        XCTAssertEqual(e.totalRenewalAborts, 30)
    }

    func testTopKIsBounded() {
        var s = settings()
        s.capacity = 100
        let d = Detector(settings: s)
        // One busy fingerprint, then a flood of one-off fingerprints.
        for i in 0..<50 { d.record(obs(normalLabels, .baseline, .completed, from: ip(1, UInt32(i))), wall: 1) }
        for i in 0..<5000 {
            let l = FingerprintLabels(ja4: "t13d\(i)", ja3Hash: "", tag: nil)
            d.record(obs(l, .baseline, .completed, from: ip(2, 2)), wall: 1)
            XCTAssertLessThanOrEqual(d.entries.count, 100)
        }
        XCTAssertNotNil(d.entries[DetectorKey.of(ja4: normalLabels.ja4)], "the busy fingerprint survives eviction")
        XCTAssertGreaterThan(d.evictions, 0)
    }

    func testFlagTTLAndCap() {
        var s = settings()
        s.quarantineTTL = 100
        s.maxFlagged = 2
        s.minAborts = 1
        s.minPrefixes = 1
        let d = Detector(settings: s)
        for i in 0..<5 {
            let l = FingerprintLabels(ja4: "broken\(i)", ja3Hash: "", tag: nil)
            d.record(obs(l, .renewal, .aborted, from: ip(3, 3)), wall: 1000)
        }
        XCTAssertEqual(d.flagged.count, 2, "capped")
        XCTAssertEqual(d.flagsRefusedByCap, 3)
        XCTAssertEqual(d.expire(wall: 1099).count, 0)
        XCTAssertEqual(d.expire(wall: 1100).count, 2)
        XCTAssertTrue(d.flagged.isEmpty)
    }

    /// Flags learnt from the fleet: applied in quarantine mode like local ones, capped, dropped at their own expiry,
    /// extended by a later copy, and never replacing a local flag.
    func testAdoptedFleetFlagsRespectCapExpiryAndLocalFlags() {
        var s = settings()
        s.mode = .quarantine
        s.maxFlagged = 2
        s.minAborts = 1
        s.minPrefixes = 1
        s.quarantineTTL = 100
        let d = Detector(settings: s)
        func fleet(_ ja4: String, expires: Double) -> FlaggedFingerprint {
            var f = FlaggedFingerprint(
                key: DetectorKey.of(ja4: ja4),
                labels: FingerprintLabels(ja4: ja4, ja3Hash: "", tag: nil),
                flaggedAt: 0,
                expiresAt: expires,
                aborts: 10,
                abortRate: 1,
                baselineAbortRate: 0,
                prefixes: 4,
                fallbacks: 10,
                local: false
            )
            f.fleetInstance = "other:1"
            return f
        }
        XCTAssertFalse(d.adopt(fleet("expired", expires: 999), wall: 1000), "already expired")
        XCTAssertTrue(d.adopt(fleet("remote", expires: 1050), wall: 1000))
        XCTAssertTrue(d.quarantinedKeys.contains(DetectorKey.of(ja4: "remote")))
        XCTAssertFalse(d.adopt(fleet("remote", expires: 1080), wall: 1000), "known: extended, not added")
        XCTAssertEqual(d.flagged[DetectorKey.of(ja4: "remote")]?.expiresAt, 1080)
        // A local flag wins over a fleet copy of the same fingerprint.
        d.record(obs(brokenLabels, .renewal, .aborted, from: ip(5, 5)), wall: 1000)
        let local = DetectorKey.of(ja4: brokenLabels.ja4)
        XCTAssertEqual(d.flagged[local]?.local, true)
        XCTAssertFalse(d.adopt(fleet(brokenLabels.ja4, expires: 5000), wall: 1000))
        XCTAssertEqual(d.flagged[local]?.expiresAt, 1100)
        XCTAssertNil(d.flagged[local]?.fleetInstance)
        // The cap (2) holds for fleet flags too.
        XCTAssertFalse(d.adopt(fleet("third", expires: 2000), wall: 1000))
        XCTAssertEqual(d.flagsRefusedByCap, 1)
        XCTAssertEqual(d.expire(wall: 1080), [DetectorKey.of(ja4: "remote")])
        XCTAssertEqual(Set(d.flagged.keys), [local])
        // A fleet flag this instance then sees evidence for itself becomes its own.
        XCTAssertTrue(d.adopt(fleet("twin", expires: 2000), wall: 1080))
        d.record(
            obs(FingerprintLabels(ja4: "twin", ja3Hash: "", tag: nil), .renewal, .aborted, from: ip(6, 6)),
            wall: 1090
        )
        let twin = d.flagged[DetectorKey.of(ja4: "twin")]
        XCTAssertEqual(twin?.local, true)
        XCTAssertNil(twin?.fleetInstance)
        XCTAssertEqual(twin?.expiresAt, 2000, "a renewal never shortens a flag")
    }

    func testLabelCacheKeepsLabelsPerFingerprintAndIsBounded() {
        var cache = FingerprintLabelCache()
        XCTAssertNil(cache.find(7))
        let (key, labels) = cache.insert(7, FingerprintLabels(ja4: "ja4-7", ja3Hash: "", tag: nil))
        XCTAssertEqual(key, DetectorKey.of(ja4: "ja4-7"))
        XCTAssertTrue(cache.find(7)?.labels === labels)
        XCTAssertEqual(cache.find(7)?.key, key)
        for h in UInt64(100)..<UInt64(100 + FingerprintLabelCache.capacity) {
            _ = cache.insert(h, FingerprintLabels(ja4: "x\(h)", ja3Hash: "", tag: nil))
        }
        XCTAssertNil(cache.find(7), "cleared when full: bounded")
        XCTAssertLessThanOrEqual(cache.count, FingerprintLabelCache.capacity)
    }

    /// A reconnection long after the abort, or offering the same version, is not a fallback; SCSV is.
    func testFallbackRules() {
        let d = Detector(settings: settings())
        let key = DetectorKey.of(ja4: brokenLabels.ja4)
        d.record(obs(brokenLabels, .renewal, .aborted, from: ip(4, 4)), wall: 1)
        d.record(obs(normalLabels, .baseline, .completed, from: ip(4, 4)), wall: 1)
        d.record(obs(normalLabels, .baseline, .completed, from: ip(4, 4), version: 0x0301), wall: 1)
        XCTAssertEqual(d.entries[key]!.totalFallbacks, 1, "lower version from the same address")
        d.record(obs(brokenLabels, .renewal, .aborted, from: ip(4, 4)), wall: 1)
        d.record(obs(normalLabels, .baseline, .completed, from: ip(4, 4), version: 0x0301, after: 6000), wall: 1)
        XCTAssertEqual(d.entries[key]!.totalFallbacks, 1, "too late")
        d.record(obs(brokenLabels, .renewal, .aborted, from: ip(4, 4)), wall: 1)
        d.record(obs(normalLabels, .baseline, .completed, from: ip(4, 5), version: 0x0301), wall: 1)
        XCTAssertEqual(d.entries[key]!.totalFallbacks, 1, "another address")
        d.record(obs(normalLabels, .baseline, .completed, from: ip(4, 4), scsv: true), wall: 1)
        XCTAssertEqual(d.entries[key]!.totalFallbacks, 2, "TLS_FALLBACK_SCSV")
    }

    func testQueueIsBoundedAndOrdered() {
        let q = ObservationQueue(capacity: 8)
        for i in 0..<10 { q.push(obs(normalLabels, .baseline, .completed, from: UInt32(i))) }
        XCTAssertEqual(q.dropped, 2)
        var seen: [UInt64] = []
        q.drain { seen.append($0.address.low) }
        XCTAssertEqual(seen, Array(0..<8))
        q.push(obs(normalLabels, .baseline, .completed, from: 99))
        seen = []
        q.drain { seen.append($0.address.low) }
        XCTAssertEqual(seen, [99])
    }

    /// One producer thread, one consumer thread: nothing lost or duplicated beyond what `dropped` reports.
    func testQueueAcrossThreads() {
        let q = ObservationQueue(capacity: 64)
        let n = 20_000
        let labels = normalLabels
        let producer = Thread {
            var t: UInt64 = 0
            for i in 0..<n {
                t += 1
                q.push(
                    HandshakeObservation(
                        key: 1,
                        labels: labels,
                        kind: .baseline,
                        result: .completed,
                        address: .v4(UInt32(i)),
                        highestVersion: 0x0303,
                        fallbackSCSV: false,
                        time: t
                    )
                )
            }
        }
        producer.start()
        var received = 0
        var last: Int64 = -1
        var ordered = true
        while !producer.isFinished || received + q.dropped < n {
            q.drain {
                if Int64($0.address.low) <= last { ordered = false }
                last = Int64($0.address.low)
                received += 1
            }
        }
        q.drain { _ in received += 1 }
        XCTAssertTrue(ordered)
        XCTAssertEqual(received + q.dropped, n)
    }
}
