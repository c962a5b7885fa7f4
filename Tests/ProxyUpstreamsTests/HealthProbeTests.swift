import Glibc
import ProxyEventLoop
import XCTest

@testable import ProxyUpstreams

/// Real sockets on loopback: a one-shot origin that answers (or not) the probe's request.
final class HealthProbeTests: XCTestCase {
    /// A listener on 127.0.0.1 with a kernel-chosen port; `answer` (if any) is written after the request head.
    private func origin(answer: String?, accept: Bool = true) throws -> (SocketAddress, OSThread?, Int32) {
        let fd = try Socket.listen(on: SocketAddress(literal: "127.0.0.1", port: 0)!, backlog: 8, reusePort: false)
        let address = Socket.localAddress(fd)!
        guard accept else { return (address, nil, fd) }
        let thread = OSThread {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 5000) > 0 else { return }
            let c = Glibc.accept(fd, nil, nil)
            guard c >= 0 else { return }
            defer { Glibc.close(c) }
            var request: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 1024)
            while !String(decoding: request, as: UTF8.self).contains("\r\n\r\n") {
                var q = pollfd(fd: c, events: Int16(POLLIN), revents: 0)
                guard poll(&q, 1, 5000) > 0 else { return }
                let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress!, $0.count, 0) }
                if n <= 0 { break }
                request += buf[..<n]
            }
            guard let answer else {
                usleep(1_500_000)  // hold the connection past the probe's timeout
                return
            }
            let head = String(decoding: request, as: UTF8.self)
            let reply =
                head.hasPrefix("GET /healthz HTTP/1.1\r\nHost: origin.test:8080\r\n")
                ? answer : "HTTP/1.1 400 Bad\r\n\r\n"
            _ = Array(reply.utf8).withUnsafeBytes { send(c, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        return (address, thread, fd)
    }

    private func check(_ address: SocketAddress, timeout: Int64 = 1000) -> HealthProbe.Result {
        HealthProbe.check(
            address: address,
            host: "origin.test:8080",
            path: "/healthz",
            timeoutMilliseconds: timeout,
            expect: [200...399]
        )
    }

    func testGoodStatus() throws {
        let (address, thread, fd) = try origin(answer: "HTTP/1.1 204 No Content\r\n\r\n")
        defer { Glibc.close(fd) }
        XCTAssertEqual(check(address), .ok(status: 204))
        thread?.join()
    }

    func testUnexpectedStatus() throws {
        let (address, thread, fd) = try origin(answer: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        defer { Glibc.close(fd) }
        XCTAssertEqual(check(address), .failed(.unexpectedStatus, status: 503))
        thread?.join()
    }

    func testInvalidResponse() throws {
        let (address, thread, fd) = try origin(answer: "SSH-2.0-OpenSSH\r\n")
        defer { Glibc.close(fd) }
        XCTAssertEqual(check(address), .failed(.invalidResponse, status: 0))
        thread?.join()
    }

    func testClosedWithoutResponse() throws {
        let (address, thread, fd) = try origin(answer: "")
        defer { Glibc.close(fd) }
        XCTAssertEqual(check(address), .failed(.closedBeforeResponse, status: 0))
        thread?.join()
    }

    func testResponseTimeout() throws {
        let (address, thread, fd) = try origin(answer: nil)
        defer { Glibc.close(fd) }
        XCTAssertEqual(check(address, timeout: 300), .failed(.responseTimeout, status: 0))
        thread?.join()
    }

    func testRefused() throws {
        let (address, _, fd) = try origin(answer: nil, accept: false)
        Glibc.close(fd)  // nothing listens on the port any more
        XCTAssertEqual(check(address), .failed(.connectRefused, status: 0))
    }

    func testStatusLineParsing() {
        func p(_ s: String) -> Int? { HealthProbe.parseStatus(Array(s.utf8)) }
        XCTAssertEqual(p("HTTP/1.1 200 OK\r\n"), 200)
        XCTAssertEqual(p("HTTP/1.0 302\r\n"), 302)
        XCTAssertEqual(p("HTTP/1.1 200"), 200)
        XCTAssertNil(p("HTTP/1.1 20 OK\r\n"))
        XCTAssertNil(p("HTTP/1.1 2000 OK\r\n"))
        XCTAssertNil(p("HTTP/2 200 OK\r\n"))
        XCTAssertNil(p("HTTP/1.1 099 OK\r\n"))
    }
}
