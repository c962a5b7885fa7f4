import XCTest

@testable import ProxyPolicy

/// Loader diagnostics: exact file:line:column for syntax and semantic errors.
final class PolicyLoaderTests: XCTestCase {
    private let valid = """
        [[policy]]
        name = "p"
        priority = 10
        mode = "enforce"
        [policy.match]
        grease = "absent"
        [policy.actions]
        stale_ticket = "full-handshake"
        """

    private func only(_ e: PolicyLoadError?, line: UInt = #line) -> PolicyDiagnostic? {
        guard let e else { return nil }
        XCTAssertEqual(e.diagnostics.count, 1, e.description, line: line)
        return e.diagnostics.first
    }

    func testValidFileLoads() throws {
        let r = try loadPolicies(valid)
        XCTAssertEqual(r.set.generation, 7)
        XCTAssertEqual(r.set.policies.count, 1)
        XCTAssertEqual(r.set.policies[0].origin, SourceLocation(file: "test.toml", line: 1, column: 1))
        XCTAssertEqual(r.set.policies[0].matcher, .leaf(.flag(.grease, false)))
        XCTAssertEqual(r.warnings, [])
    }

    func testSyntaxErrorHasExactPosition() throws {
        let text = """
            [[policy]]
            name = "p"
            priority = = 10
            """
        let d = try XCTUnwrap(only(loadError(text, file: "dir/bad.toml")))
        XCTAssertEqual(d.kind, .syntax)
        XCTAssertEqual(d.location, SourceLocation(file: "dir/bad.toml", line: 3, column: 12), d.description)
        XCTAssertTrue(d.description.hasPrefix("dir/bad.toml:3:12: error: TOML syntax error"), d.description)
    }

    func testUnknownKeysArePointedAt() throws {
        // Unknown policy key, unknown matcher key (nested inline table), unknown action: all reported, in order.
        let text = """
            [[policy]]
            name = "p"
            priority = 10
            mode = "enforce"
              colour = "blue"
            [policy.match]
            any = [{ grease = "absent" }, { sni = "present", extension_count = 3 }]
            [policy.actions]
            stale_ticket = "full-handshake"
            renew = true
            """
        let e = try XCTUnwrap(loadError(text))
        XCTAssertEqual(e.diagnostics.map(\.kind), [.unknownKey, .unknownKey, .unknownKey], e.description)
        XCTAssertEqual(
            e.diagnostics.map(\.location.description),
            ["test.toml:5:3", "test.toml:7:50", "test.toml:10:1"],
            e.description
        )
        XCTAssertTrue(e.diagnostics[1].message.contains("'extension_count'"))
    }

    /// Keys written as part of a dotted key or header, and escaped quoted keys, are pointed at themselves (not at the
    /// enclosing policy), and diagnostics follow source order.
    func testDottedAndQuotedKeysArePointedAt() throws {
        let text = #"""
            [[policy]]
            name = "p"
            priority = 1
            mode = "enforce"
            colour.x = 1
            "col\u006Fr" = 2
            actions.foo = 1
            match.grease = "absent"
            [other.table]
            """#
        let e = try XCTUnwrap(loadError(text))
        XCTAssertEqual(e.diagnostics.map(\.kind), [.unknownKey, .unknownKey, .unknownKey, .unknownKey], e.description)
        XCTAssertEqual(
            e.diagnostics.map(\.location.description),
            ["test.toml:9:2", "test.toml:5:1", "test.toml:6:1", "test.toml:7:9"],
            e.description
        )
        XCTAssertTrue(e.diagnostics[2].message.contains("'color'"), e.diagnostics[2].message)
    }

    func testBadEnumValuesArePointedAtTheValue() throws {
        let text = valid.replacingOccurrences(of: "mode = \"enforce\"", with: "mode = \"enforced\"")
            .replacingOccurrences(of: "\"full-handshake\"", with: "\"renew-always\"")
        let e = try XCTUnwrap(loadError(text))
        XCTAssertEqual(e.diagnostics.map(\.location.description), ["test.toml:4:8", "test.toml:8:16"], e.description)
        XCTAssertEqual(e.diagnostics.map(\.kind), [.badValue, .badValue])
        XCTAssertTrue(e.diagnostics[0].message.contains("\"enforce\", \"observe\""), e.diagnostics[0].message)
        XCTAssertTrue(e.diagnostics[1].message.contains("\"renew-inline\""), e.diagnostics[1].message)
    }

    func testInvalidHexAndUnknownNames() throws {
        let text = """
            [[policy]]
            name = "p"
            priority = 10
            mode = "observe"
            [policy.match]
            ciphers_contain_any = ["0xc02c", "0xzz01",
                                   "0x12345"]
            groups_contain = ["x25519", "curve9"]
            ja3 = ["a6776199188c09f5124b46b895772fa"]
            [policy.actions]
            tag = "t"
            """
        let e = try XCTUnwrap(loadError(text))
        XCTAssertEqual(
            e.diagnostics.map(\.location.description),
            ["test.toml:6:34", "test.toml:7:24", "test.toml:8:29", "test.toml:9:8"],
            e.description
        )
        XCTAssertTrue(e.diagnostics[0].message.contains("invalid hex"))
        XCTAssertTrue(e.diagnostics[2].message.contains("unknown group name \"curve9\""))
        XCTAssertTrue(e.diagnostics[3].message.contains("invalid JA3 hash"))
    }

    func testWrongTypesAndRanges() throws {
        let text = """
            [[policy]]
            name = "p"
            priority = "high"
            mode = "enforce"
            [policy.match]
            grease = false
            highest_version_max = "1.4"
            ja4 = ["t13d_*"]
            [policy.actions]
            tls13_tickets = 17
            tickets = "maybe"
            """
        let e = try XCTUnwrap(loadError(text))
        XCTAssertEqual(e.diagnostics.map(\.kind), [.wrongType, .wrongType, .badValue, .badValue, .badValue, .badValue])
        XCTAssertEqual(
            e.diagnostics.map(\.location.line),
            [3, 6, 7, 8, 10, 11],
            e.description
        )
    }

    func testMissingKeysAndDuplicateNames() throws {
        let missing = """
            [[policy]]
            name = "p"
            [policy.match]
            """
        let e = try XCTUnwrap(loadError(missing))
        XCTAssertEqual(
            Set(e.diagnostics.map(\.message)),
            [
                "policy is missing required key 'priority'", "policy is missing required key 'mode'",
                "policy is missing required key 'actions'",
            ]
        )
        XCTAssertEqual(e.diagnostics[0].location.description, "test.toml:1:1")

        let dup = valid + "\n\n" + valid
        let d = try XCTUnwrap(only(loadError(dup)))
        XCTAssertEqual(d.kind, .duplicateName)
        XCTAssertEqual(d.location.description, "test.toml:10:1")
        XCTAssertTrue(d.message.contains("first defined at test.toml:1:1"))
    }

    func testNamesHexAndIntegersAreEquivalent() throws {
        let a = try loadPolicies(
            valid.replacingOccurrences(
                of: "grease = \"absent\"",
                with: "extensions_prefix = [\"renegotiation_info\", \"server_name\", 5]"
            )
        )
        let b = try loadPolicies(
            valid.replacingOccurrences(
                of: "grease = \"absent\"",
                with: "extensions_prefix = [\"0xff01\", 0, \"0x0005\"]"
            )
        )
        XCTAssertEqual(a.set.policies[0].matcher, .leaf(.extensionsPrefix([0xff01, 0, 5])))
        XCTAssertEqual(a.set.policies[0].matcher, b.set.policies[0].matcher)
    }

    func testArrayOfTablesAndInlineNestingAreEquivalent() throws {
        let tables = """
            [[policy]]
            name = "p"
            priority = 1
            mode = "enforce"
            [policy.actions]
            [[policy.match.any]]
            grease = "present"
            [[policy.match.any]]
            sni = "absent"
            [policy.match.any.not]
            alpn = "present"
            """
        let inline = """
            [[policy]]
            name = "p"
            priority = 1
            mode = "enforce"
            actions = {}
            match = { any = [{ grease = "present" }, { sni = "absent", not = { alpn = "present" } }] }
            """
        let m1 = try loadPolicies(tables).set.policies[0].matcher
        let m2 = try loadPolicies(inline).set.policies[0].matcher
        XCTAssertEqual(m1, m2)
        XCTAssertEqual(
            m1,
            .any([.leaf(.flag(.grease, true)), .all([.leaf(.flag(.sni, false)), .not(.leaf(.flag(.alpn, true)))])])
        )
    }

    func testDirectoryLoadingReportsFileNames() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("policy-test-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try valid.write(to: dir.appendingPathComponent("a.toml"), atomically: true, encoding: .utf8)
        try "[[policy]]\nname = \"q\"\nprority = 1\n".write(
            to: dir.appendingPathComponent("b.toml"),
            atomically: true,
            encoding: .utf8
        )
        try "ignored".write(to: dir.appendingPathComponent("README.md"), atomically: true, encoding: .utf8)
        do {
            _ = try PolicyLoader.load(directory: dir.path, generation: 1)
            XCTFail("expected errors")
        } catch let e as PolicyLoadError {
            XCTAssertEqual(e.errors.first?.location.description, dir.path + "/b.toml:3:1", e.description)
            XCTAssertTrue(e.description.contains("unknown policy key 'prority'"))
        }
        try FileManager.default.removeItem(at: dir.appendingPathComponent("b.toml"))
        XCTAssertEqual(try PolicyLoader.load(directory: dir.path, generation: 3).set.policies.map(\.name), ["p"])
    }

    /// The key locator must survive multi-line strings, quoted keys, comments and nested arrays of tables.
    func testPositionsAfterMultilineStringsAndNestedTableArrays() throws {
        let text = """
            # header comment with [brackets] and "quotes"
            [[policy]]
            name = 'p'  # trailing comment
            description = \"\"\"
            spans [lines] = "x"
            bad_key = 1
            \"\"\"
            "priority" = 1
            mode = "enforce"
            actions = {}
            [[policy.match.any]]
            grease = "absent"
            [[policy.match.any]]
            [[policy.match.any.all]]
            sni = "present"
            [[policy.match.any.all]]
            point_formats = ["0x0g"]
            """
        let d = try XCTUnwrap(only(loadError(text)))
        XCTAssertEqual(d.location.description, "test.toml:17:18", d.description)
        XCTAssertTrue(d.message.contains("invalid hex point format \"0x0g\""), d.message)
    }
}
