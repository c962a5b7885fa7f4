import ProxyCore
import ProxyHTTP1
import XCTest

@testable import ProxyHTTP2

/// Drives `H2ServerSession` with hand-built client frames (HPACK literals without Huffman coding) and checks the
/// events and the frames it answers with. Bytes in, values out: no sockets.
final class H2ServerSessionTests: H2SessionTestCase {
    func testSettingsAreAdvertisedAndRequestHeadIsDelivered() {
        let (s, r) = makeSession {
            $0.maxConcurrentStreams = 42
            $0.initialWindowSize = 30000
        }
        let (failure, frames) = exchange(s, Self.preface + frame(4, 0, 0) + frame(1, 0x5, 1, request("/a?b")))
        XCTAssertNil(failure)
        let settings = try! XCTUnwrap(frames.first { $0.type == 4 && $0.flags == 0 })
        var values: [UInt16: UInt32] = [:]
        for i in stride(from: 0, to: settings.payload.count, by: 6) {
            values[UInt16(settings.payload[i]) << 8 | UInt16(settings.payload[i + 1])] = be32(settings.payload, i + 2)
        }
        XCTAssertEqual(values[3], 42)  // MAX_CONCURRENT_STREAMS
        XCTAssertEqual(values[4], 30000)  // INITIAL_WINDOW_SIZE
        XCTAssertEqual(values[2], 0)  // ENABLE_PUSH
        XCTAssertTrue(frames.contains { $0.type == 4 && $0.flags == 1 }, "our SETTINGS ACK")
        XCTAssertEqual(r.requests.count, 1)
        XCTAssertEqual(r.requests[0].0, 1)
        XCTAssertEqual(r.requests[0].1, "GET")
        XCTAssertEqual(r.requests[0].2, "/a?b")
        XCTAssertEqual(r.requests[0].3, "example.test")
        XCTAssertTrue(r.requests[0].4)
    }

    func testResponseWithBodyIsFramedAndEndsTheStream() {
        let (s, r) = makeSession()
        _ = exchange(s, Self.preface + frame(4, 0, 0) + frame(1, 0x5, 1, request()))
        respond(s, r, body: Array(repeating: 0x61, count: 20000), fields: [("Content-Type", "text/plain")])
        let (_, frames) = exchange(s, [])
        XCTAssertEqual(frames.filter { $0.type == 1 && $0.stream == 1 }.count, 1)
        let data = frames.filter { $0.type == 0 && $0.stream == 1 }
        XCTAssertEqual(data.reduce(0) { $0 + $1.payload.count }, 20000)
        XCTAssertEqual(data.last!.flags & 1, 1, "END_STREAM on the last DATA frame")
        XCTAssertEqual(r.closed.map(\.0), [1])
    }

    /// DATA frames are written by the handler straight into the output (NO_COPY). With room for one frame per
    /// `send`, each frame that does not fit is offered again by the next call: every announced count is written
    /// exactly once and the body arrives whole and in order.
    func testDataFramesAreWrittenDirectlyAndRetriedWhenTheOutputIsFull() {
        let (s, r) = makeSession()
        _ = exchange(s, Self.preface + frame(4, 0, 0) + frame(1, 0x5, 1, request()))
        let body = (0..<50000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) }
        respond(s, r, body: body)
        let small = ByteBuffer(capacity: 16384 + 9 + 100)
        var wire: [UInt8] = []
        var calls = 0
        while s.wantsWrite && calls < 20 {
            calls += 1
            small.clear()
            s.send(into: small)
            wire += Array(small.readable)
        }
        let data = parse(wire).filter { $0.type == 0 && $0.stream == 1 }
        XCTAssertEqual(Array(data.map(\.payload).joined()), body)
        XCTAssertEqual(data.map(\.payload.count), [16384, 16384, 16384, 848])
        XCTAssertEqual(data.map { $0.flags & 1 }, [0, 0, 0, 1], "END_STREAM on the last frame only")
        XCTAssertEqual(r.written, data.map(\.payload.count))
        XCTAssertEqual(r.announced.filter { $0 > 0 }, r.written, "each announcement written once")
        XCTAssertEqual(r.closed.map(\.0), [1])
    }

    /// A client reset between the announcement of a frame and its turn to be written: nghttp2 drops the frame, the
    /// handler is not asked for its bytes, and the session carries on.
    func testAnnouncedFrameOfAResetStreamIsDropped() {
        let (s, r) = makeSession()
        _ = exchange(s, Self.preface + frame(4, 0, 0) + frame(1, 0x5, 1, request()))
        respond(s, r, body: Array(repeating: 0x62, count: 40000))
        let small = ByteBuffer(capacity: 16384 + 9 + 100)
        s.send(into: small)
        XCTAssertEqual(r.written, [16384], "the second frame does not fit")
        XCTAssertEqual(r.announced, [16384, 16384])
        let (failure, frames) = exchange(s, frame(3, 0, 1, [0, 0, 0, 8]))
        XCTAssertNil(failure)
        XCTAssertEqual(r.written, [16384], "no bytes taken for the dropped frame")
        XCTAssertFalse(frames.contains { $0.type == 0 }, "no DATA after the reset")
        XCTAssertEqual(r.closed.map(\.0), [1])
        XCTAssertEqual(r.closed.map(\.1), [8])
        // The connection still works: a new stream is answered.
        _ = exchange(s, frame(1, 0x5, 3, request()))
        XCTAssertEqual(r.requests.map(\.0), [1, 3])
    }

    /// A handler that writes less than it announced: the frame is taken back and the stream reset with
    /// INTERNAL_ERROR; what is on the wire still parses frame by frame, and other streams carry on.
    func testShortWriteResetsTheStreamWithoutBreakingTheFraming() {
        let (s, r) = makeSession()
        _ = exchange(s, Self.preface + frame(4, 0, 0) + frame(1, 0x5, 1, request()))
        r.shortWrite = true
        respond(s, r, body: Array(repeating: 0x63, count: 100))
        let (failure, frames) = exchange(s, [])
        XCTAssertNil(failure)
        XCTAssertFalse(frames.contains { $0.type == 0 }, "no DATA frame")
        let rst = frames.first { $0.type == 3 && $0.stream == 1 }
        XCTAssertEqual(rst.map { be32($0.payload, 0) }, 2, "RST_STREAM INTERNAL_ERROR")
        r.shortWrite = false
        _ = exchange(s, frame(1, 0x5, 3, request()))
        respond(s, r, stream: 3, body: Array(repeating: 0x64, count: 10))
        let (_, next) = exchange(s, [])
        XCTAssertEqual(
            next.filter { $0.type == 0 && $0.stream == 3 }.map(\.payload),
            [Array(repeating: 0x64, count: 10)]
        )
    }

    func testUppercaseAndConnectionSpecificFieldsResetTheStream() {
        for bad in [("X-Upper", "1"), ("connection", "close"), ("transfer-encoding", "chunked")] {
            let (s, r) = makeSession()
            let (failure, frames) = exchange(
                s,
                Self.preface + frame(4, 0, 0) + frame(1, 0x5, 1, request(extra: [bad]))
            )
            XCTAssertNil(failure)
            XCTAssertTrue(r.requests.isEmpty, "\(bad)")
            let rst = frames.first { $0.type == 3 && $0.stream == 1 }
            XCTAssertEqual(rst.map { be32($0.payload, 0) }, 1, "RST_STREAM PROTOCOL_ERROR for \(bad)")
        }
    }

    func testOversizedHeaderListIsRejectedWith431() {
        let (s, r) = makeSession { $0.maxHeaderListSize = 1024 }
        let extra = (0..<12).map { ("x-f\($0)", String(repeating: "v", count: 100)) }
        _ = exchange(s, Self.preface + frame(4, 0, 0) + frame(1, 0x5, 1, request(extra: extra)))
        XCTAssertTrue(r.requests.isEmpty)
        XCTAssertEqual(r.rejected.map(\.1), [431])
    }

    func testRequestBodyWindowReopensOnlyOnConsume() {
        let (s, r) = makeSession()
        _ = exchange(s, Self.preface + frame(4, 0, 0) + frame(1, 0x4, 1, request()))
        // Four DATA frames (16 KiB is the largest frame before SETTINGS_MAX_FRAME_SIZE changes).
        let (_, before) = exchange(
            s,
            Array((0..<4).map { _ in frame(0, 0, 1, Array(repeating: 7, count: 10000)) }.joined())
        )
        XCTAssertEqual(r.data[1]?.count, 40000)
        XCTAssertFalse(before.contains { $0.type == 8 }, "no WINDOW_UPDATE before the bytes are forwarded")
        s.consume(stream: 1, count: 40000)
        let (_, after) = exchange(s, [])
        // The stream window re-opens; the connection window (streams x window) only past half, so not yet.
        XCTAssertTrue(after.contains { $0.type == 8 && $0.stream == 1 })
    }

    func testRapidResetClosesWithEnhanceYourCalm() {
        let (s, r) = makeSession {
            $0.resetBurst = 5
            $0.resetRate = 1
        }
        var input = Self.preface + frame(4, 0, 0)
        for i in 0..<20 {
            let sid = UInt32(1 + 2 * i)
            input += frame(1, 0x5, sid, request()) + frame(3, 0, sid, [0, 0, 0, 8])
        }
        let (failure, frames) = exchange(s, input)
        withExtendedLifetime(r) {}
        XCTAssertEqual(failure, .rapidReset)
        let goaway = frames.first { $0.type == 7 }
        XCTAssertEqual(goaway.map { be32($0.payload, 4) }, 0xB)
    }

    func testPingAndSettingsFloodsCloseWithEnhanceYourCalm() {
        for (type, payload) in [(UInt8(6), [UInt8](repeating: 1, count: 8)), (UInt8(4), [0, 3, 0, 0, 0, 100])] {
            let (s, r) = makeSession {
                $0.controlBurst = 50
                $0.controlRate = 1
            }
            var input = Self.preface + frame(4, 0, 0)
            for _ in 0..<200 { input += frame(type, 0, 0, payload) }
            let (failure, frames) = exchange(s, input)
            withExtendedLifetime(r) {}
            XCTAssertEqual(failure, .controlFlood, "frame type \(type)")
            XCTAssertEqual(frames.first { $0.type == 7 }.map { be32($0.payload, 4) }, 0xB)
        }
    }

    func testContinuationFloodClosesTheConnection() {
        let (s, r) = makeSession()
        var input = Self.preface + frame(4, 0, 0) + frame(1, 0x1, 1, request())
        for _ in 0..<50 { input += frame(9, 0, 1, hpack([("x-c", "v")])) }
        let (failure, frames) = exchange(s, input)
        XCTAssertEqual(failure, .continuationFlood)
        XCTAssertTrue(r.requests.isEmpty)
        XCTAssertEqual(frames.first { $0.type == 7 }.map { be32($0.payload, 4) }, 0xB)
    }

    func testTokenBucketRefills() {
        var b = TokenBucket(burst: 2, rate: 10)
        XCTAssertTrue(b.take(now: 1_000_000_000))
        XCTAssertTrue(b.take(now: 1_000_000_000))
        XCTAssertFalse(b.take(now: 1_000_000_000))
        XCTAssertTrue(b.take(now: 1_100_000_000))  // 0.1 s at 10/s: one token back
        XCTAssertFalse(b.take(now: 1_100_000_000))
    }
}
