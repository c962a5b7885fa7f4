import Foundation
import XCTest

@testable import ProxyFingerprint
@testable import ProxyPolicy

/// Paths located from this file so `swift test` works from any directory.
enum TestPaths {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let fixtures = repo.appendingPathComponent("Tests/Fixtures/clienthellos")
    static let policies = repo.appendingPathComponent("policies")
    static let testsslClients = "/etc/testssl/client-simulation.txt"
}

/// A ClientHello sample with ground truth and, for incomplete fixtures, the fields it does not know.
struct Sample {
    var name: String
    var schannel: Bool
    var hello: ClientHello
    /// Fields the source did not record (fixtures derived from fingerprint DBs or capture-tool output).
    var unknown: Set<FeatureField>

    var features: ClientHelloFeatures { hello.features }

    func input(for set: CompiledPolicySet) -> PolicyInput {
        PolicyInput(
            features: hello.features,
            ja3: set.needsJA3 ? JA3Digest(hex: hello.ja3.md5) : nil,
            ja4: set.needsJA4 ? hello.ja4.fingerprint : nil
        )
    }

    /// Every ClientHello fixture (not the msdocs cipher-order file).
    static func fixtures() throws -> [Sample] {
        let names = try FileManager.default.contentsOfDirectory(atPath: TestPaths.fixtures.path)
            .filter { $0.hasSuffix(".json") }.sorted()
        var out: [Sample] = []
        for n in names {
            let data = try Data(contentsOf: TestPaths.fixtures.appendingPathComponent(n))
            let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any], n)
            guard json["cipher_suites"] != nil else { continue }
            let hello = try ClientHello(fixtureJSON: [UInt8](data))
            var unknown = Set<FeatureField>()
            if json["raw_hex"] is NSNull && json["raw_record_hex"] is NSNull {
                if json["extensions"] is NSNull { unknown.insert(.extensionOrder) }
                if json["signature_algorithms"] is NSNull { unknown.insert(.signatureAlgorithms) }
                if json["grease"] is NSNull { unknown.insert(.grease) }
                if json["ec_point_formats"] is NSNull { unknown.insert(.pointFormats) }
                if json["alpn"] is NSNull { unknown.insert(.alpn) }
                // JA3/JA4 of a rebuilt hello are only as good as its fields.
                unknown.formUnion([.ja3, .ja4])
            }
            out.append(
                Sample(
                    name: String(n.dropLast(5)),
                    schannel: try XCTUnwrap(json["schannel"] as? Bool, n),
                    hello: hello,
                    unknown: unknown
                )
            )
        }
        return out
    }
}

/// testssl.sh's client simulation data: SSL Labs captures of real ClientHellos, one entry per client.
enum TestsslClients {
    struct Entry {
        var name: String
        var bytes: [UInt8]
    }

    /// nil when testssl.sh is not installed (CI installs it: `apt-get install testssl.sh`).
    static func load() throws -> [Entry]? {
        guard let text = try? String(contentsOfFile: TestPaths.testsslClients, encoding: .utf8) else { return nil }
        var names: [String] = []
        var hexes: [String] = []
        for line in text.split(separator: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            if let v = value(t, "names+=(\"") { names.append(v) }
            if let v = value(t, "handshakebytes+=(\"") { hexes.append(v) }
        }
        XCTAssertEqual(names.count, hexes.count, "names/handshakebytes out of step")
        return try zip(names, hexes).map { Entry(name: $0, bytes: try hexBytes($1)) }
    }

    private static func value(_ line: String, _ prefix: String) -> String? {
        guard line.hasPrefix(prefix), let end = line.lastIndex(of: "\"") else { return nil }
        let start = line.index(line.startIndex, offsetBy: prefix.count)
        return start <= end ? String(line[start..<end]) : nil
    }

    /// Ground truth for testssl entries. SChannel: Internet Explorer 7-11 and legacy (EdgeHTML) Edge 12-18 on any
    /// Windows; plus BingBot Dec 2013, whose cipher list is byte-identical to IE 9 on Windows 7 and whose
    /// renegotiation_info comes first like IE 8-10 (Microsoft's crawler on SChannel). Chromium Edge (79+) is not.
    static func isSChannel(_ name: String) -> Bool {
        if name.hasPrefix("IE ") { return true }
        if name.hasPrefix("Edge "), let v = Int(name.dropFirst(5).prefix { $0.isNumber }) { return v < 79 }
        return name == "BingBot Dec 2013"
    }

    /// Entries whose bytes are an SSLv2-compatible CLIENT-HELLO (first byte 0x80): no extensions possible.
    static let sslv2Format: Set<String> = ["IE 6 XP", "Java 6u45"]
}

func hexBytes(_ s: some StringProtocol) throws -> [UInt8] {
    let u = Array(s.utf8)
    guard u.count % 2 == 0 else { throw NSError(domain: "hex", code: 1) }
    return try stride(from: 0, to: u.count, by: 2).map { i in
        guard let h = hexDigitValue(u[i]), let l = hexDigitValue(u[i + 1]) else {
            throw NSError(domain: "hex", code: 2)
        }
        return h << 4 | l
    }
}

/// Loads the shipped policies/ directory.
func loadShippedPolicies() throws -> PolicyLoadResult {
    try PolicyLoader.load(directory: TestPaths.policies.path, generation: 1)
}

/// Loads one in-memory policy file.
func loadPolicies(_ text: String, file: String = "test.toml", strict: Bool = false) throws -> PolicyLoadResult {
    try PolicyLoader.load(files: [(file, text)], generation: 7, options: .init(strict: strict))
}

/// The error thrown when loading `text` (fails the test if loading succeeds).
func loadError(_ text: String, file: String = "test.toml", line: UInt = #line) -> PolicyLoadError? {
    do {
        _ = try loadPolicies(text, file: file)
        XCTFail("expected a load error", line: line)
        return nil
    } catch let e as PolicyLoadError {
        return e
    } catch {
        XCTFail("unexpected error \(error)", line: line)
        return nil
    }
}

/// Features for hand-written tests: a plain TLS 1.2 hello unless overridden.
func makeFeatures(
    legacy: UInt16 = 0x0303,
    versions: [UInt16] = [],
    ciphers: [UInt16] = [0xc02f, 0x002f],
    extensions: [UInt16] = [0, 10, 11, 13],
    groups: [UInt16] = [29, 23],
    pointFormats: [UInt8] = [0],
    sigalgs: [UInt16] = [0x0401, 0x0403],
    alpn: [String] = [],
    grease: Bool = false
) -> ClientHelloFeatures {
    ClientHelloFeatures(
        legacyVersion: legacy,
        supportedVersions: versions,
        highestVersion: versions.max() ?? legacy,
        cipherSuites: ciphers,
        extensions: extensions,
        supportedGroups: groups,
        ecPointFormats: pointFormats,
        signatureAlgorithms: sigalgs,
        alpn: alpn,
        keyShareGroups: [],
        sniPresent: extensions.contains(0),
        greasePresent: grease,
        renegotiationSCSVPresent: ciphers.contains(0x00ff),
        fallbackSCSVPresent: ciphers.contains(0x5600),
        sessionTicketExtPresent: extensions.contains(35),
        extendedMasterSecretExtPresent: extensions.contains(23),
        renegotiationInfoExtPresent: extensions.contains(0xff01),
        sessionIDLength: 0,
        compressionMethods: [0]
    )
}

/// A hello with the given GREASE-free lists removed of GREASE (for "Chrome without GREASE" checks).
func strippingGREASE(_ h: ClientHello) -> ClientHello {
    var h = h
    h.cipherSuites.removeAll(where: ClientHello.isGREASE)
    h.extensions.removeAll { ClientHello.isGREASE($0.type) }
    h.supportedGroups.removeAll(where: ClientHello.isGREASE)
    h.supportedVersions?.removeAll(where: ClientHello.isGREASE)
    h.keyShareGroups.removeAll(where: ClientHello.isGREASE)
    h.signatureAlgorithms.removeAll(where: ClientHello.isGREASE)
    return h
}
