import XCTest

@testable import ProxyFingerprint
@testable import ProxyPolicy

/// decide(): priority resolution, observe vs enforce, all/any/not, JA3/JA4, each predicate family.
final class PolicyDecisionTests: XCTestCase {
    private func policy(
        _ name: String,
        priority: Int,
        mode: String = "enforce",
        match: String,
        actions: String = ""
    ) -> String {
        """
        [[policy]]
        name = "\(name)"
        priority = \(priority)
        mode = "\(mode)"
        match = { \(match) }
        actions = { \(actions) }

        """
    }

    private func set(_ policies: String...) throws -> CompiledPolicySet {
        try loadPolicies(policies.joined()).set
    }

    func testHigherPriorityWinsRegardlessOfFileOrder() throws {
        let s = try set(
            policy("low", priority: 1, match: "grease = \"absent\"", actions: "stale_ticket = \"renew-inline\""),
            policy(
                "high",
                priority: 5,
                match: "sni = \"present\"",
                actions: "stale_ticket = \"full-handshake\", tag = \"h\""
            )
        )
        XCTAssertEqual(s.policies.map(\.name), ["high", "low"])
        let d = s.decide(PolicyInput(features: makeFeatures()))
        XCTAssertEqual(d.matchedName, "high")
        XCTAssertEqual(d.mode, .enforce)
        XCTAssertEqual(d.effective.staleTicket, .fullHandshake)
        XCTAssertEqual(d.tag, "h")
        // Without SNI the lower one applies.
        let d2 = s.decide(PolicyInput(features: makeFeatures(extensions: [10, 11])))
        XCTAssertEqual(d2.matchedName, "low")
        XCTAssertEqual(d2.effective.staleTicket, .renewInline)
        // Nothing matches a GREASE hello without SNI.
        XCTAssertEqual(s.decide(PolicyInput(features: makeFeatures(extensions: [10], grease: true))), .noMatch)
    }

    func testObserveRecordsButDoesNotApplyOrHide() throws {
        let s = try set(
            policy(
                "watch",
                priority: 9,
                mode: "observe",
                match: "grease = \"absent\"",
                actions: "stale_ticket = \"full-handshake\", tickets = \"off\", tag = \"candidate\""
            ),
            policy("base", priority: 1, match: "sni = \"present\"", actions: "tls13_tickets = 2")
        )
        let d = s.decide(PolicyInput(features: makeFeatures()))
        XCTAssertEqual(d.matchedName, "watch")
        XCTAssertEqual(d.mode, .observe)
        XCTAssertEqual(d.tag, "candidate")
        XCTAssertEqual(
            d.wouldApply,
            PolicyActions(staleTicket: .fullHandshake, ticketsEnabled: false, tag: "candidate")
        )
        // Effective actions come from the enforce policy below, unaffected by the observe policy.
        XCTAssertEqual(d.effective, PolicyActions(tls13Tickets: 2))
        XCTAssertEqual(d.enforcedIndex, s.index(named: "base"))
        // Observe alone: defaults stay.
        let d2 = s.decide(PolicyInput(features: makeFeatures(extensions: [10])))
        XCTAssertEqual(d2.mode, .observe)
        XCTAssertEqual(d2.effective, .none)
        XCTAssertNil(d2.enforcedIndex)
    }

    func testAllAnyNotSemantics() throws {
        let s = try set(
            policy(
                "p",
                priority: 1,
                match: """
                    all = [{ any = [{ grease = "present" }, { highest_version = "1.3" }] }, { not = { ciphers_contain_any = ["0x00ff"] } }]
                    """
            )
        )
        func m(_ f: ClientHelloFeatures) -> Bool { s.decide(PolicyInput(features: f)).matchedName == "p" }
        XCTAssertTrue(m(makeFeatures(grease: true)))
        XCTAssertTrue(m(makeFeatures(versions: [0x0304, 0x0303])))
        XCTAssertFalse(m(makeFeatures()))  // neither branch of any
        XCTAssertFalse(m(makeFeatures(ciphers: [0x1301, 0x00ff], grease: true)))  // not fails
        // Empty all matches everything; empty any matches nothing.
        XCTAssertTrue(Matcher.all([]).matches(PolicyInput(features: makeFeatures())))
        XCTAssertFalse(Matcher.any([]).matches(PolicyInput(features: makeFeatures())))
    }

    func testPredicateFamilies() throws {
        let f = makeFeatures(
            legacy: 0x0303,
            versions: [0x0304, 0x0303],
            ciphers: [0x1302, 0x1301, 0xc02c, 0x00ff],
            extensions: [0, 5, 10, 11, 13, 16, 23, 0xff01],
            groups: [29, 23, 24],
            pointFormats: [0],
            sigalgs: [0x0804, 0x0401, 0x0403],
            alpn: ["h2", "http/1.1"]
        )
        let input = PolicyInput(features: f)
        var yes: [MatchPredicate] = [
            .highestVersion(.equal, 0x0304), .highestVersion(.atLeast, 0x0303), .legacyVersion(.atMost, 0x0303),
            .ciphersPrefix([0x1302, 0x1301]), .ciphersContainAll(U16Set([0xc02c, 0x1301])),
            .ciphersContainAny(U16Set([0xdead, 0xc02c])),
        ]
        yes += [
            .cipherSetEqual(U16Set([0x00ff, 0xc02c, 0x1301, 0x1302])),
            .firstCipherIn(U16Set([0x1302, 0x1303])),
            .ciphersSubsetOf(U16Set([0x1301, 0x1302, 0x1303, 0xc02c, 0x00ff])),
            .extensionsEqual([0, 5, 10, 11, 13, 16, 23, 0xff01]), .extensionsSubsequence([0, 13, 0xff01]),
            .extensionsPrefix([0, 5]), .extensionsSuffix([23, 0xff01]), .extensionsPresent(U16Set([16, 23])),
            .extensionsAbsent(U16Set([21, 35])),
        ]
        yes += [
            .flag(.renegotiationSCSV, true), .flag(.sessionTicket, false),
            .groupSetEqual(U16Set([24, 23, 29])), .groupsContainAll(U16Set([29])), .pointFormatsEqual([0]),
            .sigalgsPrefix([0x0804]), .sigalgsContainAll(U16Set([0x0403])),
            .alpnEqual([Array("h2".utf8), Array("http/1.1".utf8)]),
            .alpnContainsAll([Array("http/1.1".utf8)]), .flag(.alpn, true),
        ]
        for p in yes { XCTAssertTrue(Matcher.leaf(p).matches(input), "\(p)") }
        var no: [MatchPredicate] = [
            .highestVersion(.equal, 0x0303), .highestVersion(.atMost, 0x0303), .ciphersPrefix([0x1301]),
            .cipherSetEqual(U16Set([0x1301, 0x1302, 0xc02c])), .firstCipherIn(U16Set([0x1301])),
            .ciphersSubsetOf(U16Set([0x1301, 0x1302])),
        ]
        no += [
            .extensionsSubsequence([13, 0]), .extensionsSuffix([0xff01, 23]),
            .extensionsPresent(U16Set([16, 35])), .extensionsAbsent(U16Set([21, 23])),
            .groupSetEqual(U16Set([29, 23])),
            .groupsSubsetOf(U16Set([29, 23])), .pointFormatsEqual([0, 1, 2]), .alpnEqual([Array("h2".utf8)]),
            .alpnContainsAll([Array("h3".utf8)]), .extensionsEqual([0, 5]), .flag(.grease, true),
        ]
        for p in no { XCTAssertFalse(Matcher.leaf(p).matches(input), "\(p)") }
    }

    func testJA4WildcardsPerSection() throws {
        let ja4 = "t12d260700_e99a3d2b2b8b_71440d09e7ee"
        for (pattern, expected) in [
            ("t12d*_*_*", true), ("*_e99a3d2b2b8b_*", true), ("t1?d26*_*_71440d09e7ee", true), ("*_*_*", true),
            (ja4, true), ("t13d*_*_*", false), ("*_e99a3d2b2b8c_*", false), ("t12d*_*", nil), ("t12d*", nil),
            ("T12D*_*_*", nil), ("t12d_*_*_*", nil), ("*2b8b_*_*", false), ("*_*2b8b_*", true), ("t12d*0_*_*", true),
        ] as [(String, Bool?)] {
            let p = JA4Pattern(pattern)
            guard let expected else {
                XCTAssertNil(p, "\(pattern) must be rejected")
                continue
            }
            XCTAssertEqual(try XCTUnwrap(p, pattern).matches(ja4), expected, pattern)
        }
        XCTAssertFalse(JA4Pattern("*_*_*")!.matches("t12d_abc"), "two sections are not a JA4")
        XCTAssertFalse(JA4Pattern("*_*_*")!.matches("a_b_c_d"), "four sections are not a JA4")
        XCTAssertFalse(JA4Pattern("t12d*_*_*")!.matches(""), "empty string")
    }

    func testJA3AndJA4PoliciesAskForTheirInputs() throws {
        let plain = try set(policy("p", priority: 1, match: "grease = \"absent\""))
        XCTAssertFalse(plain.needsJA3 || plain.needsJA4)
        let s = try set(
            policy(
                "by-ja3",
                priority: 3,
                match: "ja3 = [\"A6776199188C09F5124B46B895772FA2\"]",
                actions: "tag = \"3\""
            ),
            policy("by-ja4", priority: 2, match: "not = { ja4 = [\"t13d*_*_*\"] }", actions: "tag = \"4\"")
        )
        XCTAssertTrue(s.needsJA3)
        XCTAssertTrue(s.needsJA4)
        let f = makeFeatures()
        let digest = try XCTUnwrap(JA3Digest(hex: "a6776199188c09f5124b46b895772fa2"))
        XCTAssertEqual(digest.description, "a6776199188c09f5124b46b895772fa2")
        XCTAssertEqual(s.decide(PolicyInput(features: f, ja3: digest, ja4: "t12d1_a_b")).tag, "3")
        XCTAssertEqual(s.decide(PolicyInput(features: f, ja3: nil, ja4: "t12d1_a_b")).tag, "4")
        XCTAssertEqual(s.decide(PolicyInput(features: f, ja3: nil, ja4: "t13d1_a_b")), .noMatch)
        // A ja3/ja4 predicate without its input is false (the `not` then makes by-ja4 match: documented).
        XCTAssertEqual(s.decide(PolicyInput(features: f)).tag, "4")
    }

    func testRealHelloThroughParserAndJA4() throws {
        // The same decision whether the IE 11 hello is matched structurally or by its published JA4.
        let s = try set(policy("ie", priority: 1, match: "ja4 = [\"t12d*_e99a3d2b2b8b_*\"]", actions: "tag = \"ie\""))
        let hello = try XCTUnwrap(try Sample.fixtures().first { $0.name == "schannel-ie11-9600.18349-win7" }).hello
        XCTAssertEqual(hello.ja4.fingerprint, "t12d260700_e99a3d2b2b8b_71440d09e7ee")
        XCTAssertEqual(s.decide(PolicyInput(features: hello.features, ja4: hello.ja4.fingerprint)).tag, "ie")
    }

    func testU16Set() {
        let s = U16Set([0xc02c, 0x0001, 0xff01, 0x0041, 0xc02c])
        XCTAssertEqual(s.count, 4)
        for v: UInt16 in [0xc02c, 0x0001, 0xff01, 0x0041] { XCTAssertTrue(s.contains(v)) }
        for v: UInt16 in [0, 0xc02b, 0xff00, 0x0081, 0xffff] { XCTAssertFalse(s.contains(v)) }
        XCTAssertFalse(U16Set([]).contains(0))
    }
}
