import XCTest

@testable import ProxyPolicy

/// Load-time warnings: conflicts, never-matching rules, unreachable policies, strict mode.
final class PolicyAnalysisTests: XCTestCase {
    private func p(_ name: String, _ priority: Int, _ match: String, mode: String = "enforce") -> String {
        "[[policy]]\nname = \"\(name)\"\npriority = \(priority)\nmode = \"\(mode)\"\nmatch = { \(match) }\nactions = {}\n\n"
    }

    private func warnings(_ text: String) throws -> [PolicyDiagnostic] { try loadPolicies(text).warnings }

    func testSamePriorityOverlapIsAConflict() throws {
        let w = try warnings(p("a", 5, "grease = \"absent\"") + p("b", 5, "sni = \"present\""))
        XCTAssertEqual(w.map(\.kind), [.conflict])
        XCTAssertEqual(w[0].location.description, "test.toml:8:1")
        XCTAssertTrue(w[0].message.contains("'a'") && w[0].message.contains("'b'"))
    }

    func testSamePriorityDisjointIsNotAConflict() throws {
        XCTAssertEqual(try warnings(p("a", 5, "grease = \"absent\"") + p("b", 5, "grease = \"present\"")), [])
        XCTAssertEqual(
            try warnings(p("a", 5, "highest_version = \"1.3\"") + p("b", 5, "highest_version_max = \"1.2\"")),
            []
        )
        XCTAssertEqual(
            try warnings(
                p("a", 5, "extensions_present = [\"session_ticket\"]") + p("b", 5, "session_ticket = \"absent\"")
            ),
            []
        )
        // Different priorities, or observe: no conflict.
        XCTAssertEqual(try warnings(p("a", 5, "grease = \"absent\"") + p("b", 4, "sni = \"present\"")), [])
        XCTAssertEqual(
            try warnings(p("a", 5, "grease = \"absent\"") + p("b", 5, "sni = \"present\"", mode: "observe")),
            []
        )
    }

    func testContradictoryAllOfNeverMatches() throws {
        for m in [
            "all = [{ grease = \"absent\" }, { grease = \"present\" }]",
            "highest_version_min = \"1.3\", highest_version_max = \"1.2\"",
            "extensions_present = [\"alpn\"], extensions_absent = [\"alpn\"]",
            "sni = \"present\", extensions_subset_of = [\"supported_groups\"]",
            "ja3 = [\"00000000000000000000000000000001\"], all = [{ ja3 = [\"00000000000000000000000000000002\"] }]",
            "any = []",
            "grease = \"absent\", not = { grease = \"absent\" }",
        ] {
            let w = try warnings(p("x", 1, m))
            XCTAssertEqual(w.map(\.kind), [.neverMatches], m)
        }
        // Satisfiable combinations are not flagged.
        XCTAssertEqual(try warnings(p("x", 1, "highest_version_min = \"1.2\", highest_version_max = \"1.2\"")), [])
        XCTAssertEqual(try warnings(p("x", 1, "any = [{ grease = \"absent\" }, { grease = \"present\" }]")), [])
    }

    func testShadowedPolicyIsUnreachable() throws {
        // "narrow" needs everything "broad" needs, and more: broad always wins first.
        let text =
            p("broad", 10, "grease = \"absent\", extensions_present = [\"renegotiation_info\"]")
            + p(
                "narrow",
                5,
                "grease = \"absent\", extensions_present = [\"renegotiation_info\", \"session_ticket\"], sni = \"present\""
            )
            + p("other", 5, "grease = \"present\"")
        let w = try warnings(text)
        XCTAssertEqual(w.map(\.kind), [.unreachable], "\(w)")
        XCTAssertTrue(w[0].message.contains("'narrow'") && w[0].message.contains("'broad'"))
        XCTAssertEqual(w[0].location.description, "test.toml:8:1")
        // Range implication and a match-all policy.
        XCTAssertEqual(
            try warnings(p("a", 9, "highest_version_min = \"1.2\"") + p("b", 1, "highest_version = \"1.3\"")).map(
                \.kind
            ),
            [.unreachable]
        )
        XCTAssertEqual(try warnings(p("all", 9, "") + p("b", 1, "sni = \"absent\"")).map(\.kind), [.unreachable])
        // Not shadowed when the higher one is observe, or when the lower one can match something else.
        XCTAssertEqual(try warnings(p("a", 9, "", mode: "observe") + p("b", 1, "sni = \"absent\"")), [])
        XCTAssertEqual(
            try warnings(
                p("a", 9, "sni = \"absent\"") + p("b", 1, "any = [{ sni = \"absent\" }, { grease = \"present\" }]")
            ),
            []
        )
    }

    func testStrictModeTurnsWarningsIntoErrors() throws {
        let text = p("a", 5, "grease = \"absent\"") + p("b", 5, "sni = \"present\"")
        XCTAssertThrowsError(try loadPolicies(text, strict: true)) { e in
            let e = e as! PolicyLoadError
            XCTAssertEqual(e.errors.map(\.kind), [.conflict])
            XCTAssertTrue(e.description.hasPrefix("test.toml:8:1: error: enforce policies 'a'"), e.description)
        }
    }
}
