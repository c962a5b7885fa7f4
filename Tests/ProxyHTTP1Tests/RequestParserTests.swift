import XCTest

@testable import ProxyHTTP1

final class RequestParserTests: XCTestCase {
    func testSimpleGetHead() {
        var p = RequestParser()
        let input = bytes("GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept:  */* \r\n\r\n")
        let ev = input.withUnsafeBytes { p.parse($0) }
        XCTAssertEqual(ev, .head(consumed: input.count))
        let h = p.head
        XCTAssertEqual(h.method, .get)
        XCTAssertEqual(str(h.methodBytes), "GET")
        XCTAssertEqual(str(h.target), "/index.html?q=1")
        XCTAssertEqual(h.version, .http1_1)
        XCTAssertEqual(h.headers.count, 3)
        XCTAssertEqual(str(h.host!), "example.com")
        XCTAssertEqual(str(h.headers.first("accept")!), "*/*")  // OWS trimmed
        XCTAssertEqual(str(h.headers.first("USER-agent")!), "t")
        XCTAssertEqual(str(h.headers.name(at: 1)), "User-Agent")
        XCTAssertNil(h.headers.first("content-length"))
        XCTAssertTrue(h.keepAlive)
        XCTAssertFalse(h.hasBody)
        XCTAssertFalse(h.expectsContinue)
        XCTAssertNil(h.contentLength)
        XCTAssertEqual(h.outboundFraming, .bodiless)
        // No body: the next call (on an empty buffer) ends the message.
        XCTAssertEqual(p.parse(UnsafeRawBufferPointer(start: nil, count: 0)), .end(consumed: 0))
        XCTAssertTrue(p.isIdle)
        XCTAssertEqual(p.parse(UnsafeRawBufferPointer(start: nil, count: 0)), .needMore)
    }

    func testMethodClassification() {
        let cases: [(String, HTTPMethod)] = [
            ("GET", .get), ("HEAD", .head), ("POST", .post), ("PUT", .put), ("DELETE", .delete),
            ("CONNECT", .connect), ("OPTIONS", .options), ("TRACE", .trace), ("PATCH", .patch),
            ("get", .other), ("PROPFIND", .other), ("POSTS", .other),
        ]
        for (m, expected) in cases {
            var p = RequestParser()
            let input = bytes("\(m) / HTTP/1.1\r\nHost: a\r\n\r\n")
            XCTAssertEqual(input.withUnsafeBytes { p.parse($0) }, .head(consumed: input.count), m)
            XCTAssertEqual(p.head.method, expected, m)
            XCTAssertEqual(str(p.head.methodBytes), m)
        }
    }

    func testPipelinedRequestsInOneBuffer() {
        let input = bytes(
            "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                + "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
                + "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                + "GET /d HTTP/1.0\r\n\r\n"
        )
        let evs = runRequests(input)
        XCTAssertEqual(
            evs,
            [
                .head("GET /a http1_1 n=1 cl=- chunked=false ka=true host=h"), .end,
                .head("POST /b http1_1 n=2 cl=5 chunked=false ka=true host=h"), .body(bytes("hello")), .end,
                .head("PUT /c http1_1 n=2 cl=- chunked=true ka=true host=h"), .body(bytes("abcde")), .end,
                .head("GET /d http1_0 n=0 cl=- chunked=false ka=false host=-"), .end,
            ]
        )
    }

    func testBodyRangesPointIntoCallerBufferAndStopAtMessageEnd() {
        var p = RequestParser()
        let input = bytes("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET")
        input.withUnsafeBytes { buf in
            guard case .head(let c) = p.parse(buf) else { return XCTFail() }
            let rest = UnsafeRawBufferPointer(rebasing: buf[c...])
            XCTAssertEqual(p.parse(rest), .body(range: 0..<3, consumed: 3))
            XCTAssertEqual(p.parse(UnsafeRawBufferPointer(rebasing: rest[3...])), .end(consumed: 0))
        }
        // The bytes of the next request stay with the caller until it feeds them: backpressure is not calling.
        XCTAssertTrue(p.isIdle)
    }

    func testByteAtATimeEqualsWhole() {
        let input = bytes(
            "\r\nPOST /up HTTP/1.1\r\nHost: h:8080\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
                + "A;x=y\r\n0123456789\r\n1\r\nZ\r\n0\r\nX-Sum: 1\r\n\r\n"
                + "DELETE /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        let whole = runRequests(input)
        XCTAssertEqual(whole.count, 5)
        XCTAssertEqual(whole[1], .body(bytes("0123456789Z")))
        XCTAssertEqual(whole[4], .end)
        let oneByOne = runRequests(input, cuts: Array(1..<input.count))
        XCTAssertEqual(whole, oneByOne)
    }

    func testContentLengthBodySplitAtEveryBoundary() {
        let input = bytes(
            "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello worldGET / HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        let whole = runRequests(input)
        XCTAssertEqual(whole[1], .body(bytes("hello world")))
        XCTAssertEqual(whole.count, 5)
        for a in 0...input.count {
            XCTAssertEqual(runRequests(input, cuts: [a]), whole, "cut at \(a)")
            for b in stride(from: a, through: input.count, by: 7) {
                XCTAssertEqual(runRequests(input, cuts: [a, b]), whole, "cuts at \(a), \(b)")
            }
        }
    }

    func testChunkedBodySplitAtEveryBoundaryWithTrailers() {
        let input = bytes(
            "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                + "5\r\nhello\r\n1;a=b\r\n \r\nb ;q=\"x\"\r\nworld!!!!!!\r\n0\r\nChecksum: abc\r\nX-T: 2\r\n\r\n"
                + "GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        var p = RequestParser()
        let whole = runRequests([input], parser: &p)
        XCTAssertEqual(whole[1], .body(bytes("hello world!!!!!!")))
        XCTAssertEqual(whole.count, 5)
        for a in 0...input.count {
            var q = RequestParser()
            XCTAssertEqual(runRequests(pieces(input, [a]), parser: &q), whole, "cut at \(a)")
        }
        // Trailers of the chunked request were readable at its .end; the next request cleared them.
        var t = RequestParser()
        let next = bytes("GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
        let first = Array(input[..<(input.count - next.count)])
        _ = runRequests([first], parser: &t)
        XCTAssertEqual(t.trailers.count, 2)
        XCTAssertEqual(str(t.trailers.first("checksum")!), "abc")
        XCTAssertEqual(str(t.trailers.first("x-t")!), "2")
        XCTAssertEqual(p.trailers.count, 0)
    }

    func testExpectContinueHeadArrivesBeforeBody() {
        var p = RequestParser()
        let head = bytes("PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-Continue\r\n\r\n")
        XCTAssertEqual(head.withUnsafeBytes { p.parse($0) }, .head(consumed: head.count))
        XCTAssertTrue(p.head.expectsContinue)
        XCTAssertTrue(p.head.hasBody)
        // The proxy sends or forwards 100 Continue now; the body has not arrived yet.
        XCTAssertEqual(p.parse(UnsafeRawBufferPointer(start: nil, count: 0)), .needMore)
        XCTAssertFalse(p.isIdle)
        let body = bytes("data")
        XCTAssertEqual(body.withUnsafeBytes { p.parse($0) }, .body(range: 0..<4, consumed: 4))
        XCTAssertEqual(p.parse(UnsafeRawBufferPointer(start: nil, count: 0)), .end(consumed: 0))
    }

    func testKeepAliveRules() {
        func ka(_ s: String) -> Bool {
            var p = RequestParser()
            let b = bytes(s)
            XCTAssertEqual(b.withUnsafeBytes { p.parse($0) }, .head(consumed: b.count), s)
            return p.head.keepAlive
        }
        XCTAssertTrue(ka("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        XCTAssertFalse(ka("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
        XCTAssertFalse(ka("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n"))
        XCTAssertFalse(ka("GET / HTTP/1.0\r\n\r\n"))
        XCTAssertTrue(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"))
        XCTAssertFalse(ka("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"))
        var p = RequestParser()
        let b = bytes("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
        _ = b.withUnsafeBytes { p.parse($0) }
        XCTAssertFalse(p.head.expectsContinue)
    }

    func testLeadingEmptyLinesAreSkippedButBounded() {
        XCTAssertEqual(runRequests(bytes("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")).last, .end)
        let many = String(repeating: "\r\n", count: 9) + "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        XCTAssertEqual(requestError(many)?.kind, .tooManyLeadingEmptyLines)
        // Split between CR and LF of a leading empty line.
        XCTAssertEqual(runRequests(bytes("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), cuts: [1]).last, .end)
    }

    func testErrorIsStickyAndFinishReportsTruncation() {
        var p = RequestParser()
        let bad = bytes("GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n")
        guard case .error(let e) = bad.withUnsafeBytes({ p.parse($0) }) else { return XCTFail() }
        XCTAssertEqual(e.kind, .invalidFieldName)
        XCTAssertEqual(e.source, .downstream)
        XCTAssertEqual(p.parse(UnsafeRawBufferPointer(start: nil, count: 0)), .error(e))
        XCTAssertEqual(p.finish(), .error(e))

        var q = RequestParser()
        XCTAssertEqual(q.finish(), .needMore)  // clean close before any request
        let partial = bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        XCTAssertEqual(runRequests(pieces(partial, []), eof: true, parser: &q).last, .error(.unexpectedEOF))
        XCTAssertEqual(runRequests(bytes("GET / HTTP/1.1\r\nHo"), eof: true).last, .error(.unexpectedEOF))
        XCTAssertEqual(runRequests(bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), eof: true).last, .end)
    }

    func testHeaderLookupHandlesDuplicatesAndCase() {
        var p = RequestParser()
        let b = bytes("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\nX-B:\r\nX-a:3\r\n\r\n")
        XCTAssertEqual(b.withUnsafeBytes { p.parse($0) }, .head(consumed: b.count))
        let h = p.head.headers
        XCTAssertEqual(h.firstIndex(of: "x-a"), 1)
        XCTAssertEqual(h.nextIndex(of: "X-A", from: 2), 2)
        XCTAssertEqual(h.nextIndex(of: "X-A", from: 3), 4)
        XCTAssertNil(h.nextIndex(of: "X-A", from: 5))
        XCTAssertEqual(h.firstIndex(of: bytes("X-B")), 3)
        XCTAssertEqual(h.value(at: 3).count, 0)
        XCTAssertEqual(str(h.value(at: 4)), "3")
        XCTAssertTrue(h.nameEquals(at: 0, "HOST"))
        XCTAssertFalse(h.contains("x-c"))
        // "_" and "^" are distinct from "\x7F" and "~" (no |0x20 shortcut).
        let u = bytes("GET / HTTP/1.1\r\nHost: a\r\nX_Y: 1\r\n\r\n")
        var q = RequestParser()
        _ = u.withUnsafeBytes { q.parse($0) }
        XCTAssertNotNil(q.head.headers.first("x_y"))
        XCTAssertNil(q.head.headers.first("x\u{7F}y"))
    }

    func testHeadStorageIsReusedAcrossRequests() {
        // Allocate per connection, not per request: once the caller lets go of the previous head, the next head
        // is parsed into the same storage.
        var p = RequestParser()
        let req = bytes("GET /some/longer/path HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n")
        var addresses: Set<UInt> = []
        for _ in 0..<5 {
            _ = req.withUnsafeBytes { p.parse($0) }
            let address = p.head.headers.bytes.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
            addresses.insert(address)
            XCTAssertEqual(p.parse(UnsafeRawBufferPointer(start: nil, count: 0)), .end(consumed: 0))
        }
        XCTAssertEqual(addresses.count, 1)
    }
}
