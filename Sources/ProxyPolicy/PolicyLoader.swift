import Foundation
import ProxyCore
import ProxyTOMLSupport
import TOMLKit

/// Loads policy files (TOML; format in policies/README.md) into a `CompiledPolicySet`.
///
/// Errors (reject the whole load, thrown as `PolicyLoadError`): TOML syntax, unknown keys, wrong types, bad or
/// unknown values, invalid hex, missing required keys, duplicate policy names.
/// Warnings (returned in `PolicyLoadResult.warnings`; errors when `Options.strict`): conflicts between
/// same-priority enforce policies, matchers that can never match, policies shadowed by a higher-priority one.
/// The analysis behind the warnings is a documented heuristic (see `PolicyAnalysis`).
public enum PolicyLoader {
    public struct Options: Sendable {
        /// Treat warnings as errors.
        public var strict: Bool
        public init(strict: Bool = false) { self.strict = strict }
    }

    /// Loads every `*.toml` file in `directory` (sorted by file name; non-recursive).
    public static func load(
        directory: String,
        generation: UInt64,
        options: Options = Options()
    ) throws
        -> PolicyLoadResult
    {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".toml") }
                .sorted()
        } catch {
            throw PolicyLoadError(diagnostics: [
                PolicyDiagnostic(
                    severity: .error,
                    kind: .io,
                    location: SourceLocation(file: directory, line: 0, column: 0),
                    message: "cannot list policy directory: \(error)"
                )
            ])
        }
        var files: [(path: String, contents: String)] = []
        var diags: [PolicyDiagnostic] = []
        for n in names {
            let path = directory.hasSuffix("/") ? directory + n : directory + "/" + n
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
            else {
                diags.append(
                    PolicyDiagnostic(
                        severity: .error,
                        kind: .io,
                        location: SourceLocation(file: path, line: 0, column: 0),
                        message: "cannot read file as UTF-8"
                    )
                )
                continue
            }
            files.append((path, text))
        }
        if !diags.isEmpty { throw PolicyLoadError(diagnostics: diags) }
        return try load(files: files, generation: generation, options: options)
    }

    /// Loads policies from in-memory files; `path` is used only in diagnostics. Files are read in the given order.
    public static func load(
        files: [(path: String, contents: String)],
        generation: UInt64,
        options: Options = Options()
    ) throws -> PolicyLoadResult {
        var policies: [CompiledPolicy] = []
        var diags: [PolicyDiagnostic] = []
        for f in files {
            var reader = FileReader(file: f.path, source: f.contents)
            policies += reader.read()
            diags += reader.diagnostics
        }
        // Duplicate names across all files.
        var seen: [String: SourceLocation] = [:]
        for p in policies {
            if let first = seen[p.name] {
                diags.append(
                    PolicyDiagnostic(
                        severity: .error,
                        kind: .duplicateName,
                        location: p.origin,
                        message: "duplicate policy name '\(p.name)' (first defined at \(first))"
                    )
                )
            } else {
                seen[p.name] = p.origin
            }
        }
        let errors = diags.filter { $0.severity == .error }
        if !errors.isEmpty { throw PolicyLoadError(diagnostics: errors) }

        let set = CompiledPolicySet(generation: generation, policies: policies)
        var warnings = PolicyAnalysis.analyse(set)
        if options.strict && !warnings.isEmpty {
            for i in warnings.indices { warnings[i].severity = .error }
            throw PolicyLoadError(diagnostics: warnings)
        }
        return PolicyLoadResult(set: set, warnings: warnings)
    }
}

/// Reads one file: TOML → validated `CompiledPolicy` values, with located diagnostics.
struct FileReader {
    let file: String
    let source: String
    var diagnostics: [PolicyDiagnostic] = []
    private var locator: TOMLKeyLocator?

    init(file: String, source: String) {
        self.file = file
        self.source = source
    }

    mutating func read() -> [CompiledPolicy] {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: source)
        } catch let e as TOMLParseError {
            diagnostics.append(
                PolicyDiagnostic(
                    severity: .error,
                    kind: .syntax,
                    location: SourceLocation(file: file, line: e.source.begin.line, column: e.source.begin.column),
                    message: "TOML syntax error: \(e.description)"
                )
            )
            return []
        } catch {
            diagnostics.append(
                PolicyDiagnostic(
                    severity: .error,
                    kind: .syntax,
                    location: SourceLocation(file: file, line: 1, column: 1),
                    message: "TOML error: \(error)"
                )
            )
            return []
        }
        locator = TOMLKeyLocator(text: source)
        var out: [CompiledPolicy] = []
        for key in orderedKeys(root, path: []) where key != "policy" {
            error(.unknownKey, at: [key], key: true, "unknown top-level key '\(key)' (expected [[policy]] tables)")
        }
        guard let pv = root["policy"] else {
            return []  // An empty file is allowed (e.g. everything commented out).
        }
        guard let arr = pv.array, arr.allSatisfy({ $0.type == .table }) else {
            error(.wrongType, at: ["policy"], "'policy' must be an array of tables: write [[policy]]")
            return []
        }
        let policyPath: TOMLPath = ["policy"]
        for (i, v) in arr.enumerated() {
            if let p = readPolicy(v.table!, path: policyPath.appending(index: i)) { out.append(p) }
        }
        return out
    }

    // MARK: helpers

    /// Where to point for `path`: with `key`, at the header that declares it or else its key (unknown and missing
    /// keys, policy origins); otherwise at its value (bad values, array elements). Either way falls back to the
    /// nearest written ancestor's value or key.
    private func loc(_ path: TOMLPath, key: Bool = false) -> SourceLocation {
        let p = position(path, key: key)
        return SourceLocation(file: file, line: p.line, column: p.column)
    }

    private func position(_ path: TOMLPath, key: Bool) -> TOMLKeyLocator.Position {
        guard let l = locator else { return .init(line: 1, column: 1) }
        if key, let p = l.position(of: path, at: .header) ?? l.position(of: path, at: .key) { return p }
        return l.nearestPosition(of: path, preferring: [.value, .key])
    }

    private mutating func error(_ kind: PolicyDiagnostic.Kind, at path: TOMLPath, key: Bool = false, _ msg: String) {
        diagnostics.append(PolicyDiagnostic(severity: .error, kind: kind, location: loc(path, key: key), message: msg))
    }

    /// Keys in source order (TOMLKit returns them sorted), so diagnostics come out in reading order.
    private func orderedKeys(_ t: TOMLTable, path: TOMLPath) -> [String] {
        t.keys.sorted { a, b in
            let pa = position(path.appending(a), key: true)
            let pb = position(path.appending(b), key: true)
            return (pa.line, pa.column, a) < (pb.line, pb.column, b)
        }
    }

    private static func typeName(_ v: TOMLValueConvertible) -> String {
        switch v.type {
        case .table: return "table"
        case .array: return "array"
        case .string: return "string"
        case .int: return "integer"
        case .double: return "float"
        case .bool: return "boolean"
        default: return "date/time"
        }
    }

    private mutating func string(_ v: TOMLValueConvertible, _ path: TOMLPath, _ what: String) -> String? {
        guard let s = v.string else {
            error(.wrongType, at: path, "\(what) must be a string, found \(Self.typeName(v))")
            return nil
        }
        return s
    }

    private mutating func enumValue<E: RawRepresentable & CaseIterable>(
        _ v: TOMLValueConvertible,
        _ path: TOMLPath,
        _ what: String,
        _: E.Type
    ) -> E? where E.RawValue == String {
        guard let s = string(v, path, what) else { return nil }
        guard let e = E(rawValue: s) else {
            let allowed = E.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            error(.badValue, at: path, "invalid value \"\(s)\" for \(what); expected one of \(allowed)")
            return nil
        }
        return e
    }

    // MARK: policy

    private mutating func readPolicy(_ t: TOMLTable, path: TOMLPath) -> CompiledPolicy? {
        let before = diagnostics.count
        var name: String?
        var description = ""
        var priority: Int?
        var mode: PolicyMode?
        var matcher: Matcher?
        var actions: PolicyActions?
        for key in orderedKeys(t, path: path) {
            let v = t[key]!
            let kp = path.appending(key)
            switch key {
            case "name":
                if let s = string(v, kp, "'name'") {
                    if s.isEmpty { error(.badValue, at: kp, "'name' must not be empty") } else { name = s }
                }
            case "description":
                if let s = string(v, kp, "'description'") { description = s }
            case "priority":
                if let n = v.int {
                    priority = n
                } else {
                    error(.wrongType, at: kp, "'priority' must be an integer, found \(Self.typeName(v))")
                }
            case "mode":
                mode = enumValue(v, kp, "'mode'", PolicyMode.self)
            case "match":
                if let mt = v.table {
                    matcher = readMatcher(mt, path: kp)
                } else {
                    error(.wrongType, at: kp, "'match' must be a table, found \(Self.typeName(v))")
                }
            case "actions":
                if let at = v.table {
                    actions = readActions(at, path: kp)
                } else {
                    error(.wrongType, at: kp, "'actions' must be a table, found \(Self.typeName(v))")
                }
            default:
                error(
                    .unknownKey,
                    at: kp,
                    key: true,
                    "unknown policy key '\(key)' (expected name, description, priority, mode, match, actions)"
                )
            }
        }
        for (k, present) in [
            ("name", t["name"] != nil), ("priority", t["priority"] != nil), ("mode", t["mode"] != nil),
            ("match", t["match"] != nil), ("actions", t["actions"] != nil),
        ] where !present {
            error(.missingKey, at: path, key: true, "policy is missing required key '\(k)'")
        }
        guard diagnostics.count == before, let name, let priority, let mode, let matcher, let actions else {
            return nil
        }
        return CompiledPolicy(
            name: name,
            description: description,
            priority: priority,
            mode: mode,
            matcher: matcher,
            actions: actions,
            origin: loc(path, key: true)
        )
    }

    private mutating func readActions(_ t: TOMLTable, path: TOMLPath) -> PolicyActions {
        var a = PolicyActions()
        for key in orderedKeys(t, path: path) {
            let v = t[key]!
            let kp = path.appending(key)
            switch key {
            case "stale_ticket":
                a.staleTicket = enumValue(v, kp, "'stale_ticket'", StaleTicketAction.self)
            case "tickets":
                switch string(v, kp, "'tickets'") {
                case "on": a.ticketsEnabled = true
                case "off": a.ticketsEnabled = false
                case let s?:
                    error(.badValue, at: kp, "invalid value \"\(s)\" for 'tickets'; expected \"on\" or \"off\"")
                case nil: break
                }
            case "session_cache":
                switch string(v, kp, "'session_cache'") {
                case "on": a.sessionCacheEnabled = true
                case "off": a.sessionCacheEnabled = false
                case let s?:
                    error(.badValue, at: kp, "invalid value \"\(s)\" for 'session_cache'; expected \"on\" or \"off\"")
                case nil: break
                }
            case "tls13_tickets":
                if let n = v.int {
                    if (0...16).contains(n) {
                        a.tls13Tickets = n
                    } else {
                        error(.badValue, at: kp, "'tls13_tickets' must be between 0 and 16, found \(n)")
                    }
                } else {
                    error(.wrongType, at: kp, "'tls13_tickets' must be an integer, found \(Self.typeName(v))")
                }
            case "tag":
                if let s = string(v, kp, "'tag'") {
                    if s.isEmpty { error(.badValue, at: kp, "'tag' must not be empty") } else { a.tag = s }
                }
            default:
                error(
                    .unknownKey,
                    at: kp,
                    key: true,
                    "unknown action '\(key)' (expected stale_ticket, tickets, session_cache, tls13_tickets, tag)"
                )
            }
        }
        return a
    }

    // MARK: matcher

    /// A matcher table: every key is a predicate (or all/any/not); the table matches when all of them do.
    private mutating func readMatcher(_ t: TOMLTable, path: TOMLPath) -> Matcher {
        var parts: [Matcher] = []
        for key in orderedKeys(t, path: path) {
            if let m = readMatcherKey(key, t[key]!, path: path.appending(key)) { parts.append(m) }
        }
        return parts.count == 1 ? parts[0] : .all(parts)
    }

    private mutating func matcherList(_ v: TOMLValueConvertible, _ path: TOMLPath, _ key: String) -> [Matcher]? {
        guard let arr = v.array, arr.allSatisfy({ $0.type == .table }) else {
            error(
                .wrongType,
                at: path,
                "'\(key)' must be an array of matcher tables ([[...\(key)]] or [{...}, {...}]), found \(Self.typeName(v))"
            )
            return nil
        }
        return arr.enumerated().map { readMatcher($0.element.table!, path: path.appending(index: $0.offset)) }
    }

    private mutating func readMatcherKey(_ key: String, _ v: TOMLValueConvertible, path: TOMLPath) -> Matcher? {
        func leaf(_ p: MatchPredicate?) -> Matcher? { p.map(Matcher.leaf) }
        switch key {
        case "all": return matcherList(v, path, key).map(Matcher.all)
        case "any": return matcherList(v, path, key).map(Matcher.any)
        case "not":
            guard let t = v.table else {
                error(.wrongType, at: path, "'not' must be a matcher table, found \(Self.typeName(v))")
                return nil
            }
            return .not(readMatcher(t, path: path))
        case "ja3":
            guard let strs = stringList(v, path, key, nonEmpty: true) else { return nil }
            var set = Set<JA3Digest>()
            for (i, s) in strs.enumerated() {
                if let d = JA3Digest(hex: s) {
                    set.insert(d)
                } else {
                    error(.badValue, at: path.appending(index: i), "invalid JA3 hash \"\(s)\": expected 32 hex digits")
                }
            }
            return .leaf(.ja3(set))
        case "ja4":
            guard let strs = stringList(v, path, key, nonEmpty: true) else { return nil }
            var pats: [JA4Pattern] = []
            for (i, s) in strs.enumerated() {
                if let p = JA4Pattern(s) {
                    pats.append(p)
                } else {
                    error(
                        .badValue,
                        at: path.appending(index: i),
                        "invalid JA4 pattern \"\(s)\": expected three '_'-separated sections of [0-9a-z], '*' or '?'"
                    )
                }
            }
            return .leaf(.ja4(pats))
        case "highest_version", "highest_version_min", "highest_version_max", "legacy_version", "legacy_version_min",
            "legacy_version_max":
            guard let ver = version(v, path, key) else { return nil }
            let cmp: VersionComparison = key.hasSuffix("_min") ? .atLeast : key.hasSuffix("_max") ? .atMost : .equal
            return .leaf(key.hasPrefix("highest") ? .highestVersion(cmp, ver) : .legacyVersion(cmp, ver))
        case "ciphers_prefix": return leaf(codes(v, path, key, .cipher).map { .ciphersPrefix($0) })
        case "ciphers_contain_all": return leaf(codes(v, path, key, .cipher).map { .ciphersContainAll(U16Set($0)) })
        case "ciphers_contain_any":
            return leaf(codes(v, path, key, .cipher, nonEmpty: true).map { .ciphersContainAny(U16Set($0)) })
        case "cipher_set": return leaf(codes(v, path, key, .cipher).map { .cipherSetEqual(U16Set($0)) })
        case "ciphers_subset_of": return leaf(codes(v, path, key, .cipher).map { .ciphersSubsetOf(U16Set($0)) })
        case "first_cipher_in":
            return leaf(codes(v, path, key, .cipher, nonEmpty: true).map { .firstCipherIn(U16Set($0)) })
        case "extensions": return leaf(codes(v, path, key, .ext).map { .extensionsEqual($0) })
        case "extensions_subsequence": return leaf(codes(v, path, key, .ext).map { .extensionsSubsequence($0) })
        case "extensions_prefix": return leaf(codes(v, path, key, .ext).map { .extensionsPrefix($0) })
        case "extensions_suffix": return leaf(codes(v, path, key, .ext).map { .extensionsSuffix($0) })
        case "extensions_present": return leaf(codes(v, path, key, .ext).map { .extensionsPresent(U16Set($0)) })
        case "extensions_absent": return leaf(codes(v, path, key, .ext).map { .extensionsAbsent(U16Set($0)) })
        case "extensions_subset_of": return leaf(codes(v, path, key, .ext).map { .extensionsSubsetOf(U16Set($0)) })
        case "groups": return leaf(codes(v, path, key, .group).map { .groupSetEqual(U16Set($0)) })
        case "groups_contain": return leaf(codes(v, path, key, .group).map { .groupsContainAll(U16Set($0)) })
        case "groups_subset_of": return leaf(codes(v, path, key, .group).map { .groupsSubsetOf(U16Set($0)) })
        case "point_formats":
            guard let c = codes(v, path, key, .pointFormat) else { return nil }
            return .leaf(.pointFormatsEqual(c.map { UInt8($0) }))
        case "sigalgs_prefix": return leaf(codes(v, path, key, .sigalg).map { .sigalgsPrefix($0) })
        case "sigalgs_contain": return leaf(codes(v, path, key, .sigalg).map { .sigalgsContainAll(U16Set($0)) })
        case "sigalgs_subset_of": return leaf(codes(v, path, key, .sigalg).map { .sigalgsSubsetOf(U16Set($0)) })
        case "alpn_equals":
            return leaf(stringList(v, path, key, nonEmpty: false).map { .alpnEqual($0.map { Array($0.utf8) }) })
        case "alpn_contains":
            return leaf(stringList(v, path, key, nonEmpty: true).map { .alpnContainsAll($0.map { Array($0.utf8) }) })
        default:
            if let flag = FeatureFlag(rawValue: key) {
                switch string(v, path, "'\(key)'") {
                case "present": return .leaf(.flag(flag, true))
                case "absent": return .leaf(.flag(flag, false))
                case let s?:
                    error(
                        .badValue,
                        at: path,
                        "invalid value \"\(s)\" for '\(key)'; expected \"present\" or \"absent\""
                    )
                    return nil
                case nil: return nil
                }
            }
            error(.unknownKey, at: path, key: true, "unknown matcher key '\(key)'")
            return nil
        }
    }

    private mutating func stringList(
        _ v: TOMLValueConvertible,
        _ path: TOMLPath,
        _ key: String,
        nonEmpty: Bool
    )
        -> [String]?
    {
        guard let arr = v.array else {
            error(.wrongType, at: path, "'\(key)' must be an array of strings, found \(Self.typeName(v))")
            return nil
        }
        if nonEmpty && arr.isEmpty {
            error(.badValue, at: path, "'\(key)' must not be empty (it could never match)")
            return nil
        }
        var out: [String] = []
        for (i, e) in arr.enumerated() {
            guard let s = e.string else {
                error(
                    .wrongType,
                    at: path.appending(index: i),
                    "elements of '\(key)' must be strings, found \(Self.typeName(e))"
                )
                return nil
            }
            out.append(s)
        }
        return out
    }

    private mutating func version(_ v: TOMLValueConvertible, _ path: TOMLPath, _ key: String) -> UInt16? {
        guard let s = v.string else {
            error(.wrongType, at: path, "'\(key)' must be a version string like \"1.2\", found \(Self.typeName(v))")
            return nil
        }
        if let ver = TLSNames.versions[s] { return ver }
        if s.hasPrefix("0x"), let n = parseHex(s), (0x0300...0x03ff).contains(n) { return n }
        error(
            .badValue,
            at: path,
            "invalid version \"\(s)\" for '\(key)'; expected \"ssl3\", \"1.0\" ... \"1.3\" or hex like \"0x0303\""
        )
        return nil
    }

    enum CodeKind: String {
        case cipher = "cipher suite"
        case ext = "extension"
        case group = "group"
        case sigalg = "signature scheme"
        case pointFormat = "point format"

        var names: [String: UInt16] {
            switch self {
            case .cipher: return TLSNames.ciphers
            case .ext: return TLSNames.extensions
            case .group: return TLSNames.groups
            case .sigalg: return TLSNames.signatureSchemes
            case .pointFormat:
                return ["uncompressed": 0, "ansiX962_compressed_prime": 1, "ansiX962_compressed_char2": 2]
            }
        }
        var max: Int { self == .pointFormat ? 0xff : 0xffff }
    }

    /// A list of code points: integers, hex strings ("0xc02c") or IANA names.
    private mutating func codes(
        _ v: TOMLValueConvertible,
        _ path: TOMLPath,
        _ key: String,
        _ kind: CodeKind,
        nonEmpty: Bool = false
    ) -> [UInt16]? {
        guard let arr = v.array else {
            error(
                .wrongType,
                at: path,
                "'\(key)' must be an array of \(kind.rawValue)s (hex strings, integers or names), found \(Self.typeName(v))"
            )
            return nil
        }
        if nonEmpty && arr.isEmpty {
            error(.badValue, at: path, "'\(key)' must not be empty (it could never match)")
            return nil
        }
        var out: [UInt16] = []
        var ok = true
        for (i, e) in arr.enumerated() {
            let ep = path.appending(index: i)
            if let n = e.int {
                if (0...kind.max).contains(n) {
                    out.append(UInt16(n))
                } else {
                    error(.badValue, at: ep, "\(kind.rawValue) \(n) out of range 0...\(kind.max)")
                    ok = false
                }
            } else if let s = e.string {
                if s.hasPrefix("0x") || s.hasPrefix("0X") {
                    if let n = parseHex(s), Int(n) <= kind.max {
                        out.append(n)
                    } else {
                        error(
                            .badValue,
                            at: ep,
                            "invalid hex \(kind.rawValue) \"\(s)\": expected 0x followed by 1-4 hex digits"
                        )
                        ok = false
                    }
                } else if let n = kind.names[s] {
                    out.append(n)
                } else {
                    error(.badValue, at: ep, "unknown \(kind.rawValue) name \"\(s)\" (use hex like \"0x1301\")")
                    ok = false
                }
            } else {
                error(
                    .wrongType,
                    at: ep,
                    "elements of '\(key)' must be hex strings, integers or names, found \(Self.typeName(e))"
                )
                ok = false
            }
        }
        return ok ? out : nil
    }
}

/// "0x" + 1...4 hex digits → value.
func parseHex(_ s: String) -> UInt16? {
    let u = Array(s.utf8)
    guard u.count >= 3, u.count <= 6, u[0] == UInt8(ascii: "0"), u[1] | 0x20 == UInt8(ascii: "x") else { return nil }
    var n: UInt16 = 0
    for c in u[2...] {
        guard let d = hexDigitValue(c) else { return nil }
        n = n << 4 | UInt16(d)
    }
    return n
}
