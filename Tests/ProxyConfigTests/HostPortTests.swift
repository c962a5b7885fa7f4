import XCTest

@testable import ProxyConfig

final class HostPortTests: XCTestCase {
    func testParsesAddressesAndNames() throws {
        XCTAssertEqual(
            try HostPort.parse("127.0.0.1:8443", allowPortZero: false),
            HostPort(host: .ipv4("127.0.0.1"), port: 8443)
        )
        XCTAssertEqual(try HostPort.parse("[::1]:8443", allowPortZero: false).description, "[::1]:8443")
        // IPv6 literals are canonicalised so equal addresses compare equal.
        XCTAssertEqual(try HostPort.parse("[0:0:0:0:0:0:0:1]:1", allowPortZero: false).host, .ipv6("::1"))
        XCTAssertEqual(try HostPort.parse("Example.COM:80", allowPortZero: false).host, .name("example.com"))
        XCTAssertThrowsError(try HostPort.parse("127.0.0.1:0", allowPortZero: false))
        XCTAssertEqual(try HostPort.parse("127.0.0.1:0", allowPortZero: true).port, 0)
        for bad in [
            "127.0.0.1", ":80", "[::1]", "[::1:80", "1.2.3:80", "01.2.3.4.5:1", "a..b:1", "-a:1", "h:65536", "h:+1",
        ] {
            XCTAssertThrowsError(try HostPort.parse(bad, allowPortZero: true), bad)
        }
    }

    func testLoopbackDetection() throws {
        let loopback = ["127.0.0.1:1", "127.9.9.9:1", "[::1]:1", "[::ffff:127.0.0.1]:1", "localhost:1", "LocalHost:1"]
        for text in loopback { XCTAssertTrue(try HostPort.parse(text, allowPortZero: true).host.isLoopback, text) }
        let remote = ["0.0.0.0:1", "10.0.0.1:1", "[::]:1", "[2001:db8::1]:1", "example.com:1", "128.0.0.1:1"]
        for text in remote { XCTAssertFalse(try HostPort.parse(text, allowPortZero: true).host.isLoopback, text) }
    }

    func testUpstreamURLs() throws {
        XCTAssertEqual(try Upstream.parse("http://origin").description, "http://origin:80")
        XCTAssertEqual(try Upstream.parse("HTTP://origin:8080/").port, 8080)
        XCTAssertEqual(try Upstream.parse("http://[::1]:8080").hostHeader, "[::1]:8080")
        XCTAssertEqual(try Upstream.parse("http://10.1.2.3").hostHeader, "10.1.2.3")
        XCTAssertEqual(try Upstream.parse("https://origin").description, "https://origin:443")
        XCTAssertEqual(try Upstream.parse("HTTPS://origin:443/").hostHeader, "origin")
        XCTAssertEqual(try Upstream.parse("https://origin:80").hostHeader, "origin:80")
        XCTAssertTrue(try Upstream.parse("https://origin").tls)
        XCTAssertFalse(try Upstream.parse("http://origin").tls)
        for bad in [
            "ftp://a", "https://", "https://a/path", "http://", "http://a/path", "http://a?q", "http://u@a",
            "http://a:", "http://[::1", "a:80",
        ] {
            XCTAssertThrowsError(try Upstream.parse(bad), bad)
        }
    }
}
