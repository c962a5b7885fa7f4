import ProxyCore
import ProxyHTTP1
import XCTest

@testable import ProxyHTTP2

/// Drives `H2ServerSession` with hand-built client frames (HPACK literals without Huffman coding) and checks the
/// events and the frames it answers with. Bytes in, values out: no sockets.
final class H2ServerSessionTests: XCTestCase {
    final class Recorder: H2SessionHandler {
        var requests: [(Int32, String, String, String, Bool)] = []
        var rejected: [(Int32, Int)] = []
        var data: [Int32: [UInt8]] = [:]
        var ended: [Int32] = []
        var closed: [(Int32, UInt32)] = []
        var body: [UInt8] = []
        var session: H2ServerSession?

        func h2Request(stream: Int32, head: H2RequestHead, endStream: Bool) {
            requests.append(
                (
                    stream, String(decoding: head.method, as: UTF8.self), String(decoding: head.path, as: UTF8.self),
                    String(decoding: head.authority, as: UTF8.self), endStream
                )
            )
        }
        func h2RequestRejected(stream: Int32, status: Int) { rejected.append((stream, status)) }
        func h2Data(stream: Int32, bytes: UnsafeRawBufferPointer) { data[stream, default: []] += Array(bytes) }
        func h2Trailers(stream: Int32, trailers: HTTPHeaders) {}
        func h2EndStream(stream: Int32) { ended.append(stream) }
        func h2StreamClosed(stream: Int32, errorCode: UInt32) { closed.append((stream, errorCode)) }
        func h2ReadData(stream: Int32, into buf: UnsafeMutableRawBufferPointer) -> H2DataRead {
            let n = min(buf.count, body.count)
            buf.copyBytes(from: body[..<n])
            body.removeFirst(n)
            return H2DataRead(count: n, eof: body.isEmpty)
        }
    }

    struct Frame {
        var type: UInt8
        var flags: UInt8
        var stream: UInt32
        var payload: [UInt8]
    }

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    func frame(_ type: UInt8, _ flags: UInt8, _ stream: UInt32, _ payload: [UInt8] = []) -> [UInt8] {
        let n = payload.count
        return [UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF), type, flags]
            + [UInt8(stream >> 24 & 0x7F), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)]
            + payload
    }

    /// HPACK "literal header field without indexing, new name" with 7-bit lengths (< 127 bytes each).
    func hpack(_ fields: [(String, String)]) -> [UInt8] {
        var out: [UInt8] = []
        for (n, v) in fields {
            out.append(0x00)
            out.append(UInt8(n.utf8.count))
            out += Array(n.utf8)
            precondition(v.utf8.count < 127)
            out.append(UInt8(v.utf8.count))
            out += Array(v.utf8)
        }
        return out
    }

    func request(_ path: String = "/x", extra: [(String, String)] = []) -> [UInt8] {
        hpack([(":method", "GET"), (":scheme", "https"), (":authority", "example.test"), (":path", path)] + extra)
    }

    func parse(_ bytes: [UInt8]) -> [Frame] {
        var out: [Frame] = []
        var i = 0
        while i + 9 <= bytes.count {
            let n = Int(bytes[i]) << 16 | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
            guard i + 9 + n <= bytes.count else { break }
            let sid =
                UInt32(bytes[i + 5] & 0x7F) << 24 | UInt32(bytes[i + 6]) << 16 | UInt32(bytes[i + 7]) << 8
                | UInt32(bytes[i + 8])
            out.append(
                Frame(type: bytes[i + 3], flags: bytes[i + 4], stream: sid, payload: Array(bytes[i + 9..<i + 9 + n]))
            )
            i += 9 + n
        }
        return out
    }

    func be32(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
    }

    /// Feeds `input`, then drains everything the session wants to send.
    func exchange(_ s: H2ServerSession, _ input: [UInt8], now: UInt64 = 1_000_000_000) -> (H2Failure?, [Frame]) {
        let failure = input.withUnsafeBytes { s.receive($0, now: now) }
        var out: [UInt8] = []
        let buf = ByteBuffer(capacity: 64 * 1024)
        while s.wantsWrite {
            buf.clear()
            if !s.send(into: buf) { break }
            out += Array(buf.readable)
        }
        return (failure, parse(out))
    }

    func makeSession(_ configure: (inout H2Settings) -> Void = { _ in }) -> (H2ServerSession, Recorder) {
        var settings = H2Settings()
        configure(&settings)
        let r = Recorder()
        let s = H2ServerSession(settings: settings, handler: r)
        r.session = s
        return (s, r)
    }

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
        r.body = Array(repeating: 0x61, count: 20000)
        var block = H2HeaderBlock()
        block.reset(status: 200)
        block.append(name: "Content-Type", value: "text/plain")
        s.submitResponse(stream: 1, headers: block, hasBody: true)
        let (_, frames) = exchange(s, [])
        XCTAssertEqual(frames.filter { $0.type == 1 && $0.stream == 1 }.count, 1)
        let data = frames.filter { $0.type == 0 && $0.stream == 1 }
        XCTAssertEqual(data.reduce(0) { $0 + $1.payload.count }, 20000)
        XCTAssertEqual(data.last!.flags & 1, 1, "END_STREAM on the last DATA frame")
        XCTAssertEqual(r.closed.map(\.0), [1])
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
