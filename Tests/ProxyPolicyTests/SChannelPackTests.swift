import EdgeProxyTestSupport
import XCTest

@testable import ProxyFingerprint
@testable import ProxyPolicy

/// The shipped SChannel pack (policies/schannel.toml) against every sample we have.
final class SChannelPackTests: XCTestCase {
    var set: CompiledPolicySet!

    override func setUpWithError() throws {
        let result = try loadShippedPolicies()
        XCTAssertEqual(result.warnings, [], "the shipped policies must load cleanly")
        set = result.set
    }

    private func decide(_ h: ClientHello) -> PolicyDecision {
        set.decide(PolicyInput(features: h.features))
    }

    private func isSChannel(_ d: PolicyDecision) -> Bool {
        d.mode == .enforce && d.tag == "schannel" && d.effective.staleTicket == .fullHandshake
    }

    func testPackShape() throws {
        let i = try XCTUnwrap(set.index(named: "schannel"))
        let p = set.policies[i]
        XCTAssertEqual(p.mode, .enforce)
        XCTAssertEqual(p.actions, PolicyActions(staleTicket: .fullHandshake, tag: "schannel"))
        // Structural rules only: no hashes, so the live path never computes JA3/JA4 for this pack.
        XCTAssertFalse(set.needsJA3)
        XCTAssertFalse(set.needsJA4)
    }

    /// Complete SChannel fixtures must match. Incomplete ones (built from fingerprint databases or capture-tool
    /// output that did not record some fields) are evaluated with three-valued logic: the fields they did record
    /// must not contradict the pack, and exactly the samples listed below are undecidable from their fields.
    func testEverySChannelFixtureMatches() throws {
        let samples = try Sample.fixtures().filter(\.schannel)
        XCTAssertEqual(samples.count, 14)
        let matcher = set.policies[try XCTUnwrap(set.index(named: "schannel"))].matcher
        var undecided: Set<String> = []
        for s in samples {
            switch matcher.evaluate(PolicyInput(features: s.features), unknown: s.unknown) {
            case .yes:
                XCTAssertTrue(isSChannel(decide(s.hello)), "\(s.name) must match the SChannel pack")
            case .unknown:
                undecided.insert(s.name)
            case .no:
                XCTFail("\(s.name): recorded fields contradict the pack (unknown: \(s.unknown))")
            }
        }
        XCTAssertEqual(
            undecided,
            [
                "schannel-curl-schannel-ocsp-win10",  // JA3-derived: GREASE and signature_algorithms not recorded
                "schannel-dotnet6-winserver2019-tls12",  // Go hook output: no extension order, no sigalgs
                "schannel-dotnetfx48-winserver2022-tls13",
            ]
        )
    }

    func testNoNonSChannelFixtureMatches() throws {
        let samples = try Sample.fixtures().filter { !$0.schannel }
        XCTAssertGreaterThanOrEqual(samples.count, 10)
        for s in samples {
            XCTAssertEqual(decide(s.hello), .noMatch, "\(s.name) must not match any shipped policy")
        }
    }

    func testTestsslClientSimulation() throws {
        guard let entries = try TestsslClients.load() else {
            throw XCTSkip("testssl.sh not installed (\(TestPaths.testsslClients)); CI installs it")
        }
        XCTAssertGreaterThan(entries.count, 150)
        var schannel: [String] = []
        var others = 0
        for e in entries {
            let hello = try ClientHello.parse(bytes: e.bytes)
            let d = decide(hello)
            XCTAssertEqual(hello.isSSLv2Compatible, TestsslClients.sslv2Format.contains(e.name), e.name)
            if hello.isSSLv2Compatible {
                // IE 6 on XP (and Java 6u45) send an SSLv2-compatible CLIENT-HELLO: no extensions, so no
                // session_ticket, so a stale ticket can never be presented and the pack's action cannot apply.
                // The pack does not claim them.
                XCTAssertTrue(hello.extensions.isEmpty, e.name)
                XCTAssertEqual(d, .noMatch, e.name)
                continue
            }
            if TestsslClients.isSChannel(e.name) {
                schannel.append(e.name)
                XCTAssertTrue(isSChannel(d), "SChannel client \(e.name) must match the pack")
            } else {
                others += 1
                XCTAssertEqual(d, .noMatch, "non-SChannel client \(e.name) must not match")
            }
        }
        // IE 7 Vista ... IE 11 Win 10 Preview (12), Edge 12-17 (5), BingBot Dec 2013.
        XCTAssertEqual(schannel.count, 18, "\(schannel)")
        XCTAssertTrue(schannel.contains("Edge 15 Win 10") && schannel.contains("IE 11 Win 10"))
        XCTAssertFalse(schannel.contains("Edge 101 Win 10 21H2"), "Chromium Edge is not SChannel")
        XCTAssertGreaterThan(others, 130)
    }

    /// Exact SChannel captures (fixtures with raw bytes and testssl IE/Edge) with their cipher list changed the
    /// way admins and applications change it. None of these may stop the match.
    func testCipherListChangesKeepMatching() throws {
        var hellos = try Sample.fixtures().filter {
            $0.schannel && $0.unknown.isDisjoint(with: [.extensionOrder, .grease, .signatureAlgorithms])
        }
        .map { ($0.name, $0.hello) }
        if let entries = try TestsslClients.load() {
            for e in entries where TestsslClients.isSChannel(e.name) && !TestsslClients.sslv2Format.contains(e.name) {
                hellos.append((e.name, try ClientHello.parse(bytes: e.bytes)))
            }
        }
        var rng = SplitMix64(seed: 0x5eed)
        var checked = 0
        for (name, h) in hellos {
            var variants: [(String, [UInt16])] = [
                ("reversed", h.cipherSuites.reversed()),
                ("shuffled", h.cipherSuites.shuffled(using: &rng)),
                ("unknown suite added first", [0xc0ff] + h.cipherSuites),
                ("TLS_AES_128_CCM_SHA256 added", h.cipherSuites + [0x1304]),
                ("ChaCha20 added", [0xcca9] + h.cipherSuites),
            ]
            for i in h.cipherSuites.indices where h.cipherSuites.count > 1 {
                var c = h.cipherSuites
                c.remove(at: i)
                variants.append(("without \(hex4(h.cipherSuites[i]))", c))
            }
            for (what, ciphers) in variants {
                var v = h
                v.cipherSuites = ciphers
                XCTAssertTrue(isSChannel(decide(v)), "\(name) with cipher list \(what) must still match")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 300)
    }

    /// A Windows TLS 1.3 resumption hello appends pre_shared_key (RFC 8446: always last).
    func testTLS13ResumptionShapeMatches() throws {
        let win11 = try XCTUnwrap(try Sample.fixtures().first { $0.name == "schannel-win11-22h2-tls13" })
        var h = win11.hello
        h.extensions.append(.init(type: 41, body: []))
        XCTAssertTrue(isSChannel(decide(h)))
    }

    /// Chromium-family hellos with GREASE stripped (a GREASE-less build, or a middlebox that drops GREASE) must
    /// not turn into SChannel: they still carry extensions SChannel never sends (compress_certificate, ALPS, SCT,
    /// padding) and renegotiation_info in the middle. GREASE absence is necessary, never sufficient, in the pack.
    func testChromeLikeHelloWithoutGREASEDoesNotMatch() throws {
        var hellos = try Sample.fixtures().filter { $0.features.greasePresent }.map { ($0.name, $0.hello) }
        if let entries = try TestsslClients.load() {
            for e in entries
            where e.name.hasPrefix("Chrome") || e.name.hasPrefix("Edge 101") || e.name.hasPrefix("Opera 6") {
                hellos.append((e.name, try ClientHello.parse(bytes: e.bytes)))
            }
        }
        XCTAssertGreaterThanOrEqual(hellos.count, 3)
        for (name, h) in hellos {
            let v = strippingGREASE(h)
            XCTAssertFalse(v.features.greasePresent)
            XCTAssertEqual(decide(v), .noMatch, "\(name) without GREASE must not match")
        }
    }

    /// Negative control: the traits are jointly necessary, so breaking one structural trait of an SChannel
    /// capture must lose the match (guards against a pack that matches everything).
    func testBreakingOneStructuralTraitLosesTheMatch() throws {
        let base = try XCTUnwrap(try Sample.fixtures().first { $0.name == "schannel-wininet-win10-11-tls12" }).hello
        XCTAssertTrue(isSChannel(decide(base)))
        var scsv = base
        scsv.cipherSuites.append(0x00ff)
        var grease = base
        grease.cipherSuites.insert(0x0a0a, at: 0)
        var padding = base
        padding.extensions.insert(.init(type: 21, body: [0, 0]), at: padding.extensions.count - 1)
        var moved = base
        let reneg = moved.extensions.removeLast()
        moved.extensions.insert(reneg, at: 1)
        var ffdhe = base
        ffdhe.supportedGroups.append(256)
        var ed25519 = base
        ed25519.signatureAlgorithms.append(0x0807)
        var formats = base
        formats.ecPointFormats = [0, 1, 2]
        for (what, h) in [
            ("SCSV", scsv), ("GREASE", grease), ("padding ext", padding), ("renegotiation_info moved", moved),
            ("ffdhe group", ffdhe), ("ed25519", ed25519), ("compressed point formats", formats),
        ] {
            XCTAssertEqual(decide(h), .noMatch, what)
        }
    }
}
