import XCTest

@testable import ProxyCore

final class LatencyHistogramTests: XCTestCase {
    private func text(_ r: LatencyRegistry) -> String {
        var out: [UInt8] = []
        r.emit(into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    func testABoundIsInclusiveAndLargerValuesGoToInf() {
        let r = LatencyRegistry(buckets: LatencyBuckets(seconds: [0.001, 0.01]))
        let f = r.family(name: "t_seconds", help: "test", labelNames: ["k"])
        let c = r.cells(f, labels: ["x"], owner: 0)
        c.record(nanoseconds: 1_000_000)  // exactly 1 ms: le="0.001"
        c.record(nanoseconds: 1_000_001)  // just above: le="0.01"
        c.record(nanoseconds: 10_000_000_000)  // 10 s: +Inf only
        XCTAssertEqual(
            text(r),
            """
            # HELP t_seconds test
            # TYPE t_seconds histogram
            t_seconds_bucket{k="x",le="0.001"} 1
            t_seconds_bucket{k="x",le="0.01"} 2
            t_seconds_bucket{k="x",le="+Inf"} 3
            t_seconds_sum{k="x"} 10.002000001
            t_seconds_count{k="x"} 3

            """
        )
    }

    func testOwnersOfASeriesAreAddedUpAndTheSameCellsComeBack() {
        let r = LatencyRegistry(buckets: LatencyBuckets(seconds: [0.5]))
        let f = r.family(name: "t", help: "h", labelNames: [])
        let a = r.cells(f, labels: [], owner: 0)
        let b = r.cells(f, labels: [], owner: 1)
        XCTAssertFalse(a === b)
        XCTAssertTrue(r.cells(f, labels: [], owner: 1) === b, "a reload must not multiply cells")
        a.record(nanoseconds: 1)
        b.record(nanoseconds: 600_000_000)
        b.record(nanoseconds: 2)
        XCTAssertTrue(
            text(r).contains("t_bucket{le=\"0.5\"} 2\nt_bucket{le=\"+Inf\"} 3\nt_sum 0.600000003\nt_count 3\n")
        )
    }

    func testFamiliesWithoutSeriesAreLeftOutAndLabelValuesAreEscaped() {
        let r = LatencyRegistry()
        _ = r.family(name: "unused", help: "h", labelNames: ["k"])
        let f = r.family(name: "used", help: "line\\two\nthree", labelNames: ["pool"])
        _ = r.cells(f, labels: ["a\"b\\c"], owner: 0)
        let t = text(r)
        XCTAssertFalse(t.contains("unused"))
        XCTAssertTrue(t.hasPrefix("# HELP used line\\\\two\\nthree\n# TYPE used histogram\n"), t)
        XCTAssertTrue(t.contains(#"used_count{pool="a\"b\\c"} 0"#), t)
    }

    func testProxyBucketsAreTheDocumentedOnes() {
        XCTAssertEqual(
            LatencyBuckets.proxy.labels,
            [
                "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5",
                "5.0",
                "10.0",
            ]
        )
        XCTAssertEqual(LatencyBuckets.proxy.nanoseconds.first, 500_000)
        XCTAssertEqual(LatencyBuckets.proxy.nanoseconds.last, 10_000_000_000)
    }

    /// One writer, one concurrent reader: every read is cumulative and +Inf equals the total (the reader computes
    /// both from the same slot values), and the final read sees every recording.
    func testAConcurrentScrapeIsAlwaysConsistent() {
        let r = LatencyRegistry()
        let f = r.family(name: "c", help: "h", labelNames: [])
        let cells = r.cells(f, labels: [], owner: 0)
        let n = 200_000
        let writer = Thread {
            for i in 0..<n { cells.record(nanoseconds: UInt64(i % 20) * 700_000) }
        }
        writer.start()
        var reads = 0
        while reads < 200 {
            let lines = text(r).split(separator: "\n").filter { $0.hasPrefix("c_bucket") }
            let values = lines.map { Int($0.split(separator: " ").last!)! }
            XCTAssertEqual(values, values.sorted())
            reads += 1
        }
        while !writer.isFinished { usleep(1000) }
        XCTAssertTrue(text(r).contains("c_count \(n)\n"))
    }
}
