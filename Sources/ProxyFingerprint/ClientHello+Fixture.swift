// Internal imports: Foundation is an implementation detail of this non-hot-path builder, not part of the API.
#if canImport(FoundationEssentials)
internal import FoundationEssentials
#else
internal import Foundation
#endif

/// Why a fixture file could not be turned into a ClientHello.
public enum ClientHelloFixtureError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidJSON(String)
    case missingField(String)
    case invalidValue(field: String, value: String)

    public var description: String {
        switch self {
        case .invalidJSON(let why): return "fixture: invalid JSON: \(why)"
        case .missingField(let f): return "fixture: missing field \(f)"
        case .invalidValue(let f, let v): return "fixture: invalid value \(v) for \(f)"
        }
    }
}

extension ClientHello {
    /// Builds a hello from a fixture file (`Tests/Fixtures/clienthellos/*.json`, README there; also what
    /// `edgeproxy classify` reads). Not a hot path.
    ///
    /// With `raw_hex` (or only `raw_record_hex`) the exact capture is parsed. Otherwise the hello is rebuilt from
    /// the fields: cipher suites and extensions in wire order, bodies synthesised for server_name, supported_groups,
    /// ec_point_formats, signature_algorithms, ALPN, supported_versions, key_share, psk_key_exchange_modes and
    /// status_request; other extensions, and decoded ones whose values the fixture does not record (null), get an
    /// empty body or empty list. A fixture without `extensions` uses `extensions_implied_set` (not wire order).
    /// The rebuilt hello is serialised and re-parsed, so it is exactly what a client sending it would produce.
    ///
    /// Throws `ClientHelloFixtureError` or `ClientHelloParseError`.
    public init(fixtureJSON: [UInt8]) throws {
        let f: Fixture
        do {
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            f = try decoder.decode(Fixture.self, from: Data(fixtureJSON))
        } catch {
            throw ClientHelloFixtureError.invalidJSON(String(describing: error))
        }
        let recordVersion = try f.recordVersion.map { try Self.fixtureHex16($0, "record_version") }
        if let raw = f.rawHex {
            self = try Self.parse(handshake: try Self.fixtureHexBytes(raw, "raw_hex"))
            if let recordVersion { self.recordVersion = recordVersion }
            return
        }
        if let raw = f.rawRecordHex {
            self = try Self.parse(records: try Self.fixtureHexBytes(raw, "raw_record_hex"))
            return
        }
        guard let legacy = f.legacyVersion else { throw ClientHelloFixtureError.missingField("legacy_version") }
        guard let suites = f.cipherSuites else { throw ClientHelloFixtureError.missingField("cipher_suites") }

        var extensions: [Extension] = []
        for type in f.extensions ?? f.extensionsImpliedSet ?? [] {
            guard let t = UInt16(exactly: type.value) else {
                throw ClientHelloFixtureError.invalidValue(field: "extensions", value: String(type.value))
            }
            switch t {
            case 0: extensions.append(f.sni.map { .serverName($0) } ?? Extension(type: 0, body: []))
            case 10:
                extensions.append(.supportedGroups(try Self.fixtureU16s(f.supportedGroups ?? [], "supported_groups")))
            case 11:
                let formats = try (f.ecPointFormats ?? []).map { n in
                    guard let b = UInt8(exactly: n.value) else {
                        throw ClientHelloFixtureError.invalidValue(field: "ec_point_formats", value: String(n.value))
                    }
                    return b
                }
                extensions.append(.ecPointFormats(formats))
            case 13:
                extensions.append(
                    .signatureAlgorithms(try Self.fixtureU16s(f.signatureAlgorithms ?? [], "signature_algorithms"))
                )
            case 16: extensions.append(.alpn(f.alpn ?? []))
            case 43:
                extensions.append(
                    .supportedVersions(try Self.fixtureU16s(f.supportedVersions ?? [], "supported_versions"))
                )
            case 51:
                extensions.append(.keyShare(groups: try Self.fixtureU16s(f.keyShareGroups ?? [], "key_share_groups")))
            case 45:
                let modes = (f.pskKeyExchangeModes ?? []).map { UInt8(truncatingIfNeeded: $0.value) }
                extensions.append(Extension(type: 45, body: [UInt8(modes.count)] + modes))
            case 5:
                let body = try f.statusRequestData.map { try Self.fixtureHexBytes($0, "status_request_data") } ?? []
                extensions.append(Extension(type: 5, body: body))
            default:
                extensions.append(Extension(type: t, body: []))
            }
        }
        let built = ClientHello(
            legacyVersion: try Self.fixtureHex16(legacy, "legacy_version"),
            sessionIDLength: f.sessionIdLen ?? 0,
            cipherSuites: try Self.fixtureU16s(suites, "cipher_suites"),
            compressionMethods: (f.compressionMethods ?? [0]).map { UInt8(truncatingIfNeeded: $0) },
            extensions: extensions
        )
        self = try Self.parse(handshake: built.serialize())
        self.recordVersion = recordVersion
    }

    private static func fixtureHex16(_ s: String, _ field: String) throws -> UInt16 {
        let digits = s.hasPrefix("0x") || s.hasPrefix("0X") ? s.dropFirst(2) : Substring(s)
        guard let v = UInt16(digits, radix: 16) else {
            throw ClientHelloFixtureError.invalidValue(field: field, value: s)
        }
        return v
    }

    private static func fixtureU16s(_ values: [FixtureNumber], _ field: String) throws -> [UInt16] {
        try values.map { n in
            guard let v = UInt16(exactly: n.value) else {
                throw ClientHelloFixtureError.invalidValue(field: field, value: String(n.value))
            }
            return v
        }
    }

    static func fixtureHexBytes(_ s: String, _ field: String) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count / 2)
        var high: UInt8? = nil
        for c in s.utf8 {
            let v: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v = c - UInt8(ascii: "A") + 10
            case UInt8(ascii: " "), UInt8(ascii: ":"), UInt8(ascii: "\n"): continue
            default: throw ClientHelloFixtureError.invalidValue(field: field, value: String(s.prefix(40)))
            }
            if let h = high {
                out.append(h << 4 | v)
                high = nil
            } else {
                high = v
            }
        }
        guard high == nil else {
            throw ClientHelloFixtureError.invalidValue(field: field, value: "odd number of hex digits")
        }
        return out
    }
}

/// A JSON number or a `"0x...."` hex string (fixtures use both for 16-bit code points).
private struct FixtureNumber: Decodable {
    var value: Int

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let i = try? c.decode(Int.self) {
            value = i
            return
        }
        let s = try c.decode(String.self)
        let digits = s.hasPrefix("0x") || s.hasPrefix("0X") ? s.dropFirst(2) : Substring(s)
        guard let v = Int(digits, radix: 16) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "not a number or hex string: \(s)")
        }
        value = v
    }
}

/// The fixture fields the builder reads (snake_case in the files).
private struct Fixture: Decodable {
    var legacyVersion: String?
    var recordVersion: String?
    var supportedVersions: [FixtureNumber]?
    var cipherSuites: [FixtureNumber]?
    var extensions: [FixtureNumber]?
    var extensionsImpliedSet: [FixtureNumber]?
    var supportedGroups: [FixtureNumber]?
    var ecPointFormats: [FixtureNumber]?
    var signatureAlgorithms: [FixtureNumber]?
    var alpn: [String]?
    var sni: String?
    var sessionIdLen: Int?
    var compressionMethods: [Int]?
    var keyShareGroups: [FixtureNumber]?
    var pskKeyExchangeModes: [FixtureNumber]?
    var statusRequestData: String?
    var rawHex: String?
    var rawRecordHex: String?
}
