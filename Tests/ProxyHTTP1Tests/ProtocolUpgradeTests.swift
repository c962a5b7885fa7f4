import Foundation
import XCTest

@testable import ProxyHTTP1

/// The upgrade decisions (`ProtocolUpgrade`) and what the writers forward for them.
final class ProtocolUpgradeTests: XCTestCase {
    private func head(_ s: String) -> RequestHead {
        var p = RequestParser()
        let b = bytes(s)
        let ev = b.withUnsafeBytes { p.parse($0) }
        XCTAssertEqual(ev, .head(consumed: b.count), s)
        return p.head
    }

    private func text(_ b: ArraySlice<UInt8>?) -> String? { b.map { String(decoding: $0, as: UTF8.self) } }

    func testWhichRequestsAskForAnUpgrade() {
        let ws = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        let table: [(String, String?, String)] = [
            (
                "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\(ws)\r\n", "websocket",
                "the WebSocket handshake"
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, upgrade\r\nUpgrade: websocket\r\n\r\n",
                "websocket",
                "upgrade among other tokens, any case"
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: UPGRADE\r\nUpgrade: foo/2, bar\r\n\r\n",
                "foo/2, bar", "a second Connection field; a protocol list with a version"
            ),
            ("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", nil, "Upgrade not named by Connection"),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\nUpgrade: websocket\r\n\r\n", nil,
                "Connection names other fields only"
            ),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n", nil, "no Upgrade field"),
            (
                "GET / HTTP/1.0\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", nil,
                "HTTP/1.0 (RFC 9110 §7.8: ignored)"
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\n",
                nil, "a request body"
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n",
                nil, "a chunked body"
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
                nil, "h2c (smuggling past the proxy)"
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket, H2C\r\n\r\n", nil,
                "h2c in a list"
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nUpgrade: foo\r\n\r\n", nil,
                "two Upgrade fields"
            ),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: web socket\r\n\r\n", nil, "not a token"),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: /1\r\n\r\n", nil, "version without name"),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: ,\r\n\r\n", nil, "empty list"),
            (
                "OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: tls/1.2\r\n\r\n", "tls/1.2",
                "any method without a body"
            ),
        ]
        for (request, expected, why) in table {
            XCTAssertEqual(text(ProtocolUpgrade.requested(head(request))), expected, why)
        }
    }

    func testH2ProtocolValues() {
        for (v, ok) in [("websocket", true), ("connect-udp", true), ("h2c", false), ("", false), ("a b", false)] {
            XCTAssertEqual(ProtocolUpgrade.isForwardableH2Protocol(Array(v.utf8)[...]), ok, v)
        }
        XCTAssertTrue(ProtocolUpgrade.isWebSocket(Array("WebSocket".utf8)[...]))
        XCTAssertFalse(ProtocolUpgrade.isWebSocket(Array("websockets".utf8)[...]))
    }

    func testUpgradeRequestIsForwardedWithTheProxysOwnConnectionAndUpgrade() {
        let h = head(
            "GET /chat HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
                + "Sec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        let ctx = ForwardingContext(clientAddress: bytes("192.0.2.1"), appendForwarded: false, via: [])
        var out: [UInt8] = []
        HTTP1Writer.appendRequestHead(
            h,
            framing: h.outboundFraming,
            forwarding: ctx,
            upgrade: ProtocolUpgrade.requested(h),
            to: &out
        )
        XCTAssertEqual(
            String(decoding: out, as: UTF8.self),
            "GET /chat HTTP/1.1\r\nHost: a.test\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n"
                + "Connection: upgrade\r\nUpgrade: websocket\r\n"
                + "X-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: https\r\n\r\n"
        )
        // Without the decision (a route with websocket = false) both are stripped as hop-by-hop, as before.
        out.removeAll()
        HTTP1Writer.appendRequestHead(h, framing: h.outboundFraming, forwarding: ctx, to: &out)
        let plain = String(decoding: out, as: UTF8.self)
        XCTAssertFalse(plain.lowercased().contains("upgrade"), plain)
        XCTAssertFalse(plain.lowercased().contains("connection"), plain)
    }

    func testExtendedConnectIsTranslatedToAnUpgrade() {
        var headers = HTTPHeaders(reservingBytes: 128)
        for (n, v) in [("sec-websocket-version", "13"), ("sec-websocket-protocol", "chat")] {
            Array(n.utf8).withUnsafeBytes { nb in Array(v.utf8).withUnsafeBytes { headers.append(name: nb, value: $0) }
            }
        }
        let ctx = ForwardingContext(
            clientAddress: [],
            appendXForwardedFor: false,
            setXForwardedProto: false,
            appendForwarded: false,
            via: []
        )
        var out: [UInt8] = []
        HTTP1Writer.appendTranslatedRequestHead(
            method: Array("GET".utf8)[...],
            target: Array("/chat".utf8)[...],
            authority: Array("a.test".utf8)[...],
            headers: headers,
            framing: .bodiless,
            forwarding: ctx,
            upgrade: Array("websocket".utf8)[...],
            upgradeFields: bytes("Sec-WebSocket-Key: x\r\n"),
            to: &out
        )
        XCTAssertEqual(
            String(decoding: out, as: UTF8.self),
            "GET /chat HTTP/1.1\r\nsec-websocket-version: 13\r\nsec-websocket-protocol: chat\r\nHost: a.test\r\n"
                + "Connection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x\r\n\r\n"
        )
    }

    func testSwitchingProtocolsHeadKeepsUpgradeForTheClient() {
        var p = ResponseParser()
        let b = bytes(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        )
        _ = b.withUnsafeBytes { p.parse($0, requestIsHEAD: false) }
        var out: [UInt8] = []
        HTTP1Writer.appendResponseHead(
            p.head,
            framing: .bodiless,
            closeConnection: true,
            clientVersion: .http1_1,
            to: &out
        )
        XCTAssertEqual(
            String(decoding: out, as: UTF8.self),
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                + "Via: 1.1 edgeproxy\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
    }

    func testWebSocketKeyIsSixteenRandomBytesInBase64() {
        var rng = SystemRandomNumberGenerator()
        let a = String(decoding: ProtocolUpgrade.webSocketKeyField(using: &rng), as: UTF8.self)
        let b = String(decoding: ProtocolUpgrade.webSocketKeyField(using: &rng), as: UTF8.self)
        XCTAssertNotEqual(a, b)
        XCTAssertTrue(a.hasPrefix("Sec-WebSocket-Key: ") && a.hasSuffix("\r\n"), a)
        let key = String(decoding: Array(a.utf8).dropFirst(19).dropLast(2), as: UTF8.self)
        XCTAssertEqual(key.utf8.count, 24)
        XCTAssertEqual(Data(base64Encoded: key)?.count, 16, key)
    }
}
