import ProxyCore
import ProxyHTTP1
import XCTest

@testable import ProxyForwarder

/// The forwarder against a scripted origin (no sockets): every misbehaviour in the table runs once for an HTTP/1
/// client (the sink encodes with `HTTP1ResponseEncoder`, as `ClientConnection` does, and the test parses what the
/// client would read) and once for an HTTP/2 client (the sink applies `H2ResponseTranslation`, as `H2Connection`
/// does, and records HEADERS/DATA/trailers/RST_STREAM).
final class OriginForwarderTests: XCTestCase {
    enum Client: CaseIterable { case http1, http2 }

    // MARK: the table

    /// What the client ends up with.
    enum Seen: Equatable {
        /// A complete response: status, body, and whether the HTTP/1 connection must close after it.
        case response(status: Int, body: [UInt8])
        /// The proxy answered with an error status itself (no origin response was forwarded).
        case proxyError(Int)
        /// A started response was cut: HTTP/1 abort, HTTP/2 RST_STREAM.
        case truncated
        /// Nothing yet.
        case pending
    }

    func testRefusedConnectFailsOverToTheNextServer() {
        for client in Client.allCases {
            let h = Harness(client)
            h.connector.add(FakeTransport(server: 0, connectErrno: 111))
            h.connector.add(FakeTransport(server: 1, replies: [.bytes(ok("hello"))]))
            h.get()
            XCTAssertEqual(h.seen, .response(status: 200, body: Array("hello".utf8)), "\(client)")
            XCTAssertEqual(h.forwarder.attempts, 2)
        }
    }

    func testRefusedEverywhereIs502() {
        for client in Client.allCases {
            let h = Harness(client)
            h.connector.add(FakeTransport(server: 0, connectErrno: 111))
            h.connector.add(FakeTransport(server: 1, connectErrno: 111))
            h.get()
            XCTAssertEqual(h.seen, .proxyError(502), "\(client)")
        }
    }

    func testNoServerIs502() {
        for client in Client.allCases {
            let h = Harness(client)
            h.get()
            XCTAssertEqual(h.seen, .proxyError(502), "\(client)")
            XCTAssertEqual(h.failure, .noServer)
        }
    }

    func testNoSocketForLackOfLocalResourcesIs503() {
        for client in Client.allCases {
            // At once, and after a first attempt whose connect was refused.
            for refusedFirst in [false, true] {
                let h = Harness(client)
                if refusedFirst { h.connector.add(FakeTransport(server: 0, connectErrno: 111)) }
                h.connector.shortageWhenEmpty = true
                h.get()
                XCTAssertEqual(h.seen, .proxyError(503), "\(client) \(refusedFirst)")
                XCTAssertEqual(h.failure, .localResources)
                // The next exchange on the same forwarder starts clean.
                h.connector.shortageWhenEmpty = false
                h.get()
                XCTAssertEqual(h.seen, .proxyError(502), "\(client) \(refusedFirst)")
                XCTAssertEqual(h.failure, .noServer)
            }
        }
    }

    func testOnlyFailuresNobodyElseCountsAreCountedBySessions() {
        XCTAssertEqual(
            ["bad_response", "no_server", "reset_before_headers", "reset_mid_body", "timeout", "unsupported"],
            [
                ForwardFailure.connect, .noServer, .resetBeforeHead, .resetMidBody, .badResponse, .timeout,
                .unsupported, .tunnelIdle, .localResources,
            ].filter(\.isCountedBySession).map(\.rawValue).sorted()
        )
    }

    func testResetBeforeHeadRetriesAnIdempotentRequestOnAnotherServerOnly() {
        for client in Client.allCases {
            let h = Harness(client)
            h.connector.add(FakeTransport(server: 0, replies: [.reset]))
            h.connector.add(FakeTransport(server: 0, replies: [.bytes(ok("same server"))]))
            h.connector.add(FakeTransport(server: 1, replies: [.bytes(ok("other"))]))
            h.get()
            XCTAssertEqual(h.seen, .response(status: 200, body: Array("other".utf8)), "\(client)")
        }
    }

    func testResetBeforeHeadFailsANonIdempotentRequest() {
        for client in Client.allCases {
            let h = Harness(client)
            h.connector.add(FakeTransport(server: 0, replies: [.reset]))
            h.connector.add(FakeTransport(server: 1, replies: [.bytes(ok("never"))]))
            h.post(body: "data")
            XCTAssertEqual(h.seen, .proxyError(502), "\(client)")
            XCTAssertEqual(h.forwarder.attempts, 1)
        }
    }

    /// Reliability issue item 2: a pooled connection the origin already closed must not fail a POST.
    func testDeadPooledConnectionDoesNotFailAPost() {
        for client in Client.allCases {
            let h = Harness(client)
            h.connector.add(FakeTransport(server: 0, reused: true, writeFails: true))
            h.connector.add(FakeTransport(server: 0, replies: [.bytes(ok("fresh"))]))
            h.post(body: "payload")
            XCTAssertEqual(h.seen, .response(status: 200, body: Array("fresh".utf8)), "\(client)")
            XCTAssertEqual(h.connector.handedOut[1].written.suffix(7), Array("payload".utf8)[...])
        }
    }

    func testPooledConnectionClosedAfterTheRequestWasWrittenRetriesOnlyIdempotent() {
        for client in Client.allCases {
            let h = Harness(client)
            h.connector.add(FakeTransport(server: 0, reused: true, replies: [.eof]))
            h.connector.add(FakeTransport(server: 0, replies: [.bytes(ok("again"))]))
            h.get()
            XCTAssertEqual(h.seen, .response(status: 200, body: Array("again".utf8)), "\(client)")

            let p = Harness(client)
            p.connector.add(FakeTransport(server: 0, reused: true, replies: [.eof]))
            p.connector.add(FakeTransport(server: 0, replies: [.bytes(ok("never"))]))
            p.post(body: "x")
            XCTAssertEqual(p.seen, .proxyError(502), "\(client)")
        }
    }

    func testResetMidBodyTruncatesVisibly() {
        for client in Client.allCases {
            let h = Harness(client)
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + String(repeating: "a", count: 40)
            h.connector.add(FakeTransport(server: 0, replies: [.bytes(Array(head.utf8)), .reset]))
            h.get()
            XCTAssertEqual(h.seen, .truncated, "\(client)")
            XCTAssertEqual(h.failure, .resetMidBody)
        }
    }

    func testOriginClosingMidBodyOfAKnownLengthIsTruncation() {
        for client in Client.allCases {
            let h = Harness(client)
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"
            h.connector.add(FakeTransport(server: 0, replies: [.bytes(Array(head.utf8)), .eof]))
            h.get()
            XCTAssertEqual(h.seen, .truncated, "\(client)")
        }
    }

    func testSlowHeadTimesOutWith504AndTriesAnotherServerForIdempotent() {
        for client in Client.allCases {
            let h = Harness(client)
            h.connector.add(FakeTransport(server: 0, replies: []))
            h.get()
            XCTAssertEqual(h.seen, .pending)
            XCTAssertEqual(h.forwarder.state, .awaitingHead)
            let d = h.forwarder.deadline
            XCTAssertEqual(d, h.now + h.forwarder.timeouts.read)
            h.forwarder.checkTimeout(now: d - 1)
            XCTAssertEqual(h.seen, .pending, "not before the deadline")
            h.forwarder.checkTimeout(now: d)
            XCTAssertEqual(h.seen, .proxyError(504), "\(client)")
            XCTAssertEqual(h.failure, .timeout)

            let r = Harness(client)
            r.connector.add(FakeTransport(server: 0, replies: []))
            r.connector.add(FakeTransport(server: 1, replies: [.bytes(ok("backup"))]))
            r.get()
            r.forwarder.checkTimeout(now: r.forwarder.deadline)
            r.events()
            XCTAssertEqual(r.seen, .response(status: 200, body: Array("backup".utf8)), "\(client)")
        }
    }

    func testPendingConnectTimesOut() {
        for client in Client.allCases {
            let h = Harness(client)
            h.connector.add(FakeTransport(server: 0, connectErrno: nil, pendingConnect: true))
            h.post(body: "x")
            XCTAssertEqual(h.forwarder.state, .connecting)
            h.forwarder.checkTimeout(now: h.now + h.forwarder.timeouts.connect)
            XCTAssertEqual(h.seen, .proxyError(504), "\(client)")
        }
    }

    /// Reliability issue item 3: an upload slower than the read timeout is not a timeout while the client is the
    /// one being waited for.
    func testSlowUploadIsNotAnOriginTimeout() {
        for client in Client.allCases {
            let h = Harness(client)
            h.connector.add(FakeTransport(server: 0, replies: []))
            h.begin(method: "POST", chunked: true, ended: false)
            XCTAssertEqual(h.forwarder.state, .sending)
            XCTAssertEqual(h.forwarder.deadline, 0, "waiting for the client, not the origin: \(client)")
            for i in 0..<5 {
                h.now += h.forwarder.timeouts.read
                h.sendBody("part\(i)")
                XCTAssertEqual(h.forwarder.deadline, 0)
            }
            h.end()
            XCTAssertEqual(h.forwarder.state, .awaitingHead)
            XCTAssertEqual(h.forwarder.deadline, h.now + h.forwarder.timeouts.read)
            let written = String(decoding: h.connector.handedOut[0].written, as: UTF8.self)
            XCTAssertTrue(written.hasSuffix("5\r\npart4\r\n0\r\n\r\n"), written)
        }
    }

    func testOriginThatStopsAcceptingTheUploadTimesOutAfterTheSendTimeout() {
        for client in Client.allCases {
            let h = Harness(client)
            let t = FakeTransport(server: 0, replies: [], writeLimit: 10)
            h.connector.add(t)
            h.begin(method: "POST", chunked: false, ended: false)
            h.sendBody("0123456789abcdef")
            XCTAssertEqual(h.forwarder.deadline, h.now + h.forwarder.timeouts.send)
            h.forwarder.checkTimeout(now: h.now + h.forwarder.timeouts.send)
            XCTAssertEqual(h.seen, .proxyError(504), "\(client)")
        }
    }

    func testMalformedHeadIs502() {
        for client in Client.allCases {
            let h = Harness(client)
            h.connector.add(FakeTransport(server: 0, replies: [.bytes(Array("HTTP/9.9 200 OK\r\n\r\n".utf8))]))
            h.get()
            XCTAssertEqual(h.seen, .proxyError(502), "\(client)")
            XCTAssertEqual(h.failure, .badResponse)
        }
    }

    func testInterimResponsesAreNotForwarded() {
        for client in Client.allCases {
            let h = Harness(client)
            let bytes = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            h.connector.add(FakeTransport(server: 0, replies: [.bytes(Array(bytes.utf8)), .bytes(ok("final"))]))
            h.get()
            XCTAssertEqual(h.seen, .response(status: 200, body: Array("final".utf8)), "\(client)")
        }
    }

    func testSwitchingProtocolsWithoutAnUpgradeRequestIs502() {
        for client in Client.allCases {
            let h = Harness(client)
            let bytes = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
            h.connector.add(FakeTransport(server: 0, replies: [.bytes(Array(bytes.utf8))]))
            h.get()
            XCTAssertEqual(h.seen, .proxyError(502), "\(client)")
        }
    }

    // MARK: tunnels

    private static let switching = Array(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".utf8
    )

    func testUpgradeBecomesATunnelWithHalfClosesBothWays() {
        for client in Client.allCases {
            let h = Harness(client)
            let t = FakeTransport(server: 0, replies: [.bytes(Self.switching + Array("hello".utf8))])
            h.connector.add(t)
            h.upgrade()
            XCTAssertTrue(h.forwarder.isTunnel, "\(client)")
            XCTAssertEqual(h.body, Array("hello".utf8), "origin bytes after the 101 flow unparsed")
            if client == .http1 {
                XCTAssertTrue(String(decoding: h.clientBytes, as: UTF8.self).hasPrefix("HTTP/1.1 101 "))
            } else {
                XCTAssertEqual(h.h2Status, 200)
            }
            // Client bytes go out raw (no chunking), after the head.
            let room = h.forwarder.requestBodyRoom()
            XCTAssertGreaterThan(room, 1000)
            let frame: [UInt8] = [0x81, 0x02, 0x68, 0x69]  // a WebSocket text frame "hi"
            frame.withUnsafeBytes { h.forwarder.sendRequestBody($0) }
            h.events()
            XCTAssertEqual(Array(t.written.suffix(8)), Array("\r\n\r\n".utf8) + frame)
            // Client half-close → FIN toward the origin; the origin's answer still flows.
            h.forwarder.endTunnelUpstream()
            XCTAssertEqual(t.writeShutdowns, 1)
            XCTAssertEqual(h.forwarder.requestBodyRoom(), 0)
            t.push(.bytes(Array("bye".utf8)))
            t.push(.eof)
            h.events()
            XCTAssertEqual(h.body, Array("hellobye".utf8))
            XCTAssertTrue(h.tunnelOriginDone)
            XCTAssertTrue(h.ended, "both sides ended: the exchange is over")
            XCTAssertEqual(h.forwarder.state, .done)
            XCTAssertEqual(h.connector.released.last?.reusable, false, "a tunnel's connection is never pooled")
            XCTAssertEqual(h.forwarder.requestBodyBytes, 4)
            XCTAssertEqual(h.forwarder.responseBodyBytes, 8)
        }
    }

    func testOriginHalfCloseFirstLeavesTheClientSideOpen() {
        let h = Harness(.http1)
        let t = FakeTransport(server: 0, replies: [.bytes(Self.switching), .eof])
        h.connector.add(t)
        h.upgrade()
        XCTAssertTrue(h.tunnelOriginDone)
        XCTAssertFalse(h.ended)
        XCTAssertTrue(h.forwarder.isTunnel)
        Array("late".utf8).withUnsafeBytes { h.forwarder.sendRequestBody($0) }
        h.events()
        XCTAssertTrue(String(decoding: t.written, as: UTF8.self).hasSuffix("late"))
        h.forwarder.endTunnelUpstream()
        XCTAssertEqual(t.writeShutdowns, 1)
        XCTAssertTrue(h.ended)
    }

    func testUpgradeRequestHoldsClientBytesUntilTheOriginSwitches() {
        let h = Harness(.http1)
        h.connector.add(FakeTransport(server: 0, replies: []))
        h.upgrade()
        XCTAssertEqual(h.forwarder.state, .awaitingHead)
        XCTAssertEqual(h.forwarder.requestBodyRoom(), 0, "no tunnel bytes before the 101")
    }

    func testRefusedUpgradeIsANormalResponse() {
        for client in Client.allCases {
            let h = Harness(client)
            h.connector.add(FakeTransport(server: 0, replies: [.bytes(ok("no websocket here"))]))
            h.upgrade()
            XCTAssertEqual(h.seen, .response(status: 200, body: Array("no websocket here".utf8)), "\(client)")
            XCTAssertFalse(h.forwarder.isTunnel)
            XCTAssertEqual(h.connector.released.last?.reusable, true, "a plain exchange keeps its connection")
        }
    }

    func testSwitchingWithoutAnUpgradeFieldIs502() {
        let h = Harness(.http1)
        h.connector.add(FakeTransport(server: 0, replies: [.bytes(Array("HTTP/1.1 101 OK\r\n\r\n".utf8))]))
        h.upgrade()
        XCTAssertEqual(h.seen, .proxyError(502))
    }

    func testTunnelBackpressureAndIdleTimeout() {
        let h = Harness(.http1)
        let t = FakeTransport(server: 0, replies: [.bytes(Self.switching)])
        h.connector.add(t)
        h.upgrade()
        XCTAssertEqual(h.forwarder.deadline, h.now + ForwarderTimeouts().tunnelIdle)
        // The client reads nothing: the forwarder stops taking origin bytes at the sink's room.
        h.room = h.out.readableCount + 10
        t.push(.bytes([UInt8](repeating: 0x41, count: 100)))
        h.events()
        XCTAssertEqual(h.body.count, 10)
        XCTAssertTrue(h.forwarder.pausedBySink)
        XCTAssertEqual(t.inBuf!.readableCount, 90, "the rest waits in the origin's buffer")
        // Nothing moved for tunnel_idle: both sides close (a tunnel failure, not an origin error for health).
        h.now += ForwarderTimeouts().tunnelIdle
        h.forwarder.checkTimeout(now: h.now)
        XCTAssertEqual(h.failure, .tunnelIdle)
        XCTAssertTrue(h.reset)
        XCTAssertEqual(h.connector.released.last?.reusable, false)
    }

    func testOriginResetMidTunnelIsTruncation() {
        let h = Harness(.http2)
        h.connector.add(FakeTransport(server: 0, replies: [.bytes(Self.switching), .reset]))
        h.upgrade()
        XCTAssertEqual(h.failure, .resetMidBody)
        XCTAssertTrue(h.reset)
    }

    func testBodilessResponses() {
        for client in Client.allCases {
            for (status, head) in [
                (204, "HTTP/1.1 204 No Content\r\n\r\n"),
                (304, "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"),
            ] {
                let h = Harness(client)
                h.connector.add(FakeTransport(server: 0, replies: [.bytes(Array(head.utf8))]))
                h.get()
                XCTAssertEqual(h.seen, .response(status: status, body: []), "\(client) \(status)")
                XCTAssertEqual(h.connector.released.last?.reusable, true, "keep-alive kept")
            }
            let h = Harness(client)
            h.connector.add(
                FakeTransport(server: 0, replies: [.bytes(Array("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n".utf8))])
            )
            h.begin(method: "HEAD", chunked: false, ended: true)
            XCTAssertEqual(h.seen, .response(status: 200, body: []), "\(client) HEAD")
            if client == .http2 { XCTAssertEqual(h.h2ContentLength, 9, "HEAD keeps the origin's length") }
        }
    }

    /// Reliability issue item 1: a close-delimited response completes (re-chunked with its last chunk for an
    /// HTTP/1.1 client) when the origin closes, including when the FIN comes with the last bytes.
    func testCloseDelimitedResponseEndsWhenTheOriginCloses() {
        for client in Client.allCases {
            let h = Harness(client)
            let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart one, "
            h.connector.add(
                FakeTransport(server: 0, replies: [.bytes(Array(head.utf8)), .bytes(Array("part two".utf8)), .eof])
            )
            h.get()
            XCTAssertEqual(h.seen, .response(status: 200, body: Array("part one, part two".utf8)), "\(client)")
            XCTAssertEqual(h.connector.released.last?.reusable, false)
            if client == .http1 {
                XCTAssertTrue(h.h1Encoder.chunked)
                XCTAssertTrue(String(decoding: h.clientBytes, as: UTF8.self).hasSuffix("0\r\n\r\n"))
            }
        }
        let old = Harness(.http1, clientVersion: .http1_0)
        old.connector.add(FakeTransport(server: 0, replies: [.bytes(Array("HTTP/1.0 200 OK\r\n\r\nold".utf8)), .eof]))
        old.get()
        XCTAssertEqual(old.seen, .response(status: 200, body: Array("old".utf8)))
        XCTAssertTrue(old.h1Encoder.closeDelimited, "HTTP/1.0 clients get a close-delimited body")
    }

    func testChunkedResponseWithTrailers() {
        for client in Client.allCases {
            let h = Harness(client)
            let bytes = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nGrpc-Status: 0\r\n\r\n"
            h.connector.add(FakeTransport(server: 0, replies: [.bytes(Array(bytes.utf8))]))
            h.get()
            XCTAssertEqual(h.seen, .response(status: 200, body: Array("abc".utf8)), "\(client)")
            XCTAssertEqual(h.trailerCount, 1)
            XCTAssertEqual(h.connector.released.last?.reusable, true)
        }
    }

    func testBackpressurePausesOriginReads() {
        for client in Client.allCases {
            let h = Harness(client)
            let body = String(repeating: "z", count: 3000)
            h.connector.add(FakeTransport(server: 0, replies: [.bytes(ok(body))]))
            h.room = 1000
            h.get()
            XCTAssertTrue(h.forwarder.pausedBySink, "\(client)")
            XCTAssertEqual(h.forwarder.deadline, 0, "a client that does not read is not an origin timeout")
            XCTAssertLessThanOrEqual(h.body.count, 1000)
            h.room = 1 << 20
            h.events()
            XCTAssertEqual(h.seen, .response(status: 200, body: Array(body.utf8)), "\(client)")
        }
    }

    func testEarlyResponseEndsExchangeWithoutReusingTheConnection() {
        for client in Client.allCases {
            let h = Harness(client)
            h.connector.add(
                FakeTransport(
                    server: 0,
                    replies: [.bytes(Array("HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n".utf8))]
                ),
                early: true
            )
            h.begin(method: "POST", chunked: false, ended: false)
            h.sendBody("first part")
            XCTAssertEqual(h.seen, .response(status: 413, body: []), "\(client)")
            XCTAssertEqual(h.connector.released.last?.reusable, false, "the upload did not finish")
            XCTAssertTrue(h.forwarder.discardsRequestBody)
        }
    }

    // MARK: the retry rule, exhaustively

    func testRetryRuleTable() {
        typealias F = OriginForwarder
        let attempts: [F.FailedAttempt] = [
            .connectFailed, .deadBeforeSend, .failedAfterSend(reused: true), .failedAfterSend(reused: false),
            .timedOutBeforeHead, .responseStarted,
        ]
        for a in attempts {
            for idem in [true, false] {
                for replay in [true, false] {
                    let d = F.retryDecision(a, idempotent: idem, replayable: replay)
                    let expected: F.RetryDecision
                    if !replay {
                        expected = .fail
                    } else {
                        switch a {
                        case .connectFailed, .deadBeforeSend: expected = .retry
                        case .failedAfterSend(reused: true): expected = idem ? .retry : .fail
                        case .failedAfterSend(reused: false), .timedOutBeforeHead:
                            expected = idem ? .retryOtherServer : .fail
                        case .responseStarted: expected = .fail
                        }
                    }
                    XCTAssertEqual(d, expected, "\(a) idempotent=\(idem) replayable=\(replay)")
                }
            }
        }
        // What `begin` is given: the session's classification of the method bytes (RFC 9110 §9.2.2).
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            XCTAssertTrue(HTTPMethod.classify(Array(m.utf8)[...]).isIdempotent)
        }
        for m in ["POST", "PATCH", "CONNECT", "get", "PROPFIND"] {
            XCTAssertFalse(HTTPMethod.classify(Array(m.utf8)[...]).isIdempotent)
        }
    }
}

// MARK: - helpers

private func ok(_ body: String) -> [UInt8] {
    Array("HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
}

/// One scripted origin connection.
final class FakeTransport: OriginTransport {
    enum Reply {
        case bytes([UInt8])
        case eof
        case reset
    }
    let server: Int
    let wasReused: Bool
    private(set) var isConnected: Bool
    private let connectErrno: Int32?
    private var replies: [Reply]
    private let writeFails: Bool
    private var writeLimit: Int
    var canRead = true
    var canWrite = true
    var peerClosed = false
    var inBuf: ByteBuffer? = ByteBuffer(capacity: 16 * 1024)
    var written: [UInt8] = []
    weak var owner: OriginForwarder?
    /// Readiness no longer changes (a blocked writer stays blocked).
    var closedByTest = false

    init(
        server: Int,
        reused: Bool = false,
        connectErrno: Int32? = nil,
        pendingConnect: Bool = false,
        replies: [Reply] = [],
        writeFails: Bool = false,
        writeLimit: Int = .max
    ) {
        self.server = server
        self.wasReused = reused
        self.connectErrno = connectErrno
        self.isConnected = connectErrno == nil && !pendingConnect
        self.replies = replies
        self.writeFails = writeFails
        self.writeLimit = writeLimit
        if pendingConnect {
            // A connect that never completes (SYN into the void): no readiness event ever comes.
            canRead = false
            canWrite = false
            closedByTest = true
        }
    }

    func finishConnect() -> Int32 {
        if let e = connectErrno { return e }
        isConnected = true
        return 0
    }

    /// Replies become readable only once this says so (the harness: after the request ended), as a real origin
    /// answers after reading the request.
    var gate: () -> Bool = { true }

    func fillInput() -> TransportRead {
        guard !replies.isEmpty, gate() else {
            canRead = false
            return .blocked
        }
        switch replies.removeFirst() {
        case .bytes(let b):
            _ = inBuf!.append(b)
            return .read(b.count)
        case .eof:
            peerClosed = true
            canRead = false
            return .eof
        case .reset:
            return .failed
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) -> TransportWrite {
        if writeFails { return .failed }
        let n = min(bytes.count, writeLimit)
        if n == 0 {
            canWrite = false
            closedByTest = true
            return .blocked
        }
        written.append(contentsOf: bytes.prefix(n))
        writeLimit -= n
        return .wrote(n)
    }

    func setOwner(_ forwarder: OriginForwarder?) { owner = forwarder }

    /// Tunnel half-closes the forwarder made toward this origin.
    var writeShutdowns = 0
    func shutdownWrite() { writeShutdowns += 1 }

    /// Scripts more origin bytes (a tunnel's origin talks after the 101).
    func push(_ r: Reply) { replies.append(r) }
}

/// Hands out scripted connections in order, skipping tried servers when the forwarder needs another one.
final class FakeConnector: OriginConnector {
    var queue: [FakeTransport] = []
    var handedOut: [FakeTransport] = []
    var released: [(server: Int, reusable: Bool)] = []
    var outcomes: [OriginOutcome] = []
    var maxAttempts = 4
    var gate: () -> Bool = { true }
    /// With nothing left to hand out, report a local shortage (no descriptor) instead of "no server".
    var shortageWhenEmpty = false

    func add(_ t: FakeTransport, early: Bool = false) {
        if !early { t.gate = { [unowned self] in self.gate() } }
        queue.append(t)
    }

    func acquire(for f: OriginForwarder) -> (any OriginTransport)? {
        while !queue.isEmpty {
            let t = queue.removeFirst()
            if f.needsOtherServer && f.triedServers.contains(t.server) { continue }
            handedOut.append(t)
            return t
        }
        if shortageWhenEmpty { f.connectFailedLocally = true }
        return nil
    }

    func release(_ t: any OriginTransport, reusable: Bool) { released.append((t.server, reusable)) }
    func report(_ t: any OriginTransport, _ outcome: OriginOutcome) { outcomes.append(outcome) }
}

/// The client side: an HTTP/1 or HTTP/2 sink, the request driver, and what the client saw.
final class Harness: ForwarderSink {
    let client: OriginForwarderTests.Client
    let clientVersion: HTTPVersion
    let connector = FakeConnector()
    let pool = BufferPool(bufferSize: 32 * 1024)
    var forwarder: OriginForwarder!
    var now: UInt64 = 1_000_000_000
    var room = 1 << 20
    var failure: ForwardFailure?
    // HTTP/1 client
    var h1Encoder = HTTP1ResponseEncoder()
    let out = ByteBuffer(capacity: 1 << 21)
    var clientBytes: [UInt8] { Array(out.readable) }
    var scratch: [UInt8] = []
    // HTTP/2 client
    var h2Status = 0
    var h2ContentLength: Int?
    var h2EndStreamOnHeaders = false
    var body: [UInt8] = []
    var trailerCount = 0
    var ended = false
    var failedStatus: Int?
    var reset = false
    var isHEAD = false
    /// Tunnel: the origin's half-close reached the sink.
    var tunnelOriginDone = false

    init(_ client: OriginForwarderTests.Client, clientVersion: HTTPVersion = .http1_1) {
        self.client = client
        self.clientVersion = clientVersion
        forwarder = OriginForwarder(connector: connector, bufferPool: pool, timeouts: ForwarderTimeouts())
        forwarder.sink = self
        connector.gate = { [unowned self] in self.requestDone }
    }

    /// The request has ended (origins answer after that, unless scripted `early`).
    var requestDone = false

    /// What the event loop does: readiness news for every connection, until nothing moves.
    func events() {
        for t in connector.handedOut where !t.closedByTest {
            t.canRead = true
            t.canWrite = true
        }
        var n = 0
        while forwarder.drive(now: now) && n < 100 { n += 1 }
    }

    func begin(method: String, chunked: Bool, ended: Bool) {
        isHEAD = method == "HEAD"
        forwarder.begin(
            method: HTTPMethod.classify(Array(method.utf8)[...]),
            isHEAD: isHEAD,
            requestChunked: chunked,
            requestEnded: ended,
            now: now
        )
        var head = "\(method) / HTTP/1.1\r\nHost: o\r\n"
        head += chunked ? "Transfer-Encoding: chunked\r\n\r\n" : "\r\n"
        XCTAssertTrue(forwarder.appendHead(Array(head.utf8)))
        requestDone = ended
        forwarder.start(now: now)
        events()
    }

    func get() { begin(method: "GET", chunked: false, ended: true) }

    func post(body: String) {
        begin(method: "POST", chunked: false, ended: false)
        sendBody(body)
        end()
    }

    func sendBody(_ s: String) {
        guard forwarder.isActive else { return }  // answered early: the rest of the upload is not forwarded
        let b = Array(s.utf8)
        XCTAssertGreaterThanOrEqual(forwarder.requestBodyRoom(), b.count)
        b.withUnsafeBytes { forwarder.sendRequestBody($0) }
        events()
    }

    func end() {
        guard forwarder.isActive else { return }
        forwarder.endRequest()
        requestDone = true
        events()
    }

    var seen: OriginForwarderTests.Seen {
        if let s = failedStatus { return .proxyError(s) }
        if reset { return .truncated }
        guard ended else { return .pending }
        switch client {
        case .http1:
            // Parse what the client would read, as a client would.
            var p = ResponseParser()
            var status = 0
            var got: [UInt8] = []
            var complete = false
            let bytes = clientBytes
            bytes.withUnsafeBytes { buf in
                var off = 0
                loop: while true {
                    let ev = p.parse(UnsafeRawBufferPointer(rebasing: buf[off...]), requestIsHEAD: isHEAD)
                    switch ev {
                    case .head(let c):
                        status = p.head.status
                        off += c
                    case .informational(let c): off += c
                    case .body(let r, let c):
                        got += buf[(off + r.lowerBound)..<(off + r.upperBound)]
                        off += c
                    case .end(let c):
                        off += c
                        complete = true
                        break loop
                    case .needMore:
                        if h1Encoder.closeDelimited, case .end = p.finish() { complete = true }
                        break loop
                    case .error: break loop
                    }
                }
            }
            return complete ? .response(status: status, body: got) : .pending
        case .http2:
            return .response(status: h2Status, body: body)
        }
    }

    // MARK: ForwarderSink

    func forwarderResponseHead(_ head: ResponseHead, isHEAD: Bool) -> Bool {
        switch client {
        case .http1:
            return h1Encoder.head(
                head,
                requestVersion: clientVersion,
                isHEAD: isHEAD,
                close: false,
                into: out,
                scratch: &scratch
            )
        case .http2:
            if head.status == 101 {
                // As H2Connection does for an extended CONNECT: :status 200, DATA follows.
                h2Status = 200
                return true
            }
            guard H2ResponseTranslation.canTranslate(head) else { return false }
            h2Status = head.status
            h2ContentLength = H2ResponseTranslation.contentLength(head)
            h2EndStreamOnHeaders = !H2ResponseTranslation.hasBody(head, isHEAD: isHEAD)
            return true
        }
    }

    var forwarderBodyRoom: Int {
        let used = client == .http1 ? out.readableCount : body.count
        return max(0, min(room - used, client == .http1 ? h1Encoder.room(in: out) : Int.max))
    }

    func forwarderResponseBody(_ bytes: UnsafeRawBufferPointer) {
        XCTAssertLessThanOrEqual(bytes.count, forwarderBodyRoom + (client == .http1 ? 0 : 0))
        if client == .http1 { h1Encoder.body(bytes, into: out) }
        body += bytes
    }

    func forwarderResponseEnd(trailers: HTTPHeaders) {
        if client == .http1 { h1Encoder.end(into: out) }
        if client == .http2 { XCTAssertFalse(h2EndStreamOnHeaders && !body.isEmpty) }
        trailerCount = trailers.count
        ended = true
    }

    func forwarderFailed(status: Int?, reason: ForwardFailure) {
        failure = reason
        if let status { failedStatus = status } else { reset = true }
    }

    func forwarderOriginReady() { forwarder.drive(now: now) }

    func forwarderTunnelOriginDone() { tunnelOriginDone = true }

    /// Starts an upgrade request (bodiless GET with the proxy's Connection/Upgrade fields).
    func upgrade() {
        forwarder.begin(
            method: .get,
            isHEAD: false,
            requestChunked: false,
            requestEnded: true,
            upgrade: true,
            now: now
        )
        let head = "GET /chat HTTP/1.1\r\nHost: o\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        XCTAssertTrue(forwarder.appendHead(Array(head.utf8)))
        requestDone = true
        forwarder.start(now: now)
        events()
    }
}
