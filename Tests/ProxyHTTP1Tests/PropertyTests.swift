import EdgeProxyTestSupport
import XCTest

@testable import ProxyHTTP1

/// Seeded property-style tests: generated valid message streams decode to what was encoded regardless of how the
/// bytes are split; mutated streams never crash and get the same verdict however they are split.
final class PropertyTests: XCTestCase {
    private let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"]

    /// A random pipelined stream of valid requests, and the events it must produce.
    private func generateRequests(_ rng: inout SplitMix64) -> ([UInt8], [Ev]) {
        var input: [UInt8] = []
        var expected: [Ev] = []
        for _ in 0..<(1 + rng.int(4)) {
            let method = methods[rng.int(methods.count)]
            let target = "/p\(rng.int(1000))?q=\(rng.int(50))"
            var fields = ["Host: h\(rng.int(9)).example"]
            for k in 0..<rng.int(6) {
                fields.append("X-F\(k):\(rng.bool() ? " " : "")v\(rng.next() % 100000)\(rng.bool() ? "\t" : "")")
            }
            let bodyLength = rng.int(3) == 0 ? 0 : rng.int(300)
            let body = (0..<bodyLength).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let mode = rng.int(3)  // 0: none or CL, 1: CL, 2: chunked
            var cl = "-"
            var isChunked = false
            if mode == 2 {
                fields.append("Transfer-Encoding: chunked")
                isChunked = true
            } else if mode == 1 || bodyLength > 0 {
                fields.append("Content-Length: \(bodyLength)")
                cl = String(bodyLength)
            }
            if rng.int(4) == 0 { fields.shuffle(using: &rng) }
            input += bytes("\(method) \(target) HTTP/1.1\r\n" + fields.map { $0 + "\r\n" }.joined() + "\r\n")
            let host = fields.first { $0.hasPrefix("Host: ") }!.dropFirst(6)
            expected.append(
                .head(
                    "\(method) \(target) http1_1 n=\(fields.count) cl=\(cl) chunked=\(isChunked) ka=true host=\(host)"
                )
            )
            if isChunked {
                input += chunked(body, rng: &rng, trailers: rng.bool() ? "X-T: 1\r\n" : "")
            } else {
                input += body
            }
            if !body.isEmpty { expected.append(.body(body)) }
            expected.append(.end)
        }
        return (input, expected)
    }

    private func randomCuts(_ n: Int, _ rng: inout SplitMix64) -> [Int] {
        if n < 2 { return [] }
        return (0..<rng.int(8)).map { _ in 1 + rng.int(n - 1) }.sorted()
    }

    func testRandomSplitsOfValidRequestStreams() {
        var rng = SplitMix64(seed: 0x5EED_0001)
        for iteration in 0..<400 {
            let (input, expected) = generateRequests(&rng)
            XCTAssertEqual(runRequests(input), expected, "iteration \(iteration)")
            let cuts = randomCuts(input.count, &rng)
            XCTAssertEqual(runRequests(input, cuts: cuts), expected, "iteration \(iteration) cuts \(cuts)")
            if iteration % 50 == 0 {
                XCTAssertEqual(
                    runRequests(input, cuts: Array(1..<input.count)),
                    expected,
                    "iteration \(iteration) bytewise"
                )
            }
        }
    }

    func testRandomSplitsOfValidResponseStreams() {
        var rng = SplitMix64(seed: 0x5EED_0002)
        for iteration in 0..<300 {
            var input: [UInt8] = []
            var expected: [Ev] = []
            var flags: [Bool] = []
            for _ in 0..<(1 + rng.int(4)) {
                if rng.int(4) == 0 {
                    input += bytes("HTTP/1.1 100 Continue\r\n\r\n")
                    expected.append(.info(100))
                }
                let body = (0..<rng.int(200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                let isHEAD = rng.int(5) == 0
                flags.append(isHEAD)
                if rng.bool() {
                    input += bytes("HTTP/1.1 200 OK\r\nContent-Length: \(body.count)\r\n\r\n")
                    let kind = isHEAD || body.isEmpty ? "none" : "contentLength(\(body.count))"
                    expected.append(.head("200 OK http1_1 n=1 body=\(kind) ka=true"))
                    if !isHEAD { input += body }
                } else {
                    input += bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    expected.append(.head("200 OK http1_1 n=1 body=\(isHEAD ? "none" : "chunked") ka=true"))
                    if !isHEAD { input += chunked(body, rng: &rng) }
                }
                if !isHEAD && !body.isEmpty { expected.append(.body(body)) }
                expected.append(.end)
            }
            XCTAssertEqual(runResponses(input, headFlags: flags), expected, "iteration \(iteration)")
            XCTAssertEqual(
                runResponses(input, cuts: randomCuts(input.count, &rng), headFlags: flags),
                expected,
                "iteration \(iteration)"
            )
        }
    }

    /// Mutations (byte flips, insertions of framing-relevant bytes, deletions, truncation) must never crash, and
    /// the verdict must not depend on how the mutated bytes are split.
    func testMutatedStreamsNeverCrashAndAreSplitInvariant() {
        var rng = SplitMix64(seed: 0x5EED_0003)
        let interesting: [UInt8] = [0x0D, 0x0A, 0x20, 0x09, 0x3A, 0x2C, 0x3B, 0x00, 0x30, 0x66, 0x7F, 0xFF]
        var errors = 0
        let small = HTTP1Limits(
            maxRequestLineBytes: 20,
            maxHeaderBytes: 90,
            maxHeaderCount: 4,
            maxChunkExtensionBytes: 4,
            maxTrailerBytes: 8,
            maxTrailerCount: 1
        )
        for iteration in 0..<1500 {
            var (input, _) = generateRequests(&rng)
            for _ in 0..<(1 + rng.int(3)) where !input.isEmpty {
                let at = rng.int(input.count)
                switch rng.int(4) {
                case 0: input[at] = UInt8(truncatingIfNeeded: rng.next())
                case 1: input.insert(interesting[rng.int(interesting.count)], at: at)
                case 2: input.remove(at: at)
                default: input[at] = interesting[rng.int(interesting.count)]
                }
            }
            // Half the runs use limits small enough that limit faults and byte faults compete for first place.
            let limits = iteration % 2 == 0 ? HTTP1Limits() : small
            let whole = runRequests(input, limits: limits, eof: true)
            if case .error? = whole.last { errors += 1 }
            let split = runRequests(input, cuts: randomCuts(input.count, &rng), limits: limits, eof: true)
            XCTAssertEqual(whole, split, "iteration \(iteration)")
            let responseInput = bytes("HTTP/1.1 200 OK\r\n") + input
            XCTAssertEqual(
                runResponses(responseInput, eof: true),
                runResponses(responseInput, cuts: randomCuts(responseInput.count, &rng), eof: true),
                "response iteration \(iteration)"
            )
        }
        // The mutations do reach the error paths (otherwise this test would prove nothing).
        XCTAssertGreaterThan(errors, 300)
    }
}
