import ProxyCore
import ProxyHTTP1
import XCTest

@testable import ProxyHTTP2

/// The RFC 9113 checks the session makes itself because nghttp2 1.52 cannot (see H2InboundChecks.swift): each h2spec
/// 2.0 case it used to fail, driven through `H2ServerSession` with hand-built frames, plus the legal traffic next to
/// them that must stay untouched, and the two parts (`H2FrameTap`, `H2StreamHistory`) on their own.
final class H2InboundChecksTests: H2SessionTestCase {
    static let start = preface + [0, 0, 0, 4, 0, 0, 0, 0, 0]  // preface + empty SETTINGS

    func priority(_ stream: UInt32, dependsOn dep: UInt32, weight: UInt8 = 15) -> [UInt8] {
        frame(
            2,
            0,
            stream,
            [UInt8(dep >> 24 & 0x7F), UInt8(dep >> 16 & 0xFF), UInt8(dep >> 8 & 0xFF), UInt8(dep & 0xFF), weight]
        )
    }

    func rst(_ stream: UInt32, _ code: UInt8 = 8) -> [UInt8] { frame(3, 0, stream, [0, 0, 0, code]) }

    func goaway(_ frames: [Frame]) -> UInt32? { frames.first { $0.type == 7 }.map { be32($0.payload, 4) } }

    func resets(_ frames: [Frame]) -> [(UInt32, UInt32)] {
        frames.filter { $0.type == 3 }.map { ($0.stream, be32($0.payload, 0)) }
    }

    /// Completes the response of `stream` (HEADERS + END_STREAM), so that nghttp2 closes and forgets it.
    func respond(_ s: H2ServerSession, _ stream: Int32) {
        let block = H2HeaderBlock()
        block.reset(status: 204)
        s.submitResponse(stream: stream, headers: block, hasBody: false)
    }

    /// Feeds `input` in pieces of `step` bytes (frame headers then straddle reads).
    func exchange(_ s: H2ServerSession, _ input: [UInt8], step: Int) -> (H2Failure?, [Frame]) {
        var failure: H2Failure?
        var frames: [Frame] = []
        var i = 0
        while i < input.count {
            let (f, out) = exchange(s, Array(input[i..<min(input.count, i + step)]))
            failure = failure ?? f
            frames += out
            i += step
        }
        return (failure, frames)
    }

    // MARK: h2spec http2/5.1 (stream states, closed)

    func testH2spec_5_1_8_DataAfterClientResetIsAStreamErrorStreamClosed() {
        for step in [Int.max, 1, 7] {
            let (s, r) = makeSession()
            let input = Self.start + frame(1, 0x4, 1, request()) + rst(1) + frame(0, 0x1, 1, Array("test".utf8))
            let (failure, frames) = exchange(s, input, step: min(step, input.count))
            XCTAssertNil(failure, "a stream error, not a connection error (step \(step))")
            XCTAssertEqual(resets(frames).map(\.0), [1], "step \(step)")
            XCTAssertEqual(resets(frames).map(\.1), [5], "RST_STREAM STREAM_CLOSED (step \(step))")
            XCTAssertNil(goaway(frames))
            XCTAssertEqual(r.closed.map(\.1), [8], "the client's CANCEL closed the stream")
            // Only once: more DATA on the stream is ignored.
            let (_, more) = exchange(s, frame(0, 0, 1, Array("more".utf8)))
            XCTAssertTrue(resets(more).isEmpty)
        }
    }

    func testH2spec_5_1_9_HeadersAfterClientResetIsAStreamErrorStreamClosed() {
        let (s, r) = makeSession()
        let (failure, frames) = exchange(
            s,
            Self.start + frame(1, 0x4, 1, request()) + rst(1) + frame(1, 0x5, 1, request())
        )
        XCTAssertNil(failure)
        XCTAssertEqual(resets(frames).map(\.1), [5])
        XCTAssertEqual(r.requests.count, 1, "the second HEADERS is not a request")
        // HPACK stays in step (nghttp2 still decoded the ignored block): the next request is read correctly.
        _ = exchange(s, frame(1, 0x5, 3, request("/next")))
        XCTAssertEqual(r.requests.last?.2, "/next")
    }

    func testH2spec_5_1_11_DataOnAStreamTheClientEndedIsAConnectionErrorStreamClosed() {
        let (s, r) = makeSession()
        _ = exchange(s, Self.start + frame(1, 0x5, 1, request()))
        respond(s, 1)
        _ = exchange(s, [])
        XCTAssertEqual(r.closed.map(\.0), [1], "closed and forgotten by nghttp2")
        let (failure, frames) = exchange(s, frame(0, 0x1, 1, Array("test".utf8)))
        XCTAssertEqual(failure, .protocolError)
        XCTAssertEqual(goaway(frames), 5, "GOAWAY STREAM_CLOSED")
        XCTAssertEqual(frames.first { $0.type == 7 }.map { be32($0.payload, 0) }, 1, "last stream processed: 1")
    }

    func testH2spec_5_1_12_HeadersOnAStreamTheClientEndedIsAConnectionErrorStreamClosed() {
        let (s, r) = makeSession()
        _ = exchange(s, Self.start + frame(1, 0x5, 1, request()))
        respond(s, 1)
        _ = exchange(s, [])
        let (failure, frames) = exchange(s, frame(1, 0x5, 1, request()))
        XCTAssertEqual(failure, .protocolError)
        XCTAssertEqual(goaway(frames), 5)
        XCTAssertEqual(r.requests.count, 1)
    }

    func testDataAfterEndStreamInTheSameReadIsAConnectionError() {
        // nghttp2 answers this itself while the stream is half-closed (remote); the check agrees with it.
        let (s, _) = makeSession()
        let (_, frames) = exchange(
            s,
            Self.start + frame(1, 0x5, 1, request()) + frame(0, 0x1, 1, Array("x".utf8))
        )
        XCTAssertEqual(goaway(frames), 5)
    }

    // MARK: h2spec http2/5.1.1/2 (stream identifiers)

    func testH2spec_5_1_1_2_HeadersOnALowerUnusedStreamIsAConnectionProtocolError() {
        for step in [Int.max, 1] {
            let (s, r) = makeSession()
            let input = Self.start + frame(1, 0x5, 5, request()) + frame(1, 0x5, 3, request())
            let (failure, frames) = exchange(s, input, step: min(step, input.count))
            XCTAssertEqual(failure, .protocolError, "step \(step)")
            XCTAssertEqual(goaway(frames), 1, "GOAWAY PROTOCOL_ERROR (step \(step))")
            XCTAssertEqual(frames.first { $0.type == 7 }.map { be32($0.payload, 0) }, 5, "stream 5 was processed")
            XCTAssertEqual(r.requests.map(\.0), [5])
        }
    }

    func testSkippedStreamIdsArePermitted() {
        let (s, r) = makeSession()
        let (failure, frames) = exchange(
            s,
            Self.start + frame(1, 0x5, 1, request()) + frame(1, 0x5, 7, request()) + frame(1, 0x5, 41, request())
        )
        XCTAssertNil(failure)
        XCTAssertNil(goaway(frames))
        XCTAssertEqual(r.requests.map(\.0), [1, 7, 41])
    }

    // MARK: what must stay legal

    func testFramesInFlightAfterOurResetAreIgnored() {
        // RFC 9113 §5.1: after *sending* RST_STREAM, frames the client had already sent must be ignored (trailers,
        // body). nghttp2 ignores them; the checks must not turn them into errors.
        let (s, r) = makeSession()
        _ = exchange(s, Self.start + frame(1, 0x4, 1, request()) + frame(0, 0, 1, Array("part".utf8)))
        s.resetStream(1, code: .cancel)
        let (_, sent) = exchange(s, [])
        XCTAssertEqual(resets(sent).map(\.1), [8])
        let (failure, frames) = exchange(
            s,
            frame(0, 0, 1, Array("more".utf8)) + frame(1, 0x5, 1, hpack([("x-trailer", "1")]))
                + frame(1, 0x5, 3, request("/after"))
        )
        XCTAssertNil(failure)
        XCTAssertTrue(resets(frames).isEmpty)
        XCTAssertNil(goaway(frames))
        XCTAssertEqual(r.requests.map(\.2), ["/x", "/after"])
    }

    func testResetAfterACompleteResponseAndPriorityOnClosedStreamsAreFine() {
        let (s, r) = makeSession()
        _ = exchange(s, Self.start + frame(1, 0x5, 1, request()))
        respond(s, 1)
        _ = exchange(s, [])
        let (failure, frames) = exchange(
            s,
            rst(1) + priority(1, dependsOn: 0) + frame(8, 0, 0, [0, 0, 1, 0]) + frame(1, 0x5, 3, request("/2"))
        )
        XCTAssertNil(failure)
        XCTAssertNil(goaway(frames))
        XCTAssertTrue(resets(frames).isEmpty)
        XCTAssertEqual(r.requests.map(\.2), ["/x", "/2"])
    }

    func testTrailersEndTheStreamThenLaterDataIsAnError() {
        let (s, r) = makeSession()
        let (failure, _) = exchange(
            s,
            Self.start + frame(1, 0x4, 1, request()) + frame(0, 0, 1, Array("body".utf8))
                + frame(1, 0x5, 1, hpack([("x-t", "1")]))
        )
        XCTAssertNil(failure)
        XCTAssertEqual(r.ended, [1])
        let (late, frames) = exchange(s, frame(0, 0, 1, Array("late".utf8)))
        XCTAssertEqual(late, .protocolError)
        XCTAssertEqual(goaway(frames), 5)
    }

    // MARK: h2spec http2/5.3.1/2 and 6.3 (PRIORITY)

    func testH2spec_5_3_1_2_PriorityDependingOnItselfIsAProtocolError() {
        let (s, _) = makeSession()
        let (failure, frames) = exchange(s, Self.start + priority(1, dependsOn: 1, weight: 255))
        XCTAssertEqual(failure, .protocolError)
        XCTAssertEqual(goaway(frames), 1)
    }

    func testH2spec_6_3_1_PriorityOnStreamZeroIsAConnectionProtocolError() {
        for step in [Int.max, 1, 11] {
            let (s, _) = makeSession()
            let input = Self.start + priority(0, dependsOn: 0, weight: 255)
            let (failure, frames) = exchange(s, input, step: min(step, input.count))
            XCTAssertEqual(failure, .protocolError, "step \(step)")
            XCTAssertEqual(goaway(frames), 1, "step \(step)")
        }
    }

    func testH2spec_6_3_3_PriorityOnAnIdleStreamDoesNotUseItsId() {
        let (s, r) = makeSession()
        let (failure, frames) = exchange(
            s,
            Self.start + priority(3, dependsOn: 0, weight: 255) + frame(1, 0x5, 1, request())
        )
        XCTAssertNil(failure)
        XCTAssertNil(goaway(frames))
        XCTAssertEqual(r.requests.map(\.0), [1])
    }

    func testPriorityWithTheWrongLengthIsLeftToNghttp2() {
        let (s, _) = makeSession()
        let (_, frames) = exchange(s, Self.start + frame(1, 0x5, 1, request()) + frame(2, 0, 1, [0x80, 0, 0, 1]))
        XCTAssertEqual(goaway(frames), 6, "FRAME_SIZE_ERROR, from nghttp2")
    }

    func testPriorityFloodClosesWithEnhanceYourCalm() {
        let (s, r) = makeSession {
            $0.controlBurst = 50
            $0.controlRate = 1
        }
        var input = Self.start
        for i in 0..<200 { input += priority(UInt32(1 + 2 * (i % 10)), dependsOn: 0) }
        let (failure, frames) = exchange(s, input)
        withExtendedLifetime(r) {}
        XCTAssertEqual(failure, .controlFlood)
        XCTAssertEqual(goaway(frames), 0xB)
    }

    func testPriorityFramesWithinTheBurstAreServed() {
        let (s, r) = makeSession {
            $0.controlBurst = 50
            $0.controlRate = 1
        }
        var input = Self.start
        for _ in 0..<40 { input += priority(1, dependsOn: 0) }
        let (failure, _) = exchange(s, input + frame(1, 0x5, 1, request()))
        XCTAssertNil(failure)
        XCTAssertEqual(r.requests.count, 1)
    }

    // MARK: the parts

    func testFrameTapFindsEveryHeaderAcrossAnySplit() {
        let input =
            Self.start + frame(1, 0x4, 1, request()) + frame(0, 0, 1, Array(repeating: 1, count: 300))
            + priority(3, dependsOn: 1) + frame(0, 0x1, 1, []) + rst(1)
        let expected: [(UInt8, Int32, Int32)] = [(4, 0, -1), (1, 1, -1), (0, 1, -1), (2, 3, 1), (0, 1, -1), (3, 1, -1)]
        for step in [input.count, 1, 2, 5, 9, 13, 100] {
            var tap = H2FrameTap()
            var seen: [(UInt8, Int32, Int32)] = []
            var i = 0
            while i < input.count {
                let piece = Array(input[i..<min(input.count, i + step)])
                piece.withUnsafeBytes { buf in
                    var at = 0
                    while true {
                        let (end, head, start) = tap.next(buf, from: at)
                        at = end
                        guard let head else { break }
                        XCTAssertLessThanOrEqual(start, end)
                        seen.append((head.type, head.stream, head.dependency))
                    }
                }
                i += step
            }
            XCTAssertEqual(seen.map(\.0), expected.map(\.0), "step \(step)")
            XCTAssertEqual(seen.map(\.1), expected.map(\.1), "step \(step)")
            XCTAssertEqual(seen.map(\.2), expected.map(\.2), "step \(step)")
        }
    }

    func testStreamHistoryWindow() {
        var h = H2StreamHistory()
        func headers(_ id: Int32, _ flags: UInt8 = 0x5) -> H2FrameHead {
            H2FrameHead(length: 10, type: 1, flags: flags, stream: id)
        }
        func data(_ id: Int32) -> H2FrameHead { H2FrameHead(length: 4, type: 0, flags: 0, stream: id) }
        XCTAssertEqual(h.check(headers(5)), .pass)
        XCTAssertEqual(h.state(1), .unused)
        XCTAssertEqual(h.state(5), .opened)
        XCTAssertNil(h.state(7), "above the highest")
        XCTAssertNil(h.state(4), "not a client stream ID")
        XCTAssertEqual(h.check(headers(3)), .connectionError(.protocolError))
        XCTAssertEqual(h.check(data(3)), .connectionError(.streamClosed))
        h.clientEnded(5)
        XCTAssertEqual(h.check(data(5)), .connectionError(.streamClosed))
        XCTAssertEqual(h.check(headers(7, 0x4)), .pass)
        h.clientReset(7)
        XCTAssertEqual(h.check(data(7)), .resetStreamClosed)
        XCTAssertEqual(h.check(data(7)), .pass, "answered once")
        // Far ahead: everything before the window is unknown (left to nghttp2), the gap inside it is unused.
        let far = Int32(7 + 2 * H2StreamHistory.capacity + 10)
        XCTAssertEqual(h.check(headers(far)), .pass)
        XCTAssertNil(h.state(5))
        XCTAssertEqual(h.check(data(5)), .pass)
        XCTAssertEqual(h.state(far - 2), .unused)
        XCTAssertEqual(h.state(far - 2 * Int32(H2StreamHistory.capacity - 1)), .unused)
        XCTAssertNil(h.state(far - 2 * Int32(H2StreamHistory.capacity)))
        // A short step clears only the IDs in between.
        h.clientEnded(far)
        XCTAssertEqual(h.check(headers(far + 4)), .pass)
        XCTAssertEqual(h.state(far), .endedByClient)
        XCTAssertEqual(h.state(far + 2), .unused)
        XCTAssertEqual(h.state(far + 4), .opened)
    }
}
