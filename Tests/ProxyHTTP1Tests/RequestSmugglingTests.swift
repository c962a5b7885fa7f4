import XCTest

@testable import ProxyHTTP1

/// Every ambiguous or hostile request shape maps to a specific error and status, and the parser never yields a
/// head for it.
final class RequestSmugglingTests: XCTestCase {
    private func check(
        _ request: String,
        _ kind: HTTPParseError.Kind,
        _ status: UInt16,
        limits: HTTP1Limits = HTTP1Limits(),
        bodyBeforeError: Bool = false,
        file: StaticString = #filePath,
        line: UInt = #line
    ) {
        let e = requestError(request, limits: limits)
        XCTAssertEqual(e?.kind, kind, request.debugDescription, file: file, line: line)
        XCTAssertEqual(e?.status, status, request.debugDescription, file: file, line: line)
        // Same verdict when fed one byte at a time.
        let evs = runRequests(bytes(request), cuts: Array(1..<max(1, request.utf8.count)), limits: limits)
        XCTAssertEqual(evs.last, .error(kind), request.debugDescription, file: file, line: line)
        // Head-level faults never let a byte of body through; a chunk-framing fault found after some data has
        // streamed cannot un-send it (the connection is closed, so the origin sees a truncated body).
        let sawBody = evs.contains { if case .body = $0 { return true } else { return false } }
        XCTAssertEqual(sawBody, bodyBeforeError, "body before error", file: file, line: line)
    }

    private let h = "Host: a\r\n"

    func testContentLengthAndTransferEncoding() {
        check(
            "POST / HTTP/1.1\r\n\(h)Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            .contentLengthWithTransferEncoding,
            400
        )
        check(
            "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            .contentLengthWithTransferEncoding,
            400
        )
    }

    func testConflictingOrMalformedContentLength() {
        check("POST / HTTP/1.1\r\n\(h)Content-Length: 3\r\nContent-Length: 4\r\n\r\n", .conflictingContentLength, 400)
        check("POST / HTTP/1.1\r\n\(h)Content-Length: 3\r\nContent-Length: 3\r\n\r\n", .conflictingContentLength, 400)
        check("POST / HTTP/1.1\r\n\(h)Content-Length: 1, 1\r\n\r\n", .invalidContentLength, 400)
        check("POST / HTTP/1.1\r\n\(h)Content-Length: +3\r\n\r\n", .invalidContentLength, 400)
        check("POST / HTTP/1.1\r\n\(h)Content-Length: -1\r\n\r\n", .invalidContentLength, 400)
        check("POST / HTTP/1.1\r\n\(h)Content-Length: 0x10\r\n\r\n", .invalidContentLength, 400)
        check("POST / HTTP/1.1\r\n\(h)Content-Length: 1 2\r\n\r\n", .invalidContentLength, 400)
        check("POST / HTTP/1.1\r\n\(h)Content-Length:\r\n\r\n", .invalidContentLength, 400)
        check("POST / HTTP/1.1\r\n\(h)Content-Length: 99999999999999999999999\r\n\r\n", .invalidContentLength, 400)
        // Leading zeros are still 1*DIGIT.
        XCTAssertNil(requestError("POST / HTTP/1.1\r\n\(h)Content-Length: 003\r\n\r\nabc"))
    }

    func testTransferEncodingMustBeExactlyChunked() {
        check("POST / HTTP/1.1\r\n\(h)Transfer-Encoding: gzip\r\n\r\n", .invalidTransferEncoding, 400)
        check("POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked, gzip\r\n\r\n", .invalidTransferEncoding, 400)
        check(
            "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
            .invalidTransferEncoding,
            400
        )
        check("POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked, chunked\r\n\r\n", .invalidTransferEncoding, 400)
        check("POST / HTTP/1.1\r\n\(h)Transfer-Encoding: \r\n\r\n", .invalidTransferEncoding, 400)
        check("POST / HTTP/1.1\r\n\(h)Transfer-Encoding: xchunked\r\n\r\n", .invalidTransferEncoding, 400)
        check("POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked;q=1\r\n\r\n", .invalidTransferEncoding, 400)
        check("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", .invalidTransferEncoding, 400)
        check("POST / HTTP/1.1\r\n\(h)Transfer-Encoding: gzip, chunked\r\n\r\n", .unsupportedTransferCoding, 501)
        // A lone chunked, in any case and with list whitespace, is fine.
        XCTAssertNil(requestError("POST / HTTP/1.1\r\n\(h)Transfer-Encoding:  , CHUNKED \r\n\r\n0\r\n\r\n"))
    }

    func testBadChunkFraming() {
        let te = "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked\r\n\r\n"
        check(te + "g\r\n", .invalidChunkSize, 400)
        check(te + "\r\n", .invalidChunkSize, 400)
        check(te + "-1\r\n", .invalidChunkSize, 400)
        check(te + "0x5\r\nhello\r\n", .invalidChunkSize, 400)
        check(te + "1\nx\r\n", .invalidChunkSize, 400)
        check(te + "1\r\rx", .missingChunkCRLF, 400)
        check(te + "3\r\nabcX\r\n", .missingChunkCRLF, 400, bodyBeforeError: true)
        check(te + "3\r\nabc\rX", .missingChunkCRLF, 400, bodyBeforeError: true)
        check(te + "3\r\nabc\n0\r\n\r\n", .missingChunkCRLF, 400, bodyBeforeError: true)
        check(te + "1 \r\nx\r\n", .invalidChunkExtension, 400)
        check(te + "1;a\u{1}b\r\nx\r\n", .invalidChunkExtension, 400)
        check(te + "10000000000000000\r\n", .chunkSizeOverflow, 400)
        check(te + "00000000000000001\r\n", .chunkSizeOverflow, 400)
        check(te + "1;" + String(repeating: "e", count: 1100) + "\r\nx\r\n", .chunkExtensionTooLong, 400)
        XCTAssertNil(requestError(te + "1;" + String(repeating: "e", count: 1023) + "\r\nx\r\n0\r\n\r\n"))
        XCTAssertNil(requestError(te + "ffffffff\r\n"))  // large but valid: streams, never buffered
        check(te + "0\r\nBad Trailer: x\r\n\r\n", .invalidFieldName, 400)
        check(te + "0\r\nTrailer : x\r\n\r\n", .whitespaceBeforeColon, 400)
        check(te + "0\r\n folded\r\n\r\n", .obsoleteLineFolding, 400)
        check(te + "0\r\nX: a\nY: b\r\n\r\n", .bareLF, 400)
    }

    func testFieldLineSyntax() {
        check("GET / HTTP/1.1\r\n\(h)X-A: 1\r\n continued\r\n\r\n", .obsoleteLineFolding, 400)
        check("GET / HTTP/1.1\r\n\(h)X-A: 1\r\n\tcontinued\r\n\r\n", .obsoleteLineFolding, 400)
        check("GET / HTTP/1.1\r\n\(h)Content-Length : 5\r\n\r\n", .whitespaceBeforeColon, 400)
        check("GET / HTTP/1.1\r\n\(h)Transfer-Encoding\t: chunked\r\n\r\n", .whitespaceBeforeColon, 400)
        check("GET / HTTP/1.1\r\n\(h)X(A): 1\r\n\r\n", .invalidFieldName, 400)
        check("GET / HTTP/1.1\r\n\(h)X\u{7F}: 1\r\n\r\n", .invalidFieldName, 400)
        check("GET / HTTP/1.1\r\n\(h)\u{E9}: 1\r\n\r\n", .invalidFieldName, 400)
        check("GET / HTTP/1.1\r\n\(h): 1\r\n\r\n", .invalidFieldName, 400)
        check("GET / HTTP/1.1\r\n\(h)NoColon\r\n\r\n", .invalidFieldName, 400)
        check("GET / HTTP/1.1\r\n\(h)X-A: a\u{0}b\r\n\r\n", .invalidFieldValue, 400)
        check("GET / HTTP/1.1\r\n\(h)X-A: a\u{1B}b\r\n\r\n", .invalidFieldValue, 400)
        check("GET / HTTP/1.1\r\n\(h)X-A: a\u{7F}\r\n\r\n", .invalidFieldValue, 400)
        check("GET / HTTP/1.1\r\n\(h)X-A: a\rb\r\n\r\n", .bareCR, 400)
        check("GET / HTTP/1.1\r\n\(h)X-A: a\nb: c\r\n\r\n", .bareLF, 400)
        check("GET / HTTP/1.1\n\(h)\r\n", .bareLF, 400)
        check("GET / HTTP/1.1\r\n\(h)\n", .bareLF, 400)
        check("GET / HTTP/1.1\r\r\n\(h)\r\n", .bareCR, 400)
        // HTAB and obs-text are allowed in values.
        XCTAssertNil(requestError("GET / HTTP/1.1\r\n\(h)X-A: a\tb \u{E9}\r\n\r\n"))
    }

    func testRequestLine() {
        check("GET  / HTTP/1.1\r\n\(h)\r\n", .invalidTarget, 400)
        check("GET /  HTTP/1.1\r\n\(h)\r\n", .invalidTarget, 400)
        check("GET /a b HTTP/1.1\r\n\(h)\r\n", .invalidTarget, 400)
        check("GET /\u{1}x HTTP/1.1\r\n\(h)\r\n", .invalidTarget, 400)
        check("GET /\u{E9} HTTP/1.1\r\n\(h)\r\n", .invalidTarget, 400)
        check("GET\t/ HTTP/1.1\r\n\(h)\r\n", .invalidStartLine, 400)
        check(" GET / HTTP/1.1\r\n\(h)\r\n", .invalidMethod, 400)
        check("G(T / HTTP/1.1\r\n\(h)\r\n", .invalidStartLine, 400)
        check("GET / HTTP/1.1 \r\n\(h)\r\n", .invalidStartLine, 400)
        check("GET / http/1.1\r\n\(h)\r\n", .invalidVersion, 400)
        check("GET / HTTP/1.10\r\n\(h)\r\n", .invalidStartLine, 400)
        check("GET / HTTP/11\r\n\(h)\r\n", .invalidStartLine, 400)
        check("GET / HTTP/1x1\r\n\(h)\r\n", .invalidVersion, 400)
        check("GET / HTTPS1.1\r\n\(h)\r\n", .invalidVersion, 400)
        check("GET /\r\n\(h)\r\n", .invalidStartLine, 400)
        check("GET\r\n\(h)\r\n", .invalidStartLine, 400)
        check("GET / HTTP/1.2\r\n\(h)\r\n", .unsupportedVersion, 505)
        check("GET / HTTP/2.0\r\n\(h)\r\n", .unsupportedVersion, 505)
        check("GET / HTTP/0.9\r\n\(h)\r\n", .unsupportedVersion, 505)
        check("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", .http2Preface, 505)
    }

    func testHost() {
        check("GET / HTTP/1.1\r\n\r\n", .missingHost, 400)
        check("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", .duplicateHost, 400)
        check("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", .invalidHost, 400)
        check("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", .invalidHost, 400)
        check("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", .invalidHost, 400)
        XCTAssertNil(requestError("GET / HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n"))
        XCTAssertNil(requestError("GET / HTTP/1.0\r\n\r\n"))
    }

    func testLimits() {
        let small = HTTP1Limits(
            maxRequestLineBytes: 64,
            maxHeaderBytes: 256,
            maxHeaderCount: 4,
            maxTrailerBytes: 32,
            maxTrailerCount: 2
        )
        // Request line: exactly at the limit passes, one byte more is 414.
        let line64 = "GET /" + String(repeating: "a", count: 64 - 14) + " HTTP/1.1"
        XCTAssertEqual(line64.utf8.count, 64)
        XCTAssertNil(requestError(line64 + "\r\n\(h)\r\n", limits: small))
        let line65 = "GET /" + String(repeating: "a", count: 65 - 14) + " HTTP/1.1"
        check(line65 + "\r\n\(h)\r\n", .requestLineTooLong, 414, limits: small)
        // Also before any CRLF has arrived (slow-loris style).
        check("GET /" + String(repeating: "a", count: 200), .requestLineTooLong, 414, limits: small)
        XCTAssertEqual(HTTP1Limits().maxRequestLineBytes, 8192)
        check("GET /" + String(repeating: "a", count: 8200) + " HTTP/1.1\r\n\(h)\r\n", .requestLineTooLong, 414)

        // Header count: 4 fields pass, 5 are 431.
        let four = "GET / HTTP/1.1\r\n\(h)A: 1\r\nB: 2\r\nC: 3\r\n"
        XCTAssertNil(requestError(four + "\r\n", limits: small))
        check(four + "D: 4\r\n\r\n", .tooManyHeaders, 431, limits: small)
        var many = "GET / HTTP/1.1\r\n\(h)"
        for i in 0..<100 { many += "X-\(i): v\r\n" }
        check(many + "\r\n", .tooManyHeaders, 431)

        // Total head bytes: exactly 256 passes, 257 is 431.
        let base = "GET / HTTP/1.1\r\n\(h)X: "
        let exact = base + String(repeating: "v", count: 256 - base.utf8.count - 4) + "\r\n\r\n"
        XCTAssertEqual(exact.utf8.count, 256)
        XCTAssertNil(requestError(exact, limits: small))
        let over = base + String(repeating: "v", count: 256 - base.utf8.count - 3) + "\r\n\r\n"
        check(over, .headersTooLarge, 431, limits: small)
        check(
            "GET / HTTP/1.1\r\n\(h)X: " + String(repeating: "v", count: 33 * 1024) + "\r\n\r\n",
            .headersTooLarge,
            431
        )

        // Errors are positional: a limit crossed before a bad byte wins however the input is split (the
        // `check` helper also feeds byte by byte), and a bad byte before the limit wins too.
        check(
            "GET /" + String(repeating: "a", count: 70) + "\r" + "x HTTP/1.1\r\n\r\n",
            .requestLineTooLong,
            414,
            limits: small
        )
        check("GET /a\rb" + String(repeating: "a", count: 70) + " HTTP/1.1\r\n\r\n", .bareCR, 400, limits: small)
        check(base + String(repeating: "v", count: 300) + "\u{0}\n", .headersTooLarge, 431, limits: small)
        check(base + "v\nv" + String(repeating: "v", count: 300), .bareLF, 400, limits: small)

        // Trailers.
        let te = "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked\r\n\r\n0\r\n"
        XCTAssertNil(requestError(te + "A: 1\r\nB: 2\r\n\r\n", limits: small))
        check(te + "A: 1\r\nB: 2\r\nC: 3\r\n\r\n", .trailersTooLarge, 431, limits: small)
        check(te + "A: " + String(repeating: "x", count: 40) + "\r\n\r\n", .trailersTooLarge, 431, limits: small)
    }
}
