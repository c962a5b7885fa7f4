import ProxyConfig
import XCTest

@testable import ProxyUpstreams

final class RouterTests: XCTestCase {
    // Pools: 0 www, 1 api, 2 static, 3 default.
    let pools = ["www", "api", "static", "default"]
    let routes = [
        Route(sni: ["api.example.com"], upstream: "api"),
        Route(host: ["www.example.com", "*.www.example.com"], pathPrefix: "/static", upstream: "static"),
        Route(host: ["www.example.com", "*.www.example.com"], upstream: "www"),
        Route(host: ["*.shop.test"], upstream: "www"),
    ]

    func testDecisionTable() {
        let router = Router(routes: routes, poolNames: pools)
        let cases: [(sni: String?, host: String?, path: String, expect: RouteDecision, why: String)] = [
            ("api.example.com", "api.example.com", "/v1", .pool(1), "SNI route"),
            ("api.example.com", nil, "/v1", .pool(1), "HTTP/1.0 without Host"),
            ("api.example.com", "API.Example.COM.:443", "/", .pool(1), "case, trailing dot and port are ignored"),
            ("www.example.com", "www.example.com", "/", .pool(0), "host route"),
            ("www.example.com", "www.example.com", "/static", .pool(2), "path route, exact"),
            ("www.example.com", "www.example.com", "/static/app.js", .pool(2), "path route, below"),
            ("www.example.com", "www.example.com", "/static?v=1", .pool(2), "query ignored"),
            ("www.example.com", "www.example.com", "/staticfile", .pool(0), "whole segments only"),
            ("www.example.com", "www.example.com", "/x/../static/a", .pool(2), "dot segments removed"),
            ("www.example.com", "www.example.com", "/static/../admin", .pool(0), "dot segments cannot smuggle"),
            ("www.example.com", "www.example.com", "/%73tatic/a", .pool(2), "unreserved escapes decoded"),
            ("www.example.com", "www.example.com", "/static%2Fa", .pool(0), "%2F stays encoded"),
            ("a.www.example.com", "b.www.example.com", "/", .pool(0), "one wildcard site may share a connection"),
            ("www.example.com", "cdn.www.example.com", "/", .pool(0), "alias in the same route"),
            ("www.example.com", "api.example.com", "/", .reject(421), "SNI www, Host api: misdirected"),
            ("api.example.com", "www.example.com", "/", .reject(421), "SNI api, Host www: misdirected"),
            ("api.example.com", "x.shop.test", "/", .reject(421), "two sites, wildcard host"),
            (nil, "www.example.com", "/", .pool(0), "no SNI (IP literal): Host decides"),
            ("unknown.test", "www.example.com", "/", .pool(0), "SNI names no site: Host decides"),
            ("www.example.com", "unknown.test", "/", .pool(3), "Host names no site: no route, default pool"),
            ("www.example.com", "127.0.0.1:8443", "/", .pool(3), "IP literal Host is not a site"),
            (nil, nil, "/", .pool(3), "nothing: default pool"),
            ("x.shop.test", "X.SHOP.TEST", "/", .pool(0), "wildcard host"),
            ("shop.test", "shop.test", "/", .pool(3), "wildcard does not match the bare domain"),
            ("evilwww.example.com", "evilwww.example.com", "/", .pool(3), "suffix match needs the dot"),
            (nil, "[::1]:8443", "/", .pool(3), "bracketed IPv6 Host"),
            (nil, "www.example.com", "", .pool(0), "empty path is /"),
        ]
        for c in cases {
            XCTAssertEqual(router.route(sni: c.sni, host: c.host, path: c.path), c.expect, c.why)
        }
    }

    func testNoDefaultPoolGives404() {
        let router = Router(routes: [Route(host: ["a.test"], upstream: "a")], poolNames: ["a"])
        XCTAssertEqual(router.route(sni: nil, host: "a.test", path: "/"), .pool(0))
        XCTAssertEqual(router.route(sni: nil, host: "b.test", path: "/"), .reject(404))
        XCTAssertEqual(router.route(sni: nil, host: nil, path: "/"), .reject(404))
    }

    func testCatchAllRouteAndNoRoutes() {
        let router = Router(
            routes: [Route(pathPrefix: "/api/", upstream: "api"), Route(upstream: "web")],
            poolNames: ["web", "api"]
        )
        XCTAssertEqual(router.route(sni: nil, host: "any", path: "/api/x"), .pool(1))
        XCTAssertEqual(router.route(sni: nil, host: "any", path: "/api"), .pool(0), "\"/api/\" needs the slash")
        XCTAssertEqual(router.route(sni: "a", host: "b", path: "/"), .pool(0), "no sites named: never 421")
        let legacy = Router(routes: [], poolNames: ["default"])
        XCTAssertEqual(legacy.route(sni: "x", host: "y", path: "/"), .pool(0))
        XCTAssertEqual(Router(routes: [], poolNames: []).route(sni: nil, host: nil, path: "/"), .reject(404))
    }

    func testMatchedRouteSaysWhetherUpgradesPass() {
        let router = Router(
            routes: [Route(pathPrefix: "/static", upstream: "web", websocket: false), Route(upstream: "web")],
            poolNames: ["web"]
        )
        XCTAssertEqual(router.resolve(sni: nil, host: "a", path: "/static/x"), RouteMatch(.pool(0), websocket: false))
        XCTAssertEqual(router.resolve(sni: nil, host: "a", path: "/chat"), RouteMatch(.pool(0), websocket: true))
        let noRoutes = Router(routes: [], poolNames: ["default"])
        XCTAssertEqual(noRoutes.resolve(sni: nil, host: nil, path: "/"), RouteMatch(.pool(0), websocket: true))
    }

    func testSNIRouteDoesNotMatchWithoutSNI() {
        let router = Router(routes: [Route(sni: ["a.test"], upstream: "a")], poolNames: ["a"])
        XCTAssertEqual(router.route(sni: nil, host: "a.test", path: "/"), .reject(404))
        XCTAssertEqual(router.route(sni: "a.test", host: "a.test", path: "/"), .pool(0))
    }

    func testNormalize() {
        func n(_ s: String) -> String {
            String(decoding: Array(s.utf8).withUnsafeBytes { Router.normalize($0) }, as: UTF8.self)
        }
        XCTAssertEqual(n("/a/./b"), "/a/b")
        XCTAssertEqual(n("/a/b/../c"), "/a/c")
        XCTAssertEqual(n("/../../a"), "/a")
        XCTAssertEqual(n("/a/.."), "/")
        XCTAssertEqual(n("/a/b/."), "/a/b/")
        XCTAssertEqual(n("/%2e%2E/x"), "/x")
        XCTAssertEqual(n("/%41%2f"), "/A%2f")
        XCTAssertEqual(n("/%zz"), "/%zz")
        XCTAssertEqual(n("/a%"), "/a%")
        XCTAssertEqual(n(""), "/")
        XCTAssertEqual(n("/a//b"), "/a//b")
    }
}
