import ProxyFingerprint

/// Why `Classifier.classify` could not classify its input.
public struct ClassifierError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Offline classification for `edgeproxy classify`: one ClientHello in, one JSON object out.
public enum Classifier {
    /// Classifies one ClientHello against `policies`.
    ///
    /// Input is auto-detected:
    /// * a fixture JSON file (first non-blank byte `{`) → `ClientHello(fixtureJSON:)`;
    /// * hex text (hex digits with optional whitespace, `:` or `-` separators and an optional leading `0x`);
    /// * otherwise raw binary.
    /// Bytes may be a TLS record (or several carrying one hello), a bare handshake message, or an SSLv2-compatible
    /// hello (`ClientHello.parse(bytes:)`).
    ///
    /// Output: one JSON object with keys `ja3`, `ja3_hash`, `ja4`, `ja4_r`, `ja4_o`, `features` (normalised
    /// feature set; code points as `"0x...."` strings, names alongside where useful), `policy` (name of the matched
    /// policy or null) and `actions` (effective actions; for an observe match also `mode` and `would_apply`).
    /// Throws `ClassifierError` with a readable message for malformed input.
    public static func classify(input: [UInt8], policies: CompiledPolicySet) throws -> String {
        let hello = try decodeHello(input)
        let ja3 = hello.ja3
        let ja4 = hello.ja4
        let features = hello.features
        let decision = policies.decide(
            PolicyInput(features: features, ja3: JA3Digest(hex: ja3.md5), ja4: ja4.fingerprint)
        )

        var o = JSONObject()
        o.add("ja3", .string(ja3.string))
        o.add("ja3_hash", .string(ja3.md5))
        o.add("ja4", .string(ja4.fingerprint))
        o.add("ja4_r", .string(ja4.raw))
        o.add("ja4_o", .string(ja4.original))
        o.add("features", .object(featuresJSON(features, hello: hello)))
        o.add("policy", decision.matchedName.map(JSON.string) ?? .null)
        var actions = actionsJSON(decision.effective)
        if decision.mode == .observe {
            actions.add("mode", .string("observe"))
            actions.add("would_apply", .object(actionsJSON(decision.wouldApply ?? .none)))
        }
        o.add("actions", .object(actions))
        return JSON.object(o).render()
    }

    // MARK: input

    static func decodeHello(_ input: [UInt8]) throws -> ClientHello {
        let trimmed = input.drop { isBlank($0) }
        guard let first = trimmed.first else {
            throw ClassifierError("empty input: expected a ClientHello (hex, binary or fixture JSON)")
        }
        if first == UInt8(ascii: "{") {
            do {
                return try ClientHello(fixtureJSON: input)
            } catch {
                throw ClassifierError("invalid fixture JSON: \(error)")
            }
        }
        let bytes = try hexDecodeIfText(input) ?? input
        do {
            return try ClientHello.parse(bytes: bytes)
        } catch {
            throw ClassifierError("not a ClientHello (\(bytes.count) bytes): \(error)")
        }
    }

    private static func isBlank(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d }

    /// nil when the input is not hex text (→ binary); throws when it looks like hex text but is malformed.
    static func hexDecodeIfText(_ input: [UInt8]) throws -> [UInt8]? {
        // Text = printable ASCII/whitespace only. Binary TLS starts with 0x16/0x01/0x80+, never printable.
        guard input.allSatisfy({ isBlank($0) || (0x21...0x7e).contains($0) }) else { return nil }
        var digits: [UInt8] = []
        digits.reserveCapacity(input.count)
        var i = 0
        while i < input.count {
            let c = input[i]
            if c == UInt8(ascii: "0"), i + 1 < input.count, input[i + 1] | 0x20 == UInt8(ascii: "x"), digits.isEmpty {
                i += 2
                continue
            }
            if let d = hexDigitValue(c) {
                digits.append(d)
            } else if !(isBlank(c) || c == UInt8(ascii: ":") || c == UInt8(ascii: "-")) {
                throw ClassifierError("invalid character '\(Character(Unicode.Scalar(c)))' at offset \(i) in hex input")
            }
            i += 1
        }
        guard !digits.isEmpty else { throw ClassifierError("empty hex input") }
        guard digits.count % 2 == 0 else { throw ClassifierError("odd number of hex digits (\(digits.count))") }
        return stride(from: 0, to: digits.count, by: 2).map { digits[$0] << 4 | digits[$0 + 1] }
    }

    // MARK: output

    private static func hexList(_ v: [UInt16]) -> JSON { .array(v.map { .string(hex4($0)) }) }

    private static func named(_ v: [UInt16], _ table: [String: UInt16]) -> JSON {
        .array(v.map { TLSNames.reverse(table, $0).map(JSON.string) ?? .null })
    }

    static func featuresJSON(_ f: ClientHelloFeatures, hello: ClientHello) -> JSONObject {
        var o = JSONObject()
        o.add("legacy_version", .string(hex4(f.legacyVersion)))
        o.add("record_version", hello.recordVersion.map { .string(hex4($0)) } ?? .null)
        o.add("highest_version", .string(hex4(f.highestVersion)))
        o.add("highest_version_name", .string(TLSNames.versionName(f.highestVersion)))
        o.add("supported_versions", hexList(f.supportedVersions))
        o.add("cipher_suites", hexList(f.cipherSuites))
        o.add("extensions", hexList(f.extensions))
        o.add("extension_names", named(f.extensions, TLSNames.extensions))
        o.add("supported_groups", hexList(f.supportedGroups))
        o.add("supported_group_names", named(f.supportedGroups, TLSNames.groups))
        o.add("ec_point_formats", .array(f.ecPointFormats.map { .string(hex2($0)) }))
        o.add("signature_algorithms", hexList(f.signatureAlgorithms))
        o.add("signature_algorithm_names", named(f.signatureAlgorithms, TLSNames.signatureSchemes))
        o.add("alpn", .array(f.alpn.map(JSON.string)))
        o.add("key_share_groups", hexList(f.keyShareGroups))
        o.add("sni", hello.serverName.map(JSON.string) ?? .null)
        o.add("sni_present", .bool(f.sniPresent))
        o.add("grease", .bool(f.greasePresent))
        o.add("renegotiation_scsv", .bool(f.renegotiationSCSVPresent))
        o.add("fallback_scsv", .bool(f.fallbackSCSVPresent))
        o.add("session_ticket_ext", .bool(f.sessionTicketExtPresent))
        o.add("extended_master_secret_ext", .bool(f.extendedMasterSecretExtPresent))
        o.add("renegotiation_info_ext", .bool(f.renegotiationInfoExtPresent))
        o.add("session_id_length", .int(f.sessionIDLength))
        o.add("compression_methods", .array(f.compressionMethods.map { .string(hex2($0)) }))
        o.add("sslv2_compatible", .bool(hello.isSSLv2Compatible))
        return o
    }

    static func actionsJSON(_ a: PolicyActions) -> JSONObject {
        var o = JSONObject()
        if let s = a.staleTicket { o.add("stale_ticket", .string(s.rawValue)) }
        if let t = a.ticketsEnabled { o.add("tickets", .string(t ? "on" : "off")) }
        if let c = a.sessionCacheEnabled { o.add("session_cache", .string(c ? "on" : "off")) }
        if let n = a.tls13Tickets { o.add("tls13_tickets", .int(n)) }
        if let t = a.tag { o.add("tag", .string(t)) }
        return o
    }
}

/// Minimal ordered JSON writer (keys keep insertion order so output is stable for diffs and tests).
enum JSON {
    case string(String)
    case int(Int)
    case bool(Bool)
    case null
    case array([JSON])
    case object(JSONObject)

    func render() -> String {
        var out = ""
        write(into: &out)
        return out
    }

    func write(into out: inout String) {
        switch self {
        case .string(let s): JSON.quote(s, into: &out)
        case .int(let n): out += String(n)
        case .bool(let b): out += b ? "true" : "false"
        case .null: out += "null"
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                v.write(into: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, (k, v)) in o.pairs.enumerated() {
                if i > 0 { out += "," }
                JSON.quote(k, into: &out)
                out += ":"
                v.write(into: &out)
            }
            out += "}"
        }
    }

    static func quote(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let h = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            default: out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }
}

struct JSONObject {
    var pairs: [(String, JSON)] = []
    mutating func add(_ k: String, _ v: JSON) { pairs.append((k, v)) }
}
