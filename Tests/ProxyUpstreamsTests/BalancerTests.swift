import XCTest

@testable import ProxyUpstreams

final class BalancerTests: XCTestCase {
    func testSmoothWeightedRoundRobinSequence() {
        var rr = SmoothWeightedRoundRobin(count: 3)
        let picks = (0..<7).map { _ in rr.pick(weights: [5, 1, 1], usable: { _ in true })! }
        XCTAssertEqual(picks, [0, 0, 1, 0, 2, 0, 0], "nginx's documented a a b a c a a")
    }

    func testSmoothWeightedRoundRobinEqualWeightsRotate() {
        var rr = SmoothWeightedRoundRobin(count: 3)
        let picks = (0..<6).map { _ in rr.pick(weights: [1, 1, 1], usable: { _ in true })! }
        XCTAssertEqual(picks, [0, 1, 2, 0, 1, 2])
    }

    func testSmoothWeightedRoundRobinSharesAndSkips() {
        var rr = SmoothWeightedRoundRobin(count: 4)
        var counts = [0, 0, 0, 0]
        for _ in 0..<600 { counts[rr.pick(weights: [3, 2, 1, 4], usable: { $0 != 3 })!] += 1 }
        XCTAssertEqual(counts, [300, 200, 100, 0], "exact shares among the usable ones")
        XCTAssertNil(rr.pick(weights: [1, 1], usable: { _ in false }))
        XCTAssertEqual(rr.pick(weights: [1, 1], usable: { _ in true }), 0, "resized on a new candidate count")
    }

    func testLeastOutstanding() {
        let w = [1, 1, 1]
        XCTAssertEqual(
            LeastOutstanding.pick(weights: w, start: 0, outstanding: { [5, 2, 9][$0] }, usable: { _ in true }),
            1
        )
        XCTAssertEqual(
            LeastOutstanding.pick(weights: w, start: 0, outstanding: { [5, 2, 9][$0] }, usable: { $0 != 1 }),
            0
        )
        // Ties: the first at or after start.
        for start in 0..<3 {
            XCTAssertEqual(
                LeastOutstanding.pick(weights: w, start: start, outstanding: { _ in 0 }, usable: { _ in true }),
                start
            )
        }
        // Weighted: (o+1)/w — 4 in flight on weight 4 (1.25) beats 1 in flight on weight 1 (2).
        XCTAssertEqual(
            LeastOutstanding.pick(weights: [1, 4], start: 0, outstanding: { [1, 4][$0] }, usable: { _ in true }),
            1
        )
        XCTAssertEqual(
            LeastOutstanding.pick(weights: [1, 4], start: 0, outstanding: { [0, 4][$0] }, usable: { _ in true }),
            0
        )
        XCTAssertNil(LeastOutstanding.pick(weights: [], start: 0, outstanding: { _ in 0 }, usable: { _ in true }))
        XCTAssertNil(LeastOutstanding.pick(weights: w, start: 0, outstanding: { _ in 0 }, usable: { _ in false }))
    }

    func testLeastOutstandingConverges() {
        // Simulate: each pick adds one; requests never finish. Loads stay within one of each other.
        var load = [0, 0, 0, 0]
        for i in 0..<400 {
            let p = LeastOutstanding.pick(
                weights: [1, 1, 1, 1],
                start: i % 4,
                outstanding: { load[$0] },
                usable: { _ in true }
            )!
            load[p] += 1
        }
        XCTAssertEqual(load, [100, 100, 100, 100])
    }

    private func keys(_ n: Int) -> [UInt64] { (0..<n).map { RendezvousHash.fnv1a("client-\($0)".utf8) } }
    private let ids = (0..<5).map { RendezvousHash.fnv1a("10.0.0.\($0):80".utf8) }

    func testRendezvousIsDeterministicAndSpreads() {
        var counts = [Int](repeating: 0, count: 5)
        for k in keys(10_000) {
            let a = RendezvousHash.pick(key: k, ids: ids, weights: [1, 1, 1, 1, 1], usable: { _ in true })!
            let b = RendezvousHash.pick(key: k, ids: ids, weights: [1, 1, 1, 1, 1], usable: { _ in true })!
            XCTAssertEqual(a, b)
            counts[a] += 1
        }
        for c in counts { XCTAssertTrue((1700...2300).contains(c), "\(counts)") }
    }

    func testRendezvousFollowsWeights() {
        var counts = [0, 0]
        for k in keys(20_000) {
            counts[RendezvousHash.pick(key: k, ids: Array(ids[0..<2]), weights: [1, 3], usable: { _ in true })!] += 1
        }
        let share = Double(counts[1]) / 20_000
        XCTAssertEqual(share, 0.75, accuracy: 0.03, "\(counts)")
    }

    func testRendezvousIsStableWhenAServerLeaves() {
        let all = keys(5_000)
        let before = all.map {
            RendezvousHash.pick(key: $0, ids: ids, weights: [1, 1, 1, 1, 1], usable: { _ in true })!
        }
        // Server 2 goes down: only its keys move, and they spread over the others.
        let after = all.map { RendezvousHash.pick(key: $0, ids: ids, weights: [1, 1, 1, 1, 1], usable: { $0 != 2 })! }
        var moved = [Int](repeating: 0, count: 5)
        for (b, a) in zip(before, after) {
            if b != 2 { XCTAssertEqual(a, b) } else { moved[a] += 1 }
        }
        XCTAssertEqual(moved[2], 0)
        XCTAssertTrue(moved.filter { $0 > 0 }.count == 4, "\(moved)")
        // Removing it from the list entirely (re-resolution) gives the same answer as marking it unusable.
        let shrunk = Array(ids[0..<2] + ids[3...])
        for (i, k) in all.enumerated() {
            let p = RendezvousHash.pick(key: k, ids: shrunk, weights: [1, 1, 1, 1], usable: { _ in true })!
            XCTAssertEqual(shrunk[p], ids[after[i]])
        }
    }

    func testHashIsFixedAcrossProcesses() {
        // Pinned values: a change here moves every client of every deployment to another server.
        XCTAssertEqual(RendezvousHash.fnv1a("".utf8), 0xcbf2_9ce4_8422_2325)
        XCTAssertEqual(RendezvousHash.fnv1a("a".utf8), 0xaf63_dc4c_8601_ec8c)
        XCTAssertEqual(RendezvousHash.mix(0), 0)
    }
}
