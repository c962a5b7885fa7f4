import XCTest

@testable import ProxyConfig

final class ConfigOverridesTests: XCTestCase {
    private let file = """
        listen = "127.0.0.1:8443"
        upstreams = ["http://file-origin:8080"]
        workers = 2
        [[certificates]]
        cert = "file.crt"
        key = "file.key"
        [tickets]
        rotation = "2h"
        lifetime = "18h"
        [policies]
        dir = "/etc/policies"
        """

    func testFlagsWinOverTheFile() throws {
        let base = try XCTUnwrap(parsed(file))
        let overrides = ConfigOverrides(
            listen: "[::]:443",
            upstreams: ["http://a:1", "http://[::1]:2"],
            certs: [(cert: "x.crt", key: "x.key")],
            workers: 8,
            admin: "127.0.0.1:9000",
            ticketRotation: "30m",
            ticketLifetime: "6h",
            policiesDir: "local/policies"
        )
        let c = try base.applying(overrides)
        XCTAssertEqual(c.listen, HostPort(host: .ipv6("::"), port: 443))
        XCTAssertEqual(c.upstreams, [Upstream(host: .name("a"), port: 1), Upstream(host: .ipv6("::1"), port: 2)])
        XCTAssertEqual(c.certificates, [CertificatePair(cert: "x.crt", key: "x.key")])
        XCTAssertEqual(c.workers, 8)
        XCTAssertEqual(c.admin, HostPort(host: .ipv4("127.0.0.1"), port: 9000))
        XCTAssertEqual(c.tickets.rotation, .minutes(30))
        XCTAssertEqual(c.tickets.lifetime, .hours(6))
        XCTAssertEqual(c.policies.dir, "local/policies", "flag paths stay relative to the working directory")
    }

    func testNoOverridesKeepsTheFile() throws {
        let base = try XCTUnwrap(parsed(file))
        XCTAssertEqual(try base.applying(ConfigOverrides()), base)
        var partial = base
        partial.workers = 5
        XCTAssertEqual(try base.applying(ConfigOverrides(workers: 5)), partial)
    }

    func testBadFlagValuesNameTheFlag() throws {
        let base = ProxyConfiguration()
        let cases: [(ConfigOverrides, String)] = [
            (ConfigOverrides(listen: "localhost"), "--listen: missing port"),
            (
                ConfigOverrides(upstreams: ["ftp://x"]),
                "--upstream: upstream \"ftp://x\": only http:// and https:// upstreams"
            ),
            (ConfigOverrides(workers: 0), "--workers: workers must be between 1 and 1024 (got 0)"),
            (ConfigOverrides(admin: "192.0.2.1:9000"), "--admin: admin address 192.0.2.1:9000 is not a loopback"),
            (ConfigOverrides(ticketRotation: "soon"), "--ticket-rotation: invalid duration \"soon\""),
            (ConfigOverrides(ticketLifetime: "-1h"), "--ticket-lifetime: durations cannot be negative"),
            (ConfigOverrides(policiesDir: ""), "--policies: policies.dir must not be empty"),
            (ConfigOverrides(certs: [(cert: "a", key: "")]), "--key: certificates[0].key must not be empty"),
            (ConfigOverrides(listen: "127.0.0.1:8443", admin: "127.0.0.1:8443"), "--admin: admin must not use"),
            (ConfigOverrides(adminTokenFile: ""), "--admin-token-file: admin_token_file must not be empty"),
        ]
        for (overrides, expected) in cases {
            XCTAssertThrowsError(try base.applying(overrides), expected) { error in
                XCTAssertTrue("\(error)".hasPrefix(expected), "\(error)\n  expected prefix: \(expected)")
            }
        }
    }

    func testAdminTokenFromFlagsOrEnvironmentReplacesTheFileAndAllowsARemoteAdmin() throws {
        let fileWithEnv = try XCTUnwrap(parsed("admin_token_env = \"FROM_FILE\"\nadmin_token_exempt_read_only = true"))
        let c = try fileWithEnv.applying(ConfigOverrides(admin: "0.0.0.0:9443", adminTokenFile: "/run/secrets/t"))
        XCTAssertEqual(c.admin, HostPort(host: .ipv4("0.0.0.0"), port: 9443))
        XCTAssertEqual(c.adminTokenFile, "/run/secrets/t", "flag paths stay relative to the working directory")
        XCTAssertNil(c.adminTokenEnv)
        XCTAssertTrue(c.adminTokenExemptReadOnly)
        // The flag wins over the environment; the environment wins over the file.
        let both = try ProxyConfiguration().applying(
            ConfigOverrides(adminTokenFile: "t", adminTokenEnv: "EDGEPROXY_ADMIN_TOKEN")
        )
        XCTAssertEqual(both.adminTokenFile, "t")
        XCTAssertNil(both.adminTokenEnv)
        let fileWithPath = try XCTUnwrap(parsed("admin_token_file = \"/etc/t\""))
        let env = try fileWithPath.applying(ConfigOverrides(adminTokenEnv: "EDGEPROXY_ADMIN_TOKEN"))
        XCTAssertEqual(env.adminTokenEnv, "EDGEPROXY_ADMIN_TOKEN")
        XCTAssertNil(env.adminTokenFile)
        // A non-loopback --admin with no token anywhere names the flag and every way to give a token.
        XCTAssertThrowsError(try ProxyConfiguration().applying(ConfigOverrides(admin: "0.0.0.0:9443"))) { error in
            XCTAssertEqual(
                "\(error)",
                "--admin: admin address 0.0.0.0:9443 is not a loopback address: the admin API then requires a "
                    + "bearer token; set admin_token_file or admin_token_env (flags: --admin-token-file, "
                    + "environment EDGEPROXY_ADMIN_TOKEN)"
            )
        }
    }

    func testRelativeAdminTokenFileInAFileIsAnchoredToIt() throws {
        let c = try ProxyConfiguration.parse(text: "admin_token_file = \"secrets/admin\"", baseDirectory: "/etc/ep")
        XCTAssertEqual(c.adminTokenFile, "/etc/ep/secrets/admin")
    }

    func testCrossFieldRuleBrokenByAFlagIsReportedAgainstTheFlag() throws {
        let base = try XCTUnwrap(parsed(file))  // rotation = 2h in the file
        XCTAssertThrowsError(try base.applying(ConfigOverrides(ticketLifetime: "1h"))) { error in
            XCTAssertEqual(
                "\(error)",
                "--ticket-lifetime: tickets.lifetime (1h) must be at least tickets.rotation (2h)"
            )
        }
        XCTAssertThrowsError(try base.applying(ConfigOverrides(ticketRotation: "1d"))) { error in
            XCTAssertTrue("\(error)".hasPrefix("--ticket-rotation: invalid duration \"1d\""), "\(error)")
        }
        var withToken = base
        withToken.adminTokenEnv = "T"
        XCTAssertNoThrow(try withToken.applying(ConfigOverrides(admin: "0.0.0.0:9000")))
    }

    func testAllFlagErrorsAreCollected() {
        XCTAssertThrowsError(
            try ProxyConfiguration().applying(
                ConfigOverrides(listen: "x", upstreams: ["http://ok", "nope"], workers: -1)
            )
        ) { error in
            let lines = "\(error)".split(separator: "\n")
            XCTAssertEqual(lines.count, 3, "\(error)")
            XCTAssertEqual(Set(lines.map { $0.split(separator: ":")[0] }), ["--listen", "--upstream", "--workers"])
        }
    }

    func testValidateReportsHandBuiltMistakes() {
        var c = ProxyConfiguration()
        c.tls.minVersion = .v1_3
        c.tls.maxVersion = .v1_2
        c.limits.maxHeaders = 0
        XCTAssertThrowsError(try c.validate()) { error in
            XCTAssertEqual((error as? ConfigError)?.diagnostics.count, 2, "\(error)")
            XCTAssertTrue("\(error)".hasPrefix("configuration: tls.min_version (1.3) is greater"), "\(error)")
        }
    }
}
