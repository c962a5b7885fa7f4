import ProxyCore
import ProxyHTTP1
import XCTest

@testable import ProxyHTTP2

/// Shared by the session tests: a recording handler, hand-built client frames (HPACK literals without Huffman
/// coding) and a parser for the frames the session answers with. Bytes in, values out: no sockets.
class H2SessionTestCase: XCTestCase {
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
        /// Counts of the bytes each `h2DataReady` announced, then each `h2WriteData` took.
        var announced: [Int] = []
        var written: [Int] = []
        /// Makes `h2WriteData` write one byte less than announced (a broken handler).
        var shortWrite = false

        func h2DataReady(stream: Int32, max: Int) -> H2DataRead {
            let n = min(max, body.count)
            announced.append(n)
            return H2DataRead(count: n, eof: n == body.count)
        }
        func h2WriteData(stream: Int32, count: Int, into out: ByteBuffer) {
            written.append(count)
            let n = shortWrite ? count - 1 : count
            body.withUnsafeBytes { _ = out.append(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
            body.removeFirst(count)
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

    /// Gives the recorder `body` and queues a 200 with that body on `stream` (whose request already arrived).
    func respond(
        _ s: H2ServerSession,
        _ r: Recorder,
        stream: Int32 = 1,
        body: [UInt8],
        fields: [(StaticString, StaticString)] = []
    ) {
        r.body = body
        let block = H2HeaderBlock()
        block.reset(status: 200)
        for (n, v) in fields { block.append(name: n, value: v) }
        s.submitResponse(stream: stream, headers: block, hasBody: true)
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

    /// Handlers of the sessions made by this test, kept alive for the whole test: a session holds its handler
    /// unowned (the handler owns the session in the proxy), and a test may not use the recorder after the last
    /// `receive`.
    private var recorders: [Recorder] = []

    override func tearDown() {
        recorders.removeAll()
        super.tearDown()
    }

    func makeSession(_ configure: (inout H2Settings) -> Void = { _ in }) -> (H2ServerSession, Recorder) {
        var settings = H2Settings()
        configure(&settings)
        let r = Recorder()
        let s = H2ServerSession(settings: settings, handler: r)
        r.session = s
        recorders.append(r)
        return (s, r)
    }
}
