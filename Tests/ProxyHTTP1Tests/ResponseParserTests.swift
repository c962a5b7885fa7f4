import XCTest

@testable import ProxyHTTP1

final class ResponseParserTests: XCTestCase {
    func testContentLengthResponse() {
        let input = bytes("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
        XCTAssertEqual(
            runResponses(input),
            [.head("200 OK http1_1 n=2 body=contentLength(5) ka=true"), .body(bytes("hello")), .end]
        )
    }

    func testChunkedResponseWithTrailersAndPipelining() {
        let input = bytes(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5;x\r\npedia\r\n0\r\nEtag: 1\r\n\r\n"
                + "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        )
        let whole = runResponses(input)
        XCTAssertEqual(
            whole,
            [
                .head("200 OK http1_1 n=1 body=chunked ka=true"), .body(bytes("wikipedia")), .end,
                .head("404 Not Found http1_1 n=1 body=none ka=true"), .end,
            ]
        )
        for a in 0...input.count { XCTAssertEqual(runResponses(input, cuts: [a]), whole, "cut at \(a)") }
    }

    func testNoBodyForHEADAnd204And304() {
        // HEAD: the Content-Length describes the GET body; nothing follows, the next response does.
        let head = bytes("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
        XCTAssertEqual(
            runResponses(head, headFlags: [true, false]),
            [
                .head("200 OK http1_1 n=1 body=none ka=true"), .end,
                .head("200 OK http1_1 n=1 body=contentLength(1) ka=true"), .body(bytes("x")), .end,
            ]
        )
        let chunkedHEAD = bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        XCTAssertEqual(runResponses(chunkedHEAD, headFlags: [true]).last, .end)
        XCTAssertEqual(
            runResponses(bytes("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n")),
            [.head("204 No Content http1_1 n=1 body=none ka=true"), .end]
        )
        XCTAssertEqual(
            runResponses(bytes("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\nHTTP/1.1 204 \r\n\r\n")),
            [
                .head("304 Not Modified http1_1 n=1 body=none ka=true"), .end,
                .head("204  http1_1 n=0 body=none ka=true"), .end,
            ]
        )
        var p = ResponseParser()
        let r = bytes("HTTP/1.1 304 Not Modified\r\nContent-Length: 42\r\n\r\n")
        _ = r.withUnsafeBytes { p.parse($0) }
        XCTAssertEqual(p.head.contentLength, 42)
        XCTAssertFalse(p.head.hasBody)
    }

    func testInformationalResponsesPrecedeFinal() {
        let input = bytes(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
                + "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
        )
        let whole = runResponses(input)
        XCTAssertEqual(
            whole,
            [
                .info(100), .info(103), .head("201 Created http1_1 n=1 body=contentLength(2) ka=true"),
                .body(bytes("ok")), .end,
            ]
        )
        XCTAssertEqual(runResponses(input, cuts: Array(1..<input.count)), whole)
    }

    func testSwitchingProtocolsEndsHTTP() {
        var p = ResponseParser()
        let input = bytes(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\u{81}\u{0}"
        )
        input.withUnsafeBytes { buf in
            guard case .head(let c) = p.parse(buf) else { return XCTFail() }
            XCTAssertEqual(p.head.status, 101)
            XCTAssertFalse(p.head.isInformational)
            let rest = UnsafeRawBufferPointer(rebasing: buf[c...])
            XCTAssertEqual(p.parse(rest), .end(consumed: 0))
            guard case .error(let e) = p.parse(rest) else { return XCTFail() }
            XCTAssertEqual(e.kind, .protocolSwitched)
        }
    }

    func testCloseDelimitedBodyEndsAtEOF() {
        let input = bytes("HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>")
        XCTAssertEqual(
            runResponses(input, cuts: [30, 50], eof: true),
            [.head("200 OK http1_0 n=1 body=closeDelimited ka=false"), .body(bytes("<html>")), .end]
        )
        XCTAssertEqual(
            runResponses(bytes("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"), eof: true).last,
            .error(.unexpectedEOF)
        )
        XCTAssertEqual(runResponses(bytes("HTTP/1.1 200 OK\r\n"), eof: true).last, .error(.unexpectedEOF))
        XCTAssertEqual(
            runResponses(bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"), eof: true).last,
            .error(.unexpectedEOF)
        )
        var p = ResponseParser()
        XCTAssertEqual(p.finish(), .needMore)
    }

    func testKeepAliveRules() {
        XCTAssertEqual(
            runResponses(bytes("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")).first,
            .head("200 OK http1_0 n=1 body=none ka=false")
        )
        XCTAssertEqual(
            runResponses(bytes("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")).first,
            .head("200 OK http1_0 n=2 body=none ka=true")
        )
        XCTAssertEqual(
            runResponses(bytes("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")).first,
            .head("200 OK http1_1 n=2 body=none ka=false")
        )
    }

    func testToleratedOriginQuirks() {
        // Bare LF, missing reason phrase, whitespace before colon (dropped from the name), identical CL repeats.
        let input = bytes("HTTP/1.1 200\nServer : x\nContent-Length: 3, 3\nContent-Length: 3\nX: a\u{1}b\n\nabc")
        var p = ResponseParser()
        let evs = input.withUnsafeBytes { buf -> [ParseEvent] in
            var out: [ParseEvent] = []
            var rest = buf
            while true {
                let e = p.parse(rest)
                out.append(e)
                switch e {
                case .head(let c), .body(_, let c), .end(let c): rest = UnsafeRawBufferPointer(rebasing: rest[c...])
                default: return out
                }
                if case .end = e { return out }
            }
        }
        XCTAssertEqual(evs.count, 3)
        XCTAssertEqual(p.head.status, 200)
        XCTAssertEqual(p.head.reason.count, 0)
        XCTAssertEqual(p.head.contentLength, 3)
        XCTAssertEqual(str(p.head.headers.name(at: 0)), "Server")
        XCTAssertEqual(str(p.head.headers.first("server")!), "x")
        // TE and CL together: chunked wins, and the origin connection is not reused.
        XCTAssertEqual(
            runResponses(
                bytes("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n")
            ),
            [.head("200 OK http1_1 n=2 body=chunked ka=false"), .body(bytes("x")), .end]
        )
    }

    func testRefusedResponses() {
        func err(_ s: String) -> HTTPParseError.Kind? {
            if case .error(let k)? = runResponses(bytes(s)).last { return k }
            return nil
        }
        XCTAssertEqual(
            err("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            .conflictingContentLength
        )
        XCTAssertEqual(err("HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n"), .conflictingContentLength)
        XCTAssertEqual(err("HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n"), .invalidContentLength)
        XCTAssertEqual(err("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), .unsupportedTransferCoding)
        XCTAssertEqual(err("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), .unsupportedTransferCoding)
        XCTAssertEqual(err("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), .unsupportedTransferCoding)
        XCTAssertEqual(err("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"), .obsoleteLineFolding)
        XCTAssertEqual(err("HTTP/1.1 200 OK\r\nX: a\u{0}\r\n\r\n"), .invalidFieldValue)
        XCTAssertEqual(err("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n"), .bareCR)
        XCTAssertEqual(err("HTTP/2 200 OK\r\n\r\n"), .invalidVersion)
        XCTAssertEqual(err("HTTP/2.0 200 OK\r\n\r\n"), .unsupportedVersion)
        XCTAssertEqual(err("HTTP/1.1 20 OK\r\n\r\n"), .invalidStatusCode)
        XCTAssertEqual(err("HTTP/1.1 099 OK\r\n\r\n"), .invalidStatusCode)
        XCTAssertEqual(err("HTTP/1.1 2000 OK\r\n\r\n"), .invalidStatusCode)
        XCTAssertEqual(err("ICY 200 OK Radio\r\n\r\n"), .invalidVersion)
        XCTAssertEqual(err("ICY 200 OK\r\n\r\n"), .invalidStartLine)
        XCTAssertEqual(err("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n"), .invalidChunkSize)
        var p = ResponseParser()
        let b = bytes("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
        guard case .error(let e) = b.withUnsafeBytes({ p.parse($0) }) else { return XCTFail() }
        XCTAssertEqual(e.status, 502)
        XCTAssertEqual(e.source, .upstream)
    }

    func testClientFraming() {
        func head(_ s: String, isHEAD: Bool = false) -> ResponseHead {
            var p = ResponseParser()
            let b = bytes(s)
            _ = b.withUnsafeBytes { p.parse($0, requestIsHEAD: isHEAD) }
            return p.head
        }
        let cl = head("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n")
        XCTAssertEqual(cl.clientFraming(clientVersion: .http1_0), .contentLength(7))
        let ch = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        XCTAssertEqual(ch.clientFraming(clientVersion: .http1_1), .chunked)
        XCTAssertEqual(ch.clientFraming(clientVersion: .http1_0), .closeDelimited)
        let close = head("HTTP/1.1 200 OK\r\n\r\n")
        XCTAssertEqual(close.bodyKind, .closeDelimited)
        XCTAssertEqual(close.clientFraming(clientVersion: .http1_1), .chunked)
        XCTAssertEqual(
            head("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", isHEAD: true).clientFraming(clientVersion: .http1_1),
            .bodiless
        )
    }
}
