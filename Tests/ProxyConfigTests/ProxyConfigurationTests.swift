import ProxyCore
import XCTest

@testable import ProxyConfig

final class ProxyConfigurationTests: XCTestCase {
    func testDefaults() throws {
        let c = ProxyConfiguration()
        XCTAssertEqual(c.listen.description, "127.0.0.1:8443")
        XCTAssertNil(c.workers)
        XCTAssertGreaterThanOrEqual(c.effectiveWorkers, 1)
        XCTAssertEqual(c.upstreams, [])
        XCTAssertEqual(c.certificates, [])
        XCTAssertNil(c.admin)
        XCTAssertFalse(c.adminAllowRemote)
        XCTAssertNil(c.adminTokenFile)
        XCTAssertNil(c.adminTokenEnv)
        XCTAssertFalse(c.adminTokenExemptReadOnly)
        XCTAssertEqual(c.tls.minVersion, .v1_2)
        XCTAssertEqual(c.tls.maxVersion, .v1_3)
        XCTAssertEqual(c.tls.groups, "X25519:P-256:P-384")
        XCTAssertEqual(c.tls.alpn, ["h2", "http/1.1"])
        XCTAssertTrue(c.tls.alpnStrict)
        XCTAssertTrue(c.tls.ciphers.hasPrefix("ECDHE-"))
        XCTAssertEqual(c.timeouts.handshake, .seconds(10))
        XCTAssertEqual(c.timeouts.headerRead, .seconds(15))
        XCTAssertEqual(c.timeouts.idle, .seconds(60))
        XCTAssertEqual(c.timeouts.upstreamConnect, .seconds(5))
        XCTAssertEqual(c.timeouts.upstreamRead, .seconds(60))
        XCTAssertEqual(c.timeouts.drain, .seconds(30))
        XCTAssertEqual(c.limits.maxRequestLine, 8192)
        XCTAssertEqual(c.limits.maxHeaderBytes, 32768)
        XCTAssertEqual(c.limits.maxHeaders, 100)
        XCTAssertEqual(c.limits.maxConnectionsPerWorker, 10000)
        XCTAssertEqual(c.accessLog, .stdout)
        XCTAssertEqual(c.logLevel, .info)
        XCTAssertTrue(c.tickets.enabled)
        XCTAssertEqual(c.tickets.source, .memory)
        XCTAssertEqual(c.tickets.rotation, .hours(1))
        XCTAssertEqual(c.tickets.lifetime, .hours(18))
        XCTAssertEqual(c.tickets.staleAction, .renewInline)
        XCTAssertEqual(c.tickets.tls13Count, 1)
        XCTAssertEqual(c.tickets.files, [])
        XCTAssertEqual(c.policies.dir, "policies")
        XCTAssertTrue(c.policies.enabled)
        XCTAssertFalse(c.policies.headers.enabled)
        XCTAssertEqual(c.policies.headers.ja3, "X-EdgeProxy-JA3")
        XCTAssertEqual(c.policies.headers.ja4, "X-EdgeProxy-JA4")
        XCTAssertEqual(c.policies.headers.policy, "X-EdgeProxy-Policy")
        XCTAssertEqual(c.policies.headers.tag, "X-EdgeProxy-Tag")
        XCTAssertNoThrow(try c.validate())
        // An empty document and a comments-only one are the defaults.
        XCTAssertEqual(parsed(""), c)
        XCTAssertEqual(parsed("# nothing\n\n"), c)
    }

    func testEveryKeyIsRead() throws {
        let text = """
            listen = "[::1]:9443"
            workers = 3
            upstreams = ["http://origin.example:8080", "http://10.0.0.1", "http://[2001:db8::1]:81/"]
            admin = "0.0.0.0:9000"
            admin_allow_remote = true
            admin_token_file = "/run/secrets/admin-token"
            admin_token_exempt_read_only = true

            [[certificates]]
            cert = "/etc/a.crt"
            key = "/etc/a.key"

            [[certificates]]
            cert = "b.crt"
            key = "b.key"
            ocsp = "file:/var/lib/edgeproxy/b.ocsp"

            [tls]
            min_version = "1.0"
            max_version = "1.2"
            ciphers = "HIGH:!aNULL"
            ciphersuites = "TLS_AES_256_GCM_SHA384"
            groups = "P-256"
            alpn = ["http/1.1", "http/1.0"]
            alpn_strict = false

            [timeouts]
            handshake = "2s"
            header_read = 7
            idle = "1m30s"
            upstream_connect = "500ms"
            upstream_read = "2m"
            drain = "0s"

            [limits]
            max_request_line = 4096
            max_header_bytes = 65536
            max_headers = 50
            max_connections_per_worker = 20

            [access_log]
            path = "/var/log/edgeproxy/access.log"

            [log]
            level = "debug"

            [tickets]
            enabled = false
            source = "files"
            rotation = "30m"
            lifetime = "12h"
            stale_action = "full-handshake"
            tls13_count = 2
            files = ["/etc/k1", "/etc/k2"]

            [policies]
            dir = "/etc/edgeproxy/policies"
            enabled = false
            headers = { enabled = true, ja3 = "X-JA3", ja4 = "X-JA4", policy = "X-P", tag = "X-T" }
            """
        let c = try XCTUnwrap(parsed(text))
        XCTAssertEqual(c.listen, HostPort(host: .ipv6("::1"), port: 9443))
        XCTAssertEqual(c.workers, 3)
        XCTAssertEqual(
            c.upstreams,
            [
                Upstream(host: .name("origin.example"), port: 8080), Upstream(host: .ipv4("10.0.0.1"), port: 80),
                Upstream(host: .ipv6("2001:db8::1"), port: 81),
            ]
        )
        XCTAssertEqual(c.admin, HostPort(host: .ipv4("0.0.0.0"), port: 9000))
        XCTAssertTrue(c.adminAllowRemote)
        XCTAssertEqual(c.adminTokenFile, "/run/secrets/admin-token")
        XCTAssertNil(c.adminTokenEnv)
        XCTAssertTrue(c.adminTokenExemptReadOnly)
        XCTAssertEqual(
            c.certificates,
            [
                .init(cert: "/etc/a.crt", key: "/etc/a.key", ocsp: .auto),
                .init(cert: "b.crt", key: "b.key", ocsp: .file("/var/lib/edgeproxy/b.ocsp")),
            ]
        )
        XCTAssertEqual(c.tls.minVersion, .v1_0)
        XCTAssertEqual(c.tls.maxVersion, .v1_2)
        XCTAssertEqual(c.tls.ciphers, "HIGH:!aNULL")
        XCTAssertEqual(c.tls.ciphersuites, "TLS_AES_256_GCM_SHA384")
        XCTAssertEqual(c.tls.groups, "P-256")
        XCTAssertEqual(c.tls.alpn, ["http/1.1", "http/1.0"])
        XCTAssertFalse(c.tls.alpnStrict)
        XCTAssertEqual(c.timeouts.handshake, .seconds(2))
        XCTAssertEqual(c.timeouts.headerRead, .seconds(7))
        XCTAssertEqual(c.timeouts.idle, .seconds(90))
        XCTAssertEqual(c.timeouts.upstreamConnect, .milliseconds(500))
        XCTAssertEqual(c.timeouts.upstreamRead, .minutes(2))
        XCTAssertEqual(c.timeouts.drain, .seconds(0))
        XCTAssertEqual(c.limits.maxRequestLine, 4096)
        XCTAssertEqual(c.limits.maxHeaderBytes, 65536)
        XCTAssertEqual(c.limits.maxHeaders, 50)
        XCTAssertEqual(c.limits.maxConnectionsPerWorker, 20)
        XCTAssertEqual(c.accessLog, .file("/var/log/edgeproxy/access.log"))
        XCTAssertEqual(c.logLevel, .debug)
        XCTAssertFalse(c.tickets.enabled)
        XCTAssertEqual(c.tickets.source, .files)
        XCTAssertEqual(c.tickets.rotation, .minutes(30))
        XCTAssertEqual(c.tickets.lifetime, .hours(12))
        XCTAssertEqual(c.tickets.staleAction, .fullHandshake)
        XCTAssertEqual(c.tickets.tls13Count, 2)
        XCTAssertEqual(c.tickets.files, ["/etc/k1", "/etc/k2"])
        XCTAssertEqual(c.policies.dir, "/etc/edgeproxy/policies")
        XCTAssertFalse(c.policies.enabled)
        XCTAssertEqual(
            c.policies.headers,
            {
                var h = ProxyConfiguration.Policies.Headers()
                h.enabled = true
                h.ja3 = "X-JA3"
                h.ja4 = "X-JA4"
                h.policy = "X-P"
                h.tag = "X-T"
                return h
            }()
        )
    }

    func testSmallerSpellings() throws {
        XCTAssertNil(parsed("workers = \"auto\"")?.workers)
        XCTAssertEqual(parsed("[access_log]\npath = \"off\"")?.accessLog, .off)
        XCTAssertEqual(
            parsed("tickets.stale_action = \"resume-without-renewal\"")?.tickets.staleAction,
            .resumeWithoutRenewal
        )
        XCTAssertEqual(parsed("tls = { alpn = [] }")?.tls.alpn, [])
        XCTAssertEqual(parsed("admin = \"[::1]:9000\"")?.admin?.host.isLoopback, true)
        XCTAssertEqual(parsed("admin = \"localhost:9000\"")?.admin?.host, .name("localhost"))
        XCTAssertEqual(parsed("listen = \"0.0.0.0:0\"")?.listen.port, 0)
    }

    // MARK: - Unknown keys, with exact positions.

    func testUnknownKeyAtTopLevel() {
        assertSingleError(
            "listen = \"127.0.0.1:1\"\nlisten_addr = 1\n",
            at: "2:1",
            "unknown key \"listen_addr\" at the top level"
        )
        assertSingleError("\n\n[frobnicate]\nx = 1\n", at: "3:2", "unknown key \"frobnicate\"")
    }

    func testUnknownKeyInNestedTablesSuggestsTheClosestKey() {
        assertSingleError(
            "[tickets]\nenabled = true\n  rotaton = \"1h\"\n",
            at: "3:3",
            "unknown key \"rotaton\" in [tickets] (did you mean \"rotation\"?)"
        )
        assertSingleError("[policies.headers]\nja5 = \"X\"\n", at: "2:1", "in [policies.headers]")
        assertSingleError("policies.headers.colour = 1\n", at: "1:18", "unknown key \"colour\" in [policies.headers]")
        assertSingleError("[tls]\nx = { a = 1 }\n", at: "2:1", "unknown key \"x\" in [tls]")
    }

    func testUnknownKeyInsideArraysOfTables() {
        let text = """
            [[certificates]]
            cert = "a.crt"
            key = "a.key"

            [[certificates]]
            cert = "b.crt"
            key = "b.key"
            chain = "oops"
            """
        assertSingleError(text, at: "8:1", "unknown key \"chain\" in [certificates[1]]")
        assertSingleError(
            "certificates = [{ cert = \"a\", key = \"b\" }, { cert = \"c\", key = \"d\", pass = \"x\" }]",
            at: "1:69",
            "unknown key \"pass\" in [certificates[1]]"
        )
    }

    func testHTTP2SectionAndALPN() {
        let c = parsed(
            """
            tls.alpn = ["http/1.1", "h2"]
            [http2]
            max_concurrent_streams = 64
            max_header_list_size = 8192
            initial_window_size = 1048576
            rapid_reset_burst = 10
            rapid_reset_rate = 5
            control_frame_burst = 20
            control_frame_rate = 10
            max_continuations = 4
            zero_window_timeout = "2s"
            """
        )
        XCTAssertEqual(c?.tls.alpn, ["http/1.1", "h2"])
        XCTAssertEqual(c?.http2.maxConcurrentStreams, 64)
        XCTAssertEqual(c?.http2.maxHeaderListSize, 8192)
        XCTAssertEqual(c?.http2.initialWindowSize, 1_048_576)
        XCTAssertEqual(c?.http2.rapidResetBurst, 10)
        XCTAssertEqual(c?.http2.rapidResetRate, 5)
        XCTAssertEqual(c?.http2.controlFrameBurst, 20)
        XCTAssertEqual(c?.http2.controlFrameRate, 10)
        XCTAssertEqual(c?.http2.maxContinuations, 4)
        XCTAssertEqual(c?.http2.zeroWindowTimeout, .seconds(2))
        assertSingleError("[http2]\nmax_concurrent_streams = 0", at: "2:1", "between 1 and 10000")
        assertSingleError("[http2]\ninitial_window_size = 100", at: "2:1", "http2.initial_window_size must be between")
        assertSingleError("[http2]\nzero_window_timeout = \"0s\"", at: "2:1", "must be greater than 0")
        assertSingleError("[http2]\nenabled = true", at: "2:1", "unknown key \"enabled\" in [http2]")
        assertSingleError("tls.alpn = [\"http/1.1\", \"h3\"]", at: "1:25", "unsupported protocol \"h3\"")
    }

    // MARK: - [redis]

    func testRedisSectionParses() throws {
        let text = """
            [tickets]
            source = "redis"
            rotation = "2s"
            lifetime = "6s"

            [redis]
            url = "redis://edge:s%40cret@10.0.0.5:6380/2"
            replica = "redis://[::1]"
            required = true
            connect_timeout = "200ms"
            wrapping_key_file = "wrap.key"
            wrapping_key_id = "k2"
            previous_wrapping_keys = [{ id = "k1", env = "OLD_WRAP" }]
            max_clock_skew = "0s"
            fallback_grace = "1s"
            """
        let c = try ProxyConfiguration.parse(text: text, fileName: "t.toml", baseDirectory: "/etc/ep")
        let r = try XCTUnwrap(c.redis)
        XCTAssertEqual(c.tickets.source, .redis)
        XCTAssertEqual(
            r.url,
            RedisURL(host: .ipv4("10.0.0.5"), port: 6380, username: "edge", password: "s@cret", database: 2)
        )
        XCTAssertEqual(r.replica, RedisURL(host: .ipv6("::1"), port: 6379))
        XCTAssertEqual("\(r.url!)", "redis://edge:***@10.0.0.5:6380/2", "the password never prints")
        XCTAssertTrue(r.required)
        XCTAssertEqual(r.connectTimeout, .milliseconds(200))
        XCTAssertEqual(r.wrappingKeyFile, "/etc/ep/wrap.key")
        XCTAssertEqual(r.previousWrappingKeys, [.init(id: "k1", env: "OLD_WRAP")])
        let plan = try XCTUnwrap(c.fleetPlan(r))
        XCTAssertEqual(plan.lookahead, 1)
    }

    func testRedisErrorsPointAtTheKey() {
        let base = "[tickets]\nsource = \"redis\"\n[redis]\nwrapping_key_env = \"W\"\nwrapping_key_id = \"k\"\n"
        assertSingleError(base, at: "3:2", "redis.url is required")
        assertSingleError(base + "url = \"http://x\"", at: "6:1", "must be a URL like \"redis://")
        assertSingleError(base + "url = \"redis://u@h\"", at: "6:1", "a user needs a password")
        assertSingleError(base + "url = \"redis://h:99999\"", at: "6:1", "invalid port")
        assertSingleError(base + "url = \"redis://h\"\nwrapping_key_file = \"f\"", at: "4:1", "exclusive")
        assertSingleError(
            base + "url = \"redis://h\"\nwrapping_key = \"00\"",
            at: "7:1",
            "unknown key \"wrapping_key\""
        )
        assertSingleError(
            base + "url = \"redis://h\"\nprevious_wrapping_keys = [{ id = \"k\", file = \"f\" }]",
            at: "7:29",
            "already used"
        )
        assertSingleError("[tickets]\nsource = \"redis\"", at: "2:1", "needs a [redis] section")
        assertSingleError(
            "[redis]\nurl = \"redis://h\"\nwrapping_key_env = \"W\"\nwrapping_key_id = \"k\"",
            at: "1:2",
            "only used with tickets.source = \"redis\""
        )
    }

    // MARK: - Type errors and bad values, with positions.

    func testTypeErrorsAreReportedAtTheKey() {
        assertSingleError(
            "[limits]\nmax_headers = \"100\"",
            at: "2:1",
            "limits.max_headers: expected an integer, found a string"
        )
        assertSingleError("\n  listen = 8443", at: "2:3", "listen: expected a string, found an integer")
        assertSingleError("[tickets]\nenabled = \"yes\"", at: "2:1", "expected true or false, found a string")
        assertSingleError("tls = \"modern\"", at: "1:1", "tls: expected a table, found a string")
        assertSingleError("[[tls]]\nmin_version = \"1.2\"", at: "1:3", "tls: expected a table, found an array")
        assertSingleError("timeouts.idle = 1.5", at: "1:10", "timeouts.idle: expected a duration")
        assertSingleError("workers = true", at: "1:1", "expected an integer or \"auto\", found a boolean")
        assertSingleError("workers = \"four\"", at: "1:1", "workers: \"four\" is neither an integer nor \"auto\"")
        assertSingleError("upstreams = \"http://x\"", at: "1:1", "upstreams: expected an array, found a string")
        assertSingleError(
            "certificates = [\"a.crt\"]",
            at: "1:17",
            "certificates[0]: expected a table with cert and key"
        )
        assertSingleError(
            "tls.alpn = [\"http/1.1\",\n    11]",
            at: "2:5",
            "tls.alpn[1]: expected a string, found an integer"
        )
    }

    func testBadValuesAreReportedAtTheKeyOrElement() {
        assertSingleError(
            "upstreams = [\n  \"http://ok:1\",\n  \"wss://secure:443\",\n]",
            at: "3:3",
            "upstreams[1]: upstream \"wss://secure:443\": only http:// and https:// upstreams are supported"
        )
        assertSingleError("upstreams = [\"http://a/b\"]", at: "1:14", "a path, query or fragment is not allowed")
        assertSingleError("upstreams = [\"http://a:0\"]", at: "1:14", "port 0 is not allowed")
        assertSingleError("upstreams = [\"http://a:99999\"]", at: "1:14", "invalid port")
        assertSingleError("upstreams = [\"http://::1:80\"]", at: "1:14", "must be in brackets")
        assertSingleError("upstreams = [\"http://300.1.1.1\"]", at: "1:14", "not a valid IPv4 address")
        assertSingleError("upstreams = [\"http://a_b..c\"]", at: "1:14", "not a valid host name")
        assertSingleError("upstreams = [\"127.0.0.1:80\"]", at: "1:14", "must be a URL")
        assertSingleError("upstreams = [\"http://a\", \"http://A:80/\"]", at: "1:26", "repeats upstreams[0]")
        assertSingleError("listen = \"127.0.0.1\"", at: "1:1", "missing port")
        assertSingleError("listen = \"::1:8443\"", at: "1:1", "must be written in brackets")
        assertSingleError("listen = \"[::g]:8443\"", at: "1:1", "not a valid IPv6 address")
        assertSingleError(
            "tls.min_version = \"1.4\"",
            at: "1:5",
            "\"1.4\" is not one of \"1.0\", \"1.1\", \"1.2\", \"1.3\""
        )
        assertSingleError("[log]\nlevel = \"verbose\"", at: "2:1", "is not one of \"trace\"")
        assertSingleError("[tickets]\nstale_action = \"renew\"", at: "2:1", "\"renew-inline\", \"full-handshake\"")
        assertSingleError("[tickets]\nrotation = \"-1h\"", at: "2:1", "tickets.rotation: durations cannot be negative")
        assertSingleError("workers = \"four\"", at: "1:1", "workers: \"four\" is neither an integer nor \"auto\"")
        assertSingleError("[timeouts]\nidle = \"forever\"", at: "2:1", "timeouts.idle: invalid duration \"forever\"")
        assertSingleError("[timeouts]\nidle = -5", at: "2:1", "cannot be negative")
        assertSingleError("[timeouts]\nhandshake = 0", at: "2:1", "timeouts.handshake must be greater than 0")
        assertSingleError("workers = 0", at: "1:1", "workers must be between 1 and 1024 (got 0)")
        assertSingleError("[limits]\nmax_headers = 0", at: "2:1", "limits.max_headers must be between 1 and 10000")
        assertSingleError("[tickets]\ntls13_count = 17", at: "2:1", "tickets.tls13_count must be between 0 and 16")
        assertSingleError("[access_log]\npath = \"\"", at: "2:1", "not empty")
        assertSingleError("[tls]\nciphers = \"AES;rm -rf\"", at: "2:1", "tls.ciphers contains \";\"")
        assertSingleError("[policies.headers]\nja3 = \"X JA3\"", at: "2:1", "valid HTTP header name")
        assertSingleError(
            "[policies.headers]\nja4 = \"x-edgeproxy-ja3\"",
            at: "2:1",
            "same header name as policies.headers.ja3"
        )
        assertSingleError("[[certificates]]\ncert = \"a\"", at: "1:3", "certificates[0]: missing \"key\"")
        assertSingleError(
            "[[certificates]]\ncert = \"\"\nkey = \"k\"",
            at: "2:1",
            "certificates[0].cert must not be empty"
        )
    }

    // MARK: - Cross-field rules.

    func testCrossFieldRules() {
        assertSingleError(
            "[tls]\nmax_version = \"1.2\"\nmin_version = \"1.3\"",
            at: "3:1",
            "tls.min_version (1.3) is greater than tls.max_version (1.2)"
        )
        // Only max_version is written: the error is placed on it.
        assertSingleError("[tls]\nmax_version = \"1.1\"", at: "2:1", "is greater than tls.max_version (1.1)")
        assertSingleError("[tickets]\nsource = \"files\"", at: "2:1", "needs at least one path in tickets.files")
        assertSingleError("[tickets]\nsource = \"files\"\nfiles = []", at: "3:1", "needs at least one path")
        assertSingleError("[tickets]\nfiles = [\"/k\"]", at: "2:1", "only used with tickets.source = \"files\"")
        assertSingleError(
            "[tickets]\nrotation = \"2h\"\nlifetime = \"1h\"",
            at: "3:1",
            "tickets.lifetime (1h) must be at least tickets.rotation (2h)"
        )
        assertSingleError("[tickets]\nrotation = \"500ms\"", at: "2:1", "at least 1s")
        assertSingleError(
            "admin = \"10.0.0.1:9000\"",
            at: "1:1",
            "not a loopback address: the admin API then requires a bearer token; set admin_token_file or"
        )
        // admin_allow_remote alone no longer exposes the admin API: a token does (issue 16 §2).
        assertSingleError(
            "admin = \"10.0.0.1:9000\"\nadmin_allow_remote = true",
            at: "1:1",
            "requires a bearer token"
        )
        XCTAssertNotNil(parsed("admin = \"10.0.0.1:9000\"\nadmin_token_env = \"T\""))
        XCTAssertNotNil(parsed("admin = \"[::]:9000\"\nadmin_token_file = \"/run/secrets/admin\""))
        assertSingleError(
            "admin_token_file = \"/t\"\nadmin_token_env = \"T\"",
            at: "2:1",
            "admin_token_file and admin_token_env are exclusive"
        )
        assertSingleError("admin_token_file = \"\"", at: "1:1", "admin_token_file must not be empty")
        assertSingleError("admin_token_env = \"\"", at: "1:1", "admin_token_env must not be empty")
        assertSingleError("admin_token_exempt_read_only = \"yes\"", at: "1:1", "expected true or false")
        assertSingleError(
            "listen = \"127.0.0.1:9000\"\nadmin = \"127.0.0.1:9000\"",
            at: "2:1",
            "must not use the listen address"
        )
    }

    func testAllErrorsAreCollectedInPositionOrder() {
        let text = """
            bogus = 1
            [tls]
            min_version = "1.3"
            max_version = "1.2"
            [limits]
            max_headers = "many"
            [tickets]
            rotation = "soon"
            source = "files"
            """
        let found = diagnostics(text)
        XCTAssertEqual(found.count, 5, found.joined(separator: "\n"))
        let positions = found.map { $0.split(separator: ":").prefix(3).joined(separator: ":") }
        XCTAssertEqual(positions, ["t.toml:1:1", "t.toml:3:1", "t.toml:6:1", "t.toml:8:1", "t.toml:9:1"])
        do {
            _ = try ProxyConfiguration.parse(text: text, fileName: "t.toml")
        } catch {
            XCTAssertEqual(error.description, found.joined(separator: "\n"))
            XCTAssertEqual(error.file, "t.toml")
            XCTAssertEqual(error.line, 1)
            XCTAssertEqual(error.column, 1)
            XCTAssertTrue(error.message.contains("bogus"))
        }
    }

    // MARK: - Syntax errors and files.

    func testSyntaxErrorCarriesTOMLPosition() {
        let found = diagnostics("listen = \"127.0.0.1:1\"\n[tls\nmin_version = \"1.2\"\n")
        XCTAssertEqual(found.count, 1)
        XCTAssertTrue(found.first?.hasPrefix("t.toml:2:") ?? false, "\(found)")
        XCTAssertTrue(found.first?.contains("TOML syntax error") ?? false, "\(found)")

        assertSingleError("a = 1\nb = \"x\u{0}y\"", at: "2:7", "NUL characters are not allowed")
        let duplicate = diagnostics("a = 1\nb = 2\na = 3\n")
        XCTAssertTrue(duplicate.first?.hasPrefix("t.toml:3:") ?? false, "\(duplicate)")
    }

    func testLoadResolvesRelativePathsAgainstTheFileDirectory() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("proxyconfig-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("edge.toml").path
        let text = """
            [[certificates]]
            cert = "certs/a.crt"
            key = "/abs/a.key"
            ocsp = "file:ocsp/a.der"
            [access_log]
            path = "logs/access.log"
            [tickets]
            source = "files"
            files = ["keys/k1"]
            """
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let c = try ProxyConfiguration.load(path: path)
        XCTAssertEqual(c.policies.dir, dir.path + "/policies")
        XCTAssertEqual(
            c.certificates,
            [.init(cert: dir.path + "/certs/a.crt", key: "/abs/a.key", ocsp: .file(dir.path + "/ocsp/a.der"))]
        )
        XCTAssertEqual(c.accessLog, .file(dir.path + "/logs/access.log"))
        XCTAssertEqual(c.tickets.files, [dir.path + "/keys/k1"])

        try "[limits]\nmax_headers = true\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ProxyConfiguration.load(path: path)) { error in
            XCTAssertTrue("\(error)".hasPrefix("\(path):2:1: limits.max_headers: expected an integer"), "\(error)")
        }
    }

    func testCertificateOCSPValues() {
        let base = "[[certificates]]\ncert = \"a.crt\"\nkey = \"a.key\"\n"
        XCTAssertEqual(parsed(base)?.certificates.first?.ocsp, .auto)
        XCTAssertEqual(parsed(base + "ocsp = \"off\"\n")?.certificates.first?.ocsp, .off)
        XCTAssertEqual(parsed(base + "ocsp = \"auto\"\n")?.certificates.first?.ocsp, .auto)
        XCTAssertEqual(parsed(base + "ocsp = \"file:/x/y.der\"\n")?.certificates.first?.ocsp, .file("/x/y.der"))
        assertSingleError(base + "ocsp = \"on\"\n", at: "4:1", "\"on\" is not one of \"auto\", \"off\", \"file:PATH\"")
        assertSingleError(base + "ocsp = \"file:\"\n", at: "4:1", "\"file:\" needs a path")
        assertSingleError(base + "ocsp = 1\n", at: "4:1", "expected a string")
        assertSingleError(base + "ocsp_file = \"x\"\n", at: "4:1", "unknown key \"ocsp_file\"")
    }

    func testLoadOfMissingFileNamesIt() {
        XCTAssertThrowsError(try ProxyConfiguration.load(path: "/nonexistent/edge.toml")) { error in
            XCTAssertEqual("\(error)", "/nonexistent/edge.toml: cannot open configuration file: no such file")
        }
    }

    func testTLSProfilesSetDefaultsThatExplicitKeysOverride() throws {
        let d = try XCTUnwrap(parsed(""))
        XCTAssertEqual(d.tls.profile, .intermediate)
        var fromProfile = ProxyConfiguration.TLS()
        fromProfile.apply(profile: .intermediate)
        XCTAssertEqual(d.tls, fromProfile, "the defaults are the intermediate profile")
        XCTAssertTrue(d.tls.ciphers.contains("DHE-RSA-AES128-GCM-SHA256"))
        let modern = try XCTUnwrap(parsed("[tls]\nprofile = \"modern\"\n"))
        XCTAssertEqual(modern.tls.minVersion, .v1_3)
        let old = try XCTUnwrap(parsed("[tls]\nprofile = \"old\"\n"))
        XCTAssertEqual(old.tls.minVersion, .v1_0)
        XCTAssertTrue(old.tls.ciphers.hasSuffix(":DES-CBC3-SHA"))
        XCTAssertTrue(old.tls.ciphers.contains("ECDHE-RSA-AES128-SHA:"))
        // Explicit keys win regardless of their position relative to `profile`.
        let mixed = try XCTUnwrap(
            parsed("[tls]\nciphers = \"ECDHE-RSA-AES128-SHA\"\nprofile = \"old\"\nmin_version = \"1.2\"\n")
        )
        XCTAssertEqual(mixed.tls.ciphers, "ECDHE-RSA-AES128-SHA")
        XCTAssertEqual(mixed.tls.minVersion, .v1_2)
        XCTAssertEqual(mixed.tls.groups, TLSProfile.old.groups)
        assertSingleError("[tls]\nprofile = \"legacy\"\n", at: "2:1", "tls.profile")
    }

    func testSessionsSection() throws {
        let d = try XCTUnwrap(parsed(""))
        XCTAssertEqual(d.sessions, ProxyConfiguration.Sessions())
        XCTAssertEqual(d.sessions.cache, .local)
        XCTAssertEqual(d.sessions.size, 20_000)
        XCTAssertEqual(d.sessions.timeout, .minutes(5))
        let c = try XCTUnwrap(parsed("[sessions]\ncache = \"off\"\nsize = 10\ntimeout = \"30s\"\n"))
        XCTAssertEqual(c.sessions.cache, .off)
        XCTAssertEqual(c.sessions.size, 10)
        XCTAssertEqual(c.sessions.timeout, .seconds(30))
        assertSingleError("[sessions]\ncache = \"shared\"\n", at: "2:1", "sessions.cache")
        assertSingleError("[sessions]\nsize = 0\n", at: "2:1", "sessions.size must be between")
        assertSingleError("[sessions]\nttl = \"5m\"\n", at: "2:1", "ttl")
        assertSingleError(
            "[tickets]\nlifetime = \"1h\"\n[sessions]\ntimeout = \"2h\"\n",
            at: "4:1",
            "must not exceed tickets.lifetime"
        )
        // The default is cut to a shorter ticket lifetime instead of failing.
        let short = try XCTUnwrap(parsed("[tickets]\nrotation = \"1m\"\nlifetime = \"2m\"\n"))
        XCTAssertEqual(short.sessions.timeout, .minutes(5))
        XCTAssertEqual(short.effectiveSessionTimeout, .minutes(2))
        assertSingleError("[sessions]\ncache = \"redis\"\n", at: "2:1", "needs a [redis] section")
    }

    // MARK: - The shipped reference file.

    func testExampleFileLoadsAndDiffersFromDefaultsOnlyWhereItSaysSo() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("edgeproxy.example.toml").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let parsedExample = try ProxyConfiguration.parse(text: text, fileName: path)
        var expected = ProxyConfiguration()
        expected.upstreams = [Upstream(host: .ipv4("127.0.0.1"), port: 8080)]
        expected.admin = HostPort(host: .ipv4("127.0.0.1"), port: 9443)
        XCTAssertEqual(parsedExample, expected)
        XCTAssertEqual(text.components(separatedBy: "# EXAMPLE:").count - 1, 2, "each deliberate difference is marked")

        // load(path:) additionally anchors the policies directory next to the file.
        let loaded = try ProxyConfiguration.load(path: path)
        expected.policies.dir = (path as NSString).deletingLastPathComponent + "/policies"
        XCTAssertEqual(loaded, expected)
    }

    func testExampleFileDocumentsEveryKey() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("edgeproxy.example.toml").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let locator = TOMLKeyLocator(text: text)
        let keys: [TOMLPath] = [
            ["listen"], ["workers"], ["upstreams"], ["admin"], ["admin_allow_remote"],
            ["admin_token_exempt_read_only"],
            ["tls", "profile"], ["tls", "alpn"], ["tls", "alpn_strict"],
            ["timeouts", "handshake"], ["timeouts", "header_read"], ["timeouts", "idle"],
            ["timeouts", "upstream_connect"], ["timeouts", "upstream_read"], ["timeouts", "drain"],
            ["limits", "max_request_line"], ["limits", "max_header_bytes"], ["limits", "max_headers"],
            ["limits", "max_connections_per_worker"], ["access_log", "path"], ["log", "level"],
            ["tickets", "enabled"], ["tickets", "source"], ["tickets", "rotation"], ["tickets", "lifetime"],
            ["tickets", "stale_action"], ["tickets", "tls13_count"], ["tickets", "files"],
            ["policies", "dir"], ["policies", "enabled"], ["policies", "headers", "enabled"],
            ["policies", "headers", "ja3"], ["policies", "headers", "ja4"], ["policies", "headers", "policy"],
            ["policies", "headers", "tag"], ["sessions", "cache"], ["sessions", "size"], ["sessions", "timeout"],
        ]
        for key in keys { XCTAssertNotNil(locator.position(of: key), "\(key) is not in the example file") }
        // [[certificates]] is shown commented out (the default is none); its keys must still be documented.
        XCTAssertTrue(text.contains("# [[certificates]]\n# cert = "))
        XCTAssertTrue(text.contains("\n# ocsp = \"auto\""))
        // The token keys have no default value to show; they are shown commented out.
        XCTAssertTrue(text.contains("\n# admin_token_file = "))
        XCTAssertTrue(text.contains("\n# admin_token_env = "))
        // The keys a profile sets are shown commented out with the "intermediate" values (writing one overrides it).
        let tls = ProxyConfiguration.TLS()
        for line in [
            "# min_version = \"1.2\"", "# max_version = \"1.3\"", "# ciphers = \"\(tls.ciphers)\"",
            "# ciphersuites = \"\(tls.ciphersuites)\"", "# groups = \"\(tls.groups)\"",
        ] {
            XCTAssertTrue(text.contains(line + "\n"), "\(line) is not in the example file")
        }
    }
}
