import XCTest

@testable import ProxyConfig

final class UpstreamPoolConfigTests: XCTestCase {
    let twoSites = """
        [upstreams.www]
        servers = ["http://127.0.0.1:8081", { url = "http://www2.internal:8082", weight = 3 }]
        balance = "least-outstanding"
        resolve_interval = "2s"
        max_fails = 5
        fail_timeout = "30s"

        [upstreams.www.health_check]
        path = "/healthz"
        interval = "1s"
        timeout = "500ms"
        rise = 3
        fall = 2
        expect_status = [200, "3xx"]

        [upstreams.api]
        servers = ["http://[::1]:9000"]
        balance = "hash"
        hash_key = "header:X-User"

        [[routes]]
        sni = "api.example.com"
        upstream = "api"

        [[routes]]
        host = ["www.example.com", "*.example.com"]
        path_prefix = "/api"
        upstream = "api"

        [[routes]]
        upstream = "www"
        """

    func testWebSocketRouteFlagAndTunnelIdleTimeout() throws {
        let c = try XCTUnwrap(
            parsed(
                """
                [timeouts]
                tunnel_idle = "5m"

                [upstreams.app]
                servers = ["http://127.0.0.1:8081"]

                [[routes]]
                path_prefix = "/static"
                upstream = "app"
                websocket = false

                [[routes]]
                upstream = "app"
                """
            )
        )
        XCTAssertEqual(c.routes.map(\.websocket), [false, true], "websocket defaults to true")
        XCTAssertEqual(c.timeouts.tunnelIdle, .seconds(300))
        XCTAssertEqual(ProxyConfiguration().timeouts.tunnelIdle, .seconds(60))
    }

    func testTwoSitesParse() throws {
        let c = try XCTUnwrap(parsed(twoSites))
        XCTAssertEqual(c.upstreams, [])
        XCTAssertEqual(c.upstreamPools.map(\.name), ["www", "api"])
        let www = c.upstreamPools[0]
        XCTAssertEqual(
            www.servers,
            [
                .init(url: Upstream(host: .ipv4("127.0.0.1"), port: 8081)),
                .init(url: Upstream(host: .name("www2.internal"), port: 8082), weight: 3),
            ]
        )
        XCTAssertEqual(www.balance, .leastOutstanding)
        XCTAssertEqual(www.resolveInterval, .seconds(2))
        XCTAssertEqual(www.maxFails, 5)
        XCTAssertEqual(www.failTimeout, .seconds(30))
        let hc = try XCTUnwrap(www.healthCheck)
        XCTAssertEqual(hc.path, "/healthz")
        XCTAssertEqual(hc.interval, .seconds(1))
        XCTAssertEqual(hc.timeout, .milliseconds(500))
        XCTAssertEqual(hc.rise, 3)
        XCTAssertEqual(hc.fall, 2)
        XCTAssertEqual(hc.expectStatus, [200...200, 300...399])
        let api = c.upstreamPools[1]
        XCTAssertEqual(api.balance, .hash)
        XCTAssertEqual(api.hashKey, .header("x-user"))
        XCTAssertNil(api.healthCheck)
        XCTAssertEqual(api.maxFails, 3)
        XCTAssertEqual(api.resolveInterval, .seconds(5))
        XCTAssertEqual(
            c.routes,
            [
                Route(sni: ["api.example.com"], upstream: "api"),
                Route(host: ["www.example.com", "*.example.com"], pathPrefix: "/api", upstream: "api"),
                Route(upstream: "www"),
            ]
        )
    }

    func testLegacyArrayIsTheDefaultPool() throws {
        let c = try XCTUnwrap(parsed("upstreams = [\"http://a:1\", \"http://b:2\"]"))
        XCTAssertEqual(c.upstreamPools.map(\.name), ["default"])
        XCTAssertEqual(c.upstreamPools[0].servers.map(\.url.description), ["http://a:1", "http://b:2"])
        XCTAssertEqual(c.upstreamPools[0].balance, .roundRobin)
        XCTAssertEqual(ProxyConfiguration().upstreamPools, [])
    }

    func testLegacyArrayWithRoutesToDefault() throws {
        let c = try XCTUnwrap(
            parsed("upstreams = [\"http://a:1\"]\n[[routes]]\nhost = \"a.example\"\nupstream = \"default\"")
        )
        XCTAssertEqual(c.routes, [Route(host: ["a.example"], upstream: "default")])
    }

    func testUpstreamFlagDefinesTheDefaultPool() throws {
        let file = try XCTUnwrap(
            parsed(
                "[upstreams.default]\nservers = [\"http://a:1\"]\nbalance = \"hash\"\n[upstreams.api]\nservers = [\"http://b:2\"]"
            )
        )
        let c = try file.applying(ConfigOverrides(upstreams: ["http://flag:9"]))
        XCTAssertEqual(c.upstreamPools.map(\.name), ["default", "api"])
        XCTAssertEqual(c.upstreamPools[0].servers.map(\.url.description), ["http://flag:9"])
        XCTAssertEqual(c.upstreamPools[0].balance, .hash, "the table's settings stay")
        let noDefault = try XCTUnwrap(parsed("[upstreams.api]\nservers = [\"http://b:2\"]"))
        let d = try noDefault.applying(ConfigOverrides(upstreams: ["http://flag:9"]))
        XCTAssertEqual(d.upstreamPools.map(\.name), ["default", "api"])
    }

    func testPoolsKeepFileOrder() throws {
        let c = try XCTUnwrap(
            parsed(
                "[upstreams.zeta]\nservers = [\"http://a:1\"]\n[upstreams.alpha]\nservers = [\"http://b:1\"]\n[upstreams.mid]\nservers = [\"http://c:1\"]"
            )
        )
        XCTAssertEqual(c.upstreamPools.map(\.name), ["zeta", "alpha", "mid"])
    }

    func testProxyProtocolPerPool() throws {
        let c = try XCTUnwrap(
            parsed(
                "[upstreams.a]\nservers = [\"http://a:1\"]\nproxy_protocol = \"v2\"\n[upstreams.b]\nservers = [\"http://b:1\"]"
            )
        )
        XCTAssertEqual(c.upstreamPools.map(\.proxyProtocol), [.v2, nil])
        assertSingleError(
            "[upstreams.a]\nservers = [\"http://x\"]\nproxy_protocol = \"v3\"",
            at: "3:1",
            "\"v3\" is not one of \"v1\", \"v2\""
        )
        assertSingleError(
            "[upstreams.a]\nservers = [\"http://x\"]\nproxy_protocol = true",
            at: "3:1",
            "expected a string"
        )
        let t = try XCTUnwrap(
            parsed(
                "[upstreams.a]\nservers = [\"http://a:1\"]\nproxy_protocol = \"v2\"\nproxy_protocol_tlvs = [\"ssl\", \"ja4\"]"
            )
        )
        XCTAssertEqual(t.upstreamPools[0].proxyProtocolTLVs, [.ssl, .ja4])
        assertSingleError(
            "[upstreams.a]\nservers = [\"http://x\"]\nproxy_protocol = \"v1\"\nproxy_protocol_tlvs = [\"ssl\"]",
            at: "4:1",
            "TLVs exist only in PROXY protocol v2"
        )
        assertSingleError(
            "[upstreams.a]\nservers = [\"http://x\"]\nproxy_protocol = \"v2\"\nproxy_protocol_tlvs = [\"sni\"]",
            at: "4:24",
            "expected one of \"alpn\", \"authority\", \"ssl\", \"ja4\""
        )
    }

    func testErrorsArePositioned() {
        assertSingleError(
            "[upstreams.a]\nservers = [\"ftp://x\"]",
            at: "2:12",
            "only http:// and https:// upstreams are supported"
        )
        assertSingleError("[upstreams.a]\nmax_fails = 1", at: "1:12", "missing \"servers\"")
        assertSingleError(
            "[upstreams.a]\nservers = [\"http://x\"]\nbalance = \"random\"",
            at: "3:1",
            "\"random\" is not one of \"round-robin\", \"least-outstanding\", \"hash\""
        )
        assertSingleError("[upstreams.a]\nservers = [\"http://x\"]\nweight = 2", at: "3:1", "unknown key \"weight\"")
        assertSingleError(
            "[upstreams.a]\nservers = [{ url = \"http://x\", weight = 0 }]",
            at: "2:32",
            "weight must be between 1 and 1000"
        )
        assertSingleError("[upstreams.a]\nservers = [{ weight = 2 }]", at: "2:12", "missing \"url\"")
        assertSingleError("[upstreams.a]\nservers = []", at: "2:1", "must list at least one server")
        assertSingleError(
            "[upstreams.a]\nservers = [\"http://x\", \"http://x:80\"]",
            at: "2:24",
            "servers[1] repeats servers[0]"
        )
        assertSingleError(
            "[upstreams.a]\nservers = [\"http://x\"]\nhash_key = \"cookie:x\"",
            at: "3:1",
            "neither \"client\""
        )
        assertSingleError(
            "[upstreams.a]\nservers = [\"http://x\"]\nhash_key = \"client\"\nbalance = \"hash\"\n[upstreams.b]\nservers = [\"http://y\"]\nhash_key = \"header:X\"",
            at: "7:1",
            "hash_key is only used with balance = \"hash\""
        )
        assertSingleError(
            "[upstreams.a]\nservers = [\"http://x\"]\nresolve_interval = \"10ms\"",
            at: "3:1",
            "at least 100ms"
        )
        assertSingleError("[upstreams.\"a b\"]\nservers = [\"http://x\"]", at: "1:12", "a pool name is letters")
        assertSingleError(
            "[upstreams.a]\nservers = [\"http://x\"]\n[upstreams.a.health_check]\ntimeout = \"10s\"",
            at: "4:1",
            "at most interval"
        )
        assertSingleError(
            "[upstreams.a]\nservers = [\"http://x\"]\n[upstreams.a.health_check]\nrise = 0",
            at: "4:1",
            "rise must be between 1 and 100"
        )
        assertSingleError(
            "[upstreams.a]\nservers = [\"http://x\"]\n[upstreams.a.health_check]\nexpect_status = 99",
            at: "4:1",
            "99 is not an HTTP status"
        )
        assertSingleError(
            "[upstreams.a]\nservers = [\"http://x\"]\n[upstreams.a.health_check]\npath = \"health\"",
            at: "4:1",
            "must start with \"/\""
        )
        assertSingleError(
            "[upstreams.a]\nservers = [\"http://x\"]\n[upstreams.a.health_check]\nintervall = \"1s\"",
            at: "4:1",
            "did you mean \"interval\""
        )
    }

    func testHTTPSServersAndTLSTable() throws {
        let c = try XCTUnwrap(
            parsed(
                """
                [upstreams.default]
                servers = ["https://origin.example", "https://10.0.0.1:8443", "http://plain:8080"]
                [upstreams.default.tls]
                ca_file = "/ca.pem"
                sni = "Origin.Example."
                client_cert = "/c.pem"
                client_key = "/c.key"
                min_version = "TLSv1.3"
                """
            )
        )
        let pool = c.upstreamPools[0]
        XCTAssertEqual(
            pool.servers.map(\.url),
            [
                Upstream(host: .name("origin.example"), port: 443, tls: true),
                Upstream(host: .ipv4("10.0.0.1"), port: 8443, tls: true),
                Upstream(host: .name("plain"), port: 8080),
            ]
        )
        XCTAssertEqual(pool.servers[0].url.description, "https://origin.example:443")
        XCTAssertEqual(pool.servers[0].url.hostHeader, "origin.example")
        XCTAssertEqual(pool.servers[1].url.hostHeader, "10.0.0.1:8443")
        XCTAssertTrue(pool.usesTLS)
        var want = OriginTLS()
        want.caFile = "/ca.pem"
        want.sni = "origin.example"
        want.clientCert = "/c.pem"
        want.clientKey = "/c.key"
        want.minVersion = .tls13
        XCTAssertEqual(pool.tls, want)
        // Defaults: verification on against the system store, no SNI override, no client certificate.
        let d = try XCTUnwrap(parsed("[upstreams.default]\nservers = [\"https://o\"]"))
        XCTAssertEqual(d.upstreamPools[0].tls, OriginTLS())
        XCTAssertTrue(OriginTLS().verify)
        // The legacy array takes https:// too.
        let legacy = try XCTUnwrap(parsed("upstreams = [\"https://o:8443\"]"))
        XCTAssertEqual(legacy.upstreamPools[0].servers[0].url, Upstream(host: .name("o"), port: 8443, tls: true))
    }

    func testTLSTableErrors() {
        assertSingleError(
            "[upstreams.a]\nservers = [\"http://x\"]\n[upstreams.a.tls]\nverify = true",
            at: "3:14",
            "the pool has no https:// server"
        )
        assertSingleError(
            "[upstreams.a]\nservers = [\"https://x\"]\n[upstreams.a.tls]\nclient_cert = \"/c.pem\"",
            at: "4:1",
            "client_cert and client_key go together"
        )
        assertSingleError(
            "[upstreams.a]\nservers = [\"https://x\"]\n[upstreams.a.tls]\nclient_key = \"/c.key\"",
            at: "4:1",
            "client_cert and client_key go together"
        )
        assertSingleError(
            "[upstreams.a]\nservers = [\"https://x\"]\n[upstreams.a.tls]\nverify = false\nca_file = \"/ca.pem\"",
            at: "5:1",
            "has no effect with verify = false"
        )
        assertSingleError(
            "[upstreams.a]\nservers = [\"https://x\"]\n[upstreams.a.tls]\nsni = \"10.0.0.1\"",
            at: "4:1",
            "SNI carries DNS names only"
        )
        assertSingleError(
            "[upstreams.a]\nservers = [\"https://x\"]\n[upstreams.a.tls]\nverify = \"no\"",
            at: "4:1",
            "expected true or false"
        )
        assertSingleError(
            "[upstreams.a]\nservers = [\"https://x\"]\n[upstreams.a.tls]\nmin_version = \"TLSv1.1\"",
            at: "4:1",
            "\"TLSv1.1\" is not one of \"TLSv1.2\", \"TLSv1.3\""
        )
        assertSingleError(
            "[upstreams.a]\nservers = [\"https://x\"]\n[upstreams.a.tls]\ncafile = \"/ca.pem\"",
            at: "4:1",
            "did you mean \"ca_file\""
        )
        assertSingleError("[upstreams.a]\nservers = [\"https://x:0\"]", at: "2:12", "port")
    }

    func testRouteErrors() {
        let pools = "[upstreams.a]\nservers = [\"http://x\"]\n"
        assertSingleError(pools + "[[routes]]\nupstream = \"b\"", at: "4:1", "no pool named \"b\" (pools: \"a\")")
        assertSingleError("[[routes]]\nupstream = \"b\"", at: "2:1", "no pool named \"b\" (no pools are configured)")
        assertSingleError(pools + "[[routes]]\nhost = \"x.example\"", at: "3:3", "missing \"upstream\"")
        assertSingleError(
            pools + "[[routes]]\nhost = \"a.*.example\"\nupstream = \"a\"",
            at: "4:1",
            "wildcard is only allowed"
        )
        assertSingleError(pools + "[[routes]]\nhost = \"a.example:443\"\nupstream = \"a\"", at: "4:1", "without a port")
        assertSingleError(pools + "[[routes]]\nsni = []\nupstream = \"a\"", at: "4:1", "must not be empty")
        assertSingleError(
            pools + "[[routes]]\npath_prefix = \"api\"\nupstream = \"a\"",
            at: "4:1",
            "must start with \"/\""
        )
        assertSingleError(pools + "[[routes]]\nport = 1\nupstream = \"a\"", at: "4:1", "unknown key \"port\"")
        assertSingleError(
            pools + "[[routes]]\nupstream = \"a\"\n[[routes]]\nhost = \"x.example\"\nupstream = \"a\"",
            at: "5:3",
            "routes[1] is unreachable: routes[0] matches every request it would match"
        )
        assertSingleError(
            pools
                + "[[routes]]\nhost = \"*.example.com\"\n[[routes]]\nhost = [\"a.example.com\"]\npath_prefix = \"/x\"\nupstream = \"a\"",
            at: "3:3",
            "missing \"upstream\""
        )
    }

    func testShadowing() {
        let cases: [(earlier: Route, later: Route, shadowed: Bool)] = [
            (Route(upstream: "a"), Route(host: ["x"], upstream: "b"), true),
            (Route(host: ["x"], upstream: "a"), Route(upstream: "b"), false),
            (Route(host: ["*.e.com"], upstream: "a"), Route(host: ["a.e.com", "b.c.e.com"], upstream: "b"), true),
            (Route(host: ["*.e.com"], upstream: "a"), Route(host: ["a.e.com", "e.com"], upstream: "b"), false),
            (Route(host: ["*.e.com"], upstream: "a"), Route(host: ["*.x.e.com"], upstream: "b"), true),
            (Route(host: ["x"], upstream: "a"), Route(host: ["x"], pathPrefix: "/api", upstream: "b"), true),
            (Route(host: ["x"], pathPrefix: "/api", upstream: "a"), Route(host: ["x"], upstream: "b"), false),
            (Route(pathPrefix: "/api", upstream: "a"), Route(pathPrefix: "/api/v2", upstream: "b"), true),
            (Route(pathPrefix: "/api", upstream: "a"), Route(pathPrefix: "/apix", upstream: "b"), false),
            (Route(pathPrefix: "/api/", upstream: "a"), Route(pathPrefix: "/api", upstream: "b"), false),
            (Route(sni: ["s"], upstream: "a"), Route(host: ["x"], upstream: "b"), false),
            (Route(sni: ["s"], upstream: "a"), Route(sni: ["s"], host: ["x"], upstream: "b"), true),
        ]
        for (i, c) in cases.enumerated() {
            XCTAssertEqual(c.later.isShadowed(by: c.earlier), c.shadowed, "case \(i)")
        }
    }

    func testPrefixSegments() {
        XCTAssertTrue(Route.prefix("/api", matches: "/api"))
        XCTAssertTrue(Route.prefix("/api", matches: "/api/x"))
        XCTAssertFalse(Route.prefix("/api", matches: "/apix"))
        XCTAssertTrue(Route.prefix("/api/", matches: "/api/x"))
        XCTAssertFalse(Route.prefix("/api/", matches: "/api"))
        XCTAssertTrue(Route.prefix("/", matches: "/anything"))
    }

    /// The commented "Pools and routes" block of the reference file, uncommented, parses and lists every key.
    func testExampleFilePoolsBlockParsesAndDocumentsEveryKey() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("edgeproxy.example.toml").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let marker = try XCTUnwrap(text.range(of: "\n# [upstreams.www]"))
        let block = text[marker.lowerBound...].split(separator: "\n", omittingEmptySubsequences: false)
            .filter { $0.hasPrefix("# ") || $0 == "#" }
            .map { $0 == "#" ? "" : String($0.dropFirst(2)) }
            .filter { !$0.hasPrefix("#") }
            .joined(separator: "\n")
        let c = try ProxyConfiguration.parse(text: block, fileName: "example-block")
        XCTAssertEqual(c.upstreamPools.map(\.name), ["www", "api", "secure"])
        XCTAssertEqual(c.routes.count, 3)
        let secure = c.upstreamPools[2]
        XCTAssertEqual(secure.servers.map(\.url.description), ["https://app.internal:8443"])
        XCTAssertEqual(secure.tls.verify, true)
        XCTAssertEqual(secure.tls.caFile, "/etc/edgeproxy/origin-ca.pem")
        XCTAssertEqual(secure.tls.sni, "app.internal")
        XCTAssertEqual(secure.tls.clientCert, "/etc/edgeproxy/origin-client.pem")
        XCTAssertEqual(secure.tls.clientKey, "/etc/edgeproxy/origin-client.key")
        XCTAssertEqual(secure.tls.minVersion, .tls12)
        let www = c.upstreamPools[0]
        var defaults = UpstreamPool(name: "www", servers: www.servers)
        defaults.healthCheck = UpstreamPool.HealthCheck()
        defaults.healthCheck?.expectStatus = [200...299, 300...399]  // "2xx", "3xx": the default 200-399 spelled out
        XCTAssertEqual(www, defaults, "the www pool spells out the defaults")
        let locator = TOMLKeyLocator(text: block)
        let keys: [TOMLPath] = [
            ["upstreams", "www", "servers"], ["upstreams", "www", "balance"], ["upstreams", "www", "hash_key"],
            ["upstreams", "www", "resolve_interval"], ["upstreams", "www", "max_fails"],
            ["upstreams", "www", "fail_timeout"], ["upstreams", "www", "health_check", "path"],
            ["upstreams", "www", "health_check", "interval"], ["upstreams", "www", "health_check", "timeout"],
            ["upstreams", "www", "health_check", "rise"], ["upstreams", "www", "health_check", "fall"],
            ["upstreams", "www", "health_check", "expect_status"], ["upstreams", "api", "proxy_protocol"], ["routes"],
            ["upstreams", "secure", "tls", "verify"], ["upstreams", "secure", "tls", "ca_file"],
            ["upstreams", "secure", "tls", "sni"], ["upstreams", "secure", "tls", "client_cert"],
            ["upstreams", "secure", "tls", "client_key"], ["upstreams", "secure", "tls", "min_version"],
        ]
        for key in keys { XCTAssertNotNil(locator.position(of: key), "\(key) is not in the example block") }
        for key in ["sni", "host", "path_prefix", "upstream", "websocket"] {
            XCTAssertTrue(block.contains("\n\(key) = "), key)
        }
        XCTAssertEqual(c.routes.map(\.websocket), [true, true, true])
    }
}
