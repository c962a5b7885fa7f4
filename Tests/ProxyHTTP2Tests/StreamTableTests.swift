import XCTest

@testable import ProxyHTTP2

final class StreamTableTests: XCTestCase {
    final class Box {
        let id: Int32
        init(_ id: Int32) { self.id = id }
    }

    /// Random inserts, replacements, lookups and removals against a Dictionary, with IDs that crowd few home slots
    /// (runs that wrap around the end of the table) as well as a client's consecutive odd IDs.
    func testMatchesADictionaryUnderRandomOperations() {
        var rng = SystemRandomNumberGenerator()
        for pattern in 0..<3 {
            var t = StreamTable<Box>()
            var model: [Int32: Box] = [:]
            var next: Int32 = 1
            for step in 0..<20_000 {
                let id: Int32
                switch pattern {
                case 0: id = Int32.random(in: 1...64, using: &rng)  // dense: long probe runs
                case 1: id = Int32.random(in: 0...7, using: &rng) * 32 + 1  // same home slot in a 16-slot table
                default:  // a client's streams: new odd IDs, old ones closed
                    if Bool.random(using: &rng) {
                        id = next
                        next += 2
                    } else {
                        id = max(1, next - 2 * Int32.random(in: 1...40, using: &rng))
                    }
                }
                switch Int.random(in: 0..<3, using: &rng) {
                case 0:
                    let b = Box(id)
                    t.insert(b, for: id)
                    model[id] = b
                case 1:
                    XCTAssertTrue(t.removeValue(forKey: id) === model.removeValue(forKey: id), "step \(step)")
                default:
                    XCTAssertTrue(t[id] === model[id], "step \(step)")
                }
                XCTAssertEqual(t.count, model.count)
                XCTAssertEqual(t.isEmpty, model.isEmpty)
            }
            for (id, b) in model { XCTAssertTrue(t[id] === b) }
            XCTAssertEqual(Set(t.map { ObjectIdentifier($0) }), Set(model.values.map { ObjectIdentifier($0) }))
            t.removeAll()
            XCTAssertTrue(t.isEmpty)
            XCTAssertNil(t[1])
        }
    }

    func testIterationWalksTheValuesAsTheyWereWhenItBegan() {
        var t = StreamTable<Box>()
        for id in stride(from: Int32(1), through: 99, by: 2) { t.insert(Box(id), for: id) }
        var seen: [Int32] = []
        for b in t {
            seen.append(b.id)
            t.removeValue(forKey: b.id)  // what teardown and timeouts may do while walking
            t.insert(Box(b.id + 1000), for: b.id + 1000)
        }
        XCTAssertEqual(seen.sorted(), Array(stride(from: Int32(1), through: 99, by: 2)))
        XCTAssertEqual(t.count, 50)
        XCTAssertNil(t[1])
    }

    func testIDZeroAndNegativeIDsAreNeverFound() {
        var t = StreamTable<Box>()
        t.insert(Box(1), for: 1)
        XCTAssertNil(t[0])
        XCTAssertNil(t[-1])
        XCTAssertNil(t.removeValue(forKey: 0))
        XCTAssertEqual(t.count, 1)
    }
}
