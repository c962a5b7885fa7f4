import XCTest

@testable import ProxyHTTP1

final class HTTP1WriterTests: XCTestCase {
    private func parseRequest(_ s: String) -> RequestParser {
        var p = RequestParser()
        let b = bytes(s)
        let ev = b.withUnsafeBytes { p.parse($0) }
        XCTAssertEqual(ev, .head(consumed: b.count), s)
        return p
    }

    private func parseResponse(_ s: String, isHEAD: Bool = false) -> ResponseParser {
        var p = ResponseParser()
        let b = bytes(s)
        let ev = b.withUnsafeBytes { p.parse($0, requestIsHEAD: isHEAD) }
        XCTAssertEqual(ev, .head(consumed: b.count), s)
        return p
    }

    /// Reliability issue item 14: absolute-form targets become origin-form with Host from the URI.
    func testAbsoluteFormBecomesOriginFormWithHostFromTheURI() {
        let ctx = ForwardingContext(
            clientAddress: [],
            appendXForwardedFor: false,
            setXForwardedProto: false,
            appendForwarded: false,
            via: []
        )
        for (target, expected) in [
            ("http://Site.Example:8080/a/b?q=1", "/a/b?q=1"), ("https://site.example", "/"),
            ("http://site.example?x", "/?x"),
        ] {
            let p = parseRequest("GET \(target) HTTP/1.1\r\nHost: other.test\r\nAccept: */*\r\n\r\n")
            XCTAssertTrue(p.head.isAbsoluteForm)
            var out: [UInt8] = []
            HTTP1Writer.appendRequestHead(p.head, framing: p.head.outboundFraming, forwarding: ctx, to: &out)
            let host = target.split(separator: "/")[1].split(separator: "?")[0]
            XCTAssertEqual(str(out), "GET \(expected) HTTP/1.1\r\nHost: \(host)\r\nAccept: */*\r\n\r\n", target)
            XCTAssertEqual(p.head.effectiveHost.map { String(decoding: $0, as: UTF8.self) }, String(host))
        }
        // Userinfo in the authority is refused.
        var bad = RequestParser()
        let b = bytes("GET http://user@site.example/ HTTP/1.1\r\nHost: site.example\r\n\r\n")
        guard case .error(let e) = b.withUnsafeBytes({ bad.parse($0) }) else { return XCTFail("accepted userinfo") }
        XCTAssertEqual(e.status, 400)
    }

    /// Reliability issue item 4: `Connection: Host` must not strip Host (other named fields still go).
    func testConnectionNamingHostKeepsHost() {
        let p = parseRequest("GET / HTTP/1.1\r\nHost: site.test\r\nConnection: Host, x-drop\r\nX-Drop: 1\r\n\r\n")
        var out: [UInt8] = []
        let ctx = ForwardingContext(
            clientAddress: [],
            appendXForwardedFor: false,
            setXForwardedProto: false,
            appendForwarded: false,
            via: []
        )
        HTTP1Writer.appendRequestHead(p.head, framing: p.head.outboundFraming, forwarding: ctx, to: &out)
        XCTAssertEqual(str(out), "GET / HTTP/1.1\r\nHost: site.test\r\n\r\n")
    }

    func testRequestRewriteRemovesHopByHopAndAddsForwardingFields() {
        let p = parseRequest(
            "POST /api?x=1 HTTP/1.1\r\n"
                + "Host: shop.example:8443\r\n"
                + "Connection: keep-alive, X-Secret, Upgrade\r\n"
                + "Keep-Alive: timeout=5\r\n"
                + "Proxy-Connection: keep-alive\r\n"
                + "TE: trailers\r\n"
                + "Trailer: X-Sum\r\n"
                + "Upgrade: websocket\r\n"
                + "x-secret: 1\r\n"
                + "X-Forwarded-For: 10.0.0.1\r\n"
                + "Accept: */*\r\n"
                + "x-forwarded-for: 10.0.0.2, 10.0.0.3\r\n"
                + "X-Forwarded-Proto: http\r\n"
                + "Forwarded: for=10.0.0.1\r\n"
                + "X-JA3: spoofed\r\n"
                + "Via: 1.0 other\r\n"
                + "Transfer-Encoding: chunked\r\n\r\n"
        )
        let ctx = ForwardingContext(
            clientAddress: bytes("203.0.113.9"),
            stripped: HeaderNameList(["x-ja3", "X-JA4"]),
            extraHeaderLines: bytes("X-Request-Id: 42\r\n")
        )
        var out: [UInt8] = []
        HTTP1Writer.appendRequestHead(p.head, framing: p.head.outboundFraming, forwarding: ctx, to: &out)
        XCTAssertEqual(
            str(out),
            "POST /api?x=1 HTTP/1.1\r\n"
                + "Host: shop.example:8443\r\n"
                + "Accept: */*\r\n"
                + "Via: 1.0 other\r\n"
                + "Transfer-Encoding: chunked\r\n"
                + "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 10.0.0.3, 203.0.113.9\r\n"
                + "X-Forwarded-Proto: https\r\n"
                + "Forwarded: for=10.0.0.1, for=203.0.113.9;proto=https;host=\"shop.example:8443\"\r\n"
                + "Via: 1.1 edgeproxy\r\n"
                + "X-Request-Id: 42\r\n\r\n"
        )
        // The output is itself a valid request for the origin.
        let again = parseRequest(str(out))
        XCTAssertTrue(again.head.isChunked)
    }

    func testRequestRewriteIPv6HTTP10AndStrippedForwardingFields() {
        let p = parseRequest(
            "GET / HTTP/1.0\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=evil\r\nContent-Length: 0\r\n\r\n"
        )
        var ctx = ForwardingContext(
            clientAddress: bytes("2001:db8::1"),
            stripped: HeaderNameList(["x-forwarded-for", "forwarded"]),
            defaultHost: bytes("origin.internal")
        )
        var out: [UInt8] = []
        HTTP1Writer.appendRequestHead(p.head, framing: p.head.outboundFraming, forwarding: ctx, to: &out)
        XCTAssertEqual(
            str(out),
            "GET / HTTP/1.1\r\nHost: origin.internal\r\nContent-Length: 0\r\n"
                + "X-Forwarded-For: 2001:db8::1\r\nX-Forwarded-Proto: https\r\n"
                + "Forwarded: for=\"[2001:db8::1]\";proto=https\r\nVia: 1.1 edgeproxy\r\n\r\n"
        )
        // Everything off: only the client's fields, Host and framing.
        ctx.appendXForwardedFor = false
        ctx.setXForwardedProto = false
        ctx.appendForwarded = false
        ctx.via = []
        ctx.stripped = HeaderNameList()
        out.removeAll(keepingCapacity: true)
        HTTP1Writer.appendRequestHead(p.head, framing: .contentLength(0), forwarding: ctx, to: &out)
        XCTAssertEqual(
            str(out),
            "GET / HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=evil\r\nHost: origin.internal\r\nContent-Length: 0\r\n\r\n"
        )
    }

    func testForwardedHostTokenIsUnquoted() {
        let p = parseRequest("GET / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\n")
        var out: [UInt8] = []
        HTTP1Writer.appendRequestHead(
            p.head,
            framing: p.head.outboundFraming,
            forwarding: ForwardingContext(clientAddress: []),
            to: &out
        )
        let text = str(out)
        XCTAssertTrue(text.contains("\r\nForwarded: for=unknown;proto=https;host=example.com\r\n"), text)
        XCTAssertTrue(text.contains("\r\nX-Forwarded-For: unknown\r\n"), text)
        XCTAssertTrue(text.contains("\r\nContent-Length: 3\r\n"), text)
    }

    func testResponseRewrite() {
        let p = parseResponse(
            "HTTP/1.1 200 OK\r\nServer: origin\r\nConnection: keep-alive, X-Internal\r\nX-Internal: 1\r\n"
                + "Keep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"
        )
        var out: [UInt8] = []
        HTTP1Writer.appendResponseHead(
            p.head,
            framing: p.head.clientFraming(clientVersion: .http1_1),
            closeConnection: false,
            clientVersion: .http1_1,
            to: &out
        )
        XCTAssertEqual(
            str(out),
            "HTTP/1.1 200 OK\r\nServer: origin\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
                + "Transfer-Encoding: chunked\r\nVia: 1.1 edgeproxy\r\n\r\n"
        )
        out.removeAll(keepingCapacity: true)
        HTTP1Writer.appendResponseHead(
            p.head,
            framing: p.head.clientFraming(clientVersion: .http1_0),
            closeConnection: false,
            clientVersion: .http1_0,
            stripped: HeaderNameList(["server"]),
            to: &out
        )
        XCTAssertEqual(
            str(out),
            "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nVia: 1.1 edgeproxy\r\nConnection: close\r\n\r\n"
        )
    }

    func testResponseFramingForBodilessStatuses() {
        func render(_ s: String, isHEAD: Bool = false, close: Bool = false, client: HTTPVersion = .http1_1) -> String {
            let p = parseResponse(s, isHEAD: isHEAD)
            var out: [UInt8] = []
            HTTP1Writer.appendResponseHead(
                p.head,
                framing: p.head.clientFraming(clientVersion: client),
                closeConnection: close,
                clientVersion: client,
                via: "",
                to: &out
            )
            return str(out)
        }
        XCTAssertEqual(
            render("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", isHEAD: true),
            "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
        )
        XCTAssertEqual(
            render("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nETag: x\r\n\r\n"),
            "HTTP/1.1 304 Not Modified\r\nETag: x\r\nContent-Length: 99\r\n\r\n"
        )
        XCTAssertEqual(
            render("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", close: true),
            "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
        )
        XCTAssertEqual(
            render("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", client: .http1_0),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        )
        XCTAssertEqual(
            render("HTTP/1.1 599\r\nContent-Length: 5\r\n\r\n"),
            "HTTP/1.1 599 \r\nContent-Length: 5\r\n\r\n"
        )
    }

    func testChunkEncoderRoundTrip() {
        var out: [UInt8] = []
        XCTAssertEqual(
            { () -> String in
                HTTP1Writer.appendChunkHeader(255, to: &out)
                return str(out)
            }(),
            "ff\r\n"
        )
        out.removeAll()
        HTTP1Writer.appendChunkHeader(0x10000, to: &out)
        XCTAssertEqual(str(out), "10000\r\n")

        // Re-chunk a body and a trailer section, and check that our own parser decodes it back.
        let t = parseRequest("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        var p = t
        let chunkedBody = bytes("0\r\nX-Sum: 7\r\nContent-Length: 5\r\nHost: evil\r\n\r\n")
        _ = p.parse(UnsafeRawBufferPointer(start: nil, count: 0))
        XCTAssertEqual(chunkedBody.withUnsafeBytes { p.parse($0) }, .end(consumed: chunkedBody.count))
        out = bytes("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        bytes("hello ").withUnsafeBytes { HTTP1Writer.appendChunk($0, to: &out) }
        HTTP1Writer.appendChunkHeader(5, to: &out)
        out += bytes("world")
        HTTP1Writer.appendChunkEnd(to: &out)
        HTTP1Writer.appendChunk(UnsafeRawBufferPointer(start: nil, count: 0), to: &out)
        HTTP1Writer.appendLastChunk(trailers: p.trailers, to: &out)
        XCTAssertTrue(str(out).hasSuffix("6\r\nhello \r\n5\r\nworld\r\n0\r\nX-Sum: 7\r\n\r\n"), str(out))
        var q = RequestParser()
        XCTAssertEqual(
            runRequests([out], parser: &q),
            [.head("POST / http1_1 n=2 cl=- chunked=true ka=true host=h"), .body(bytes("hello world")), .end]
        )
        XCTAssertEqual(str(q.trailers.first("x-sum")!), "7")
        out.removeAll()
        HTTP1Writer.appendLastChunk(to: &out)
        XCTAssertEqual(str(out), "0\r\n\r\n")
    }

    func testSimpleResponses() {
        var out: [UInt8] = []
        HTTP1Writer.appendSimpleResponse(status: 502, body: "upstream failed\n", closeConnection: true, to: &out)
        XCTAssertEqual(
            str(out),
            "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\n"
                + "Cache-Control: no-store\r\nConnection: close\r\n\r\nupstream failed\n"
        )
        out.removeAll()
        HTTP1Writer.appendSimpleResponse(
            status: 200,
            contentType: "text/html",
            body: "<p>hi</p>",
            closeConnection: false,
            includeBody: false,
            to: &out
        )
        XCTAssertEqual(
            str(out),
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 9\r\nCache-Control: no-store\r\n\r\n"
        )
        for status in [400, 414, 431, 501, 502, 504, 505] {
            XCTAssertGreaterThan(HTTP1Writer.reasonPhrase(status).utf8CodeUnitCount, 0, "\(status)")
        }
        guard let e = requestError("GET /" + String(repeating: "a", count: 9000) + " HTTP/1.1\r\n\r\n") else {
            return XCTFail()
        }
        out.removeAll()
        HTTP1Writer.appendErrorResponse(e, to: &out)
        XCTAssertTrue(str(out).hasPrefix("HTTP/1.1 414 URI Too Long\r\n"), str(out))
        XCTAssertTrue(str(out).hasSuffix("Connection: close\r\n\r\nURI Too Long"), str(out))
        // The response parser accepts what the writer produced.
        XCTAssertEqual(runResponses(out).last, .end)
    }

    func testNumberFormatting() {
        for n in [0, 1, 9, 10, 99, 100, 12345, Int(Int32.max), Int.max] {
            var out: [UInt8] = []
            out.appendDecimal(n)
            XCTAssertEqual(str(out), String(n))
            out.removeAll()
            out.appendHex(n)
            XCTAssertEqual(str(out), String(n, radix: 16))
        }
    }

    func testWriterReusesCallerBuffer() {
        let p = parseRequest("GET /x HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n")
        let ctx = ForwardingContext(clientAddress: bytes("192.0.2.1"))
        var out: [UInt8] = []
        out.reserveCapacity(1024)
        let address = out.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        for _ in 0..<3 {
            out.removeAll(keepingCapacity: true)
            HTTP1Writer.appendRequestHead(p.head, framing: .bodiless, forwarding: ctx, to: &out)
            XCTAssertEqual(out.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }, address)
        }
    }

    /// A bound that is too small costs a second pass, never bytes: `appendWriting` starts over with more room and
    /// appends exactly what the body wrote, after what the array held.
    func testAppendWritingRetriesWhenTheBoundIsTooSmall() {
        let long = String(repeating: "field-value;", count: 40)  // 480 bytes: more than the 64 minimum room
        var passes = 0
        var out: [UInt8] = [1, 2, 3]
        out.appendWriting(bound: 10) { c in
            passes += 1
            c.put(Array(long.utf8))
            c.putCRLF()
            c.putDecimal(1234)
        }
        XCTAssertGreaterThan(passes, 1)
        XCTAssertEqual(out, [1, 2, 3] + Array(long.utf8) + [13, 10] + Array("1234".utf8))
        var exact: [UInt8] = []
        passes = 0
        exact.appendWriting(bound: 6) { c in
            passes += 1
            c.put("abcdef")
        }
        XCTAssertEqual(passes, 1)
        XCTAssertEqual(exact, Array("abcdef".utf8))
    }

    /// Heads much larger than usual (many and long fields, merged X-Forwarded-For and Forwarded) come out whole:
    /// the same bytes whether the writer's bound held or not.
    func testLargeRequestHeadWithMergedForwardingFields() {
        var head = "GET http://example.com:8080/p HTTP/1.1\r\nHost: example.com:8080\r\n"
        for i in 0..<40 { head += "X-Forwarded-For: 10.0.0.\(i), 10.1.0.\(i)\r\nForwarded: for=10.2.0.\(i)\r\n" }
        head += "\r\n"
        let p = parseRequest(head)
        let ctx = ForwardingContext(
            clientAddress: bytes("2001:db8::1"),
            extraHeaderLines: bytes("X-Extra: " + String(repeating: "e", count: 300) + "\r\n")
        )
        var out: [UInt8] = []
        HTTP1Writer.appendRequestHead(p.head, framing: p.head.outboundFraming, forwarding: ctx, to: &out)
        let text = String(decoding: out, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("GET /p HTTP/1.1\r\nHost: example.com:8080\r\n"), text)
        let xff = (0..<40).map { "10.0.0.\($0), 10.1.0.\($0)" }.joined(separator: ", ") + ", 2001:db8::1"
        XCTAssertTrue(text.contains("\r\nX-Forwarded-For: \(xff)\r\n"), text)
        let fwd = (0..<40).map { "for=10.2.0.\($0)" }.joined(separator: ", ")
        XCTAssertTrue(
            text.contains("\r\nForwarded: \(fwd), for=\"[2001:db8::1]\";proto=https;host=\"example.com:8080\"\r\n"),
            text
        )
        XCTAssertTrue(text.hasSuffix("X-Extra: " + String(repeating: "e", count: 300) + "\r\n\r\n"), text)
    }
}
