import ProxyFingerprint

/// An immutable set of 16-bit TLS code points (ciphers, extensions, groups, signature schemes).
///
/// Sorted array + binary search, with a 64-bit presence filter on the low 6 bits for a cheap early miss. The sets
/// in policy files hold a few dozen values at most, so this beats both `Set<UInt16>` (hashing) and an 8 KiB bitmap
/// per set (cache footprint).
public struct U16Set: Sendable, Hashable {
    public let sorted: [UInt16]
    let filter: UInt64

    public init(_ values: some Sequence<UInt16>) {
        let s = Array(Set(values)).sorted()
        sorted = s
        filter = s.reduce(0) { $0 | (1 << UInt64($1 & 63)) }
    }

    public var count: Int { sorted.count }

    @inline(__always)
    public func contains(_ v: UInt16) -> Bool {
        if filter & (1 << UInt64(v & 63)) == 0 { return false }
        var lo = 0
        var hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            let m = sorted[mid]
            if m == v { return true }
            if m < v { lo = mid + 1 } else { hi = mid }
        }
        return false
    }

    public func isSubset(of other: U16Set) -> Bool { sorted.allSatisfy { other.contains($0) } }
    public func isDisjoint(with other: U16Set) -> Bool { !sorted.contains { other.contains($0) } }
}

/// How a version predicate compares the client's version with the policy value.
public enum VersionComparison: String, Sendable, Hashable {
    case equal
    case atLeast
    case atMost
}

/// Boolean properties of a hello that a policy can require present or absent.
public enum FeatureFlag: String, Sendable, Hashable, CaseIterable {
    case grease
    case renegotiationSCSV = "renegotiation_scsv"
    case fallbackSCSV = "fallback_scsv"
    case sni
    case sessionTicket = "session_ticket"
    case extendedMasterSecret = "extended_master_secret"
    case renegotiationInfo = "renegotiation_info"
    case alpn
    case supportedVersions = "supported_versions"
}

/// One compiled leaf test over `PolicyInput`. Built by `PolicyLoader`; lists are precompiled to sets/arrays.
public enum MatchPredicate: Sendable, Hashable {
    case ja3(Set<JA3Digest>)
    case ja4([JA4Pattern])
    case highestVersion(VersionComparison, UInt16)
    case legacyVersion(VersionComparison, UInt16)
    case ciphersPrefix([UInt16])
    case ciphersContainAll(U16Set)
    case ciphersContainAny(U16Set)
    case cipherSetEqual(U16Set)
    case ciphersSubsetOf(U16Set)
    case firstCipherIn(U16Set)
    case extensionsEqual([UInt16])
    case extensionsSubsequence([UInt16])
    case extensionsPrefix([UInt16])
    case extensionsSuffix([UInt16])
    case extensionsPresent(U16Set)
    case extensionsAbsent(U16Set)
    case extensionsSubsetOf(U16Set)
    case flag(FeatureFlag, Bool)
    case groupSetEqual(U16Set)
    case groupsContainAll(U16Set)
    case groupsSubsetOf(U16Set)
    case pointFormatsEqual([UInt8])
    case sigalgsPrefix([UInt16])
    case sigalgsContainAll(U16Set)
    case sigalgsSubsetOf(U16Set)
    case alpnEqual([[UInt8]])
    case alpnContainsAll([[UInt8]])

    /// The part of the hello this predicate reads (for partial-knowledge evaluation of incomplete samples).
    public var field: FeatureField {
        switch self {
        case .ja3: return .ja3
        case .ja4: return .ja4
        case .highestVersion: return .supportedVersions
        case .legacyVersion: return .legacyVersion
        case .ciphersPrefix, .ciphersContainAll, .ciphersContainAny, .cipherSetEqual, .ciphersSubsetOf, .firstCipherIn:
            return .ciphers
        case .extensionsEqual, .extensionsSubsequence, .extensionsPrefix, .extensionsSuffix, .extensionsPresent,
            .extensionsAbsent, .extensionsSubsetOf:
            return .extensionOrder
        case .flag(let f, _):
            switch f {
            case .grease: return .grease
            case .renegotiationSCSV, .fallbackSCSV: return .ciphers
            case .supportedVersions: return .supportedVersions
            default: return .extensionOrder
            }
        case .groupSetEqual, .groupsContainAll, .groupsSubsetOf: return .groups
        case .pointFormatsEqual: return .pointFormats
        case .sigalgsPrefix, .sigalgsContainAll, .sigalgsSubsetOf: return .signatureAlgorithms
        case .alpnEqual, .alpnContainsAll: return .alpn
        }
    }

    // Explicit loops instead of `allSatisfy(set.contains)`: a partially applied method is a closure context,
    // which unoptimised builds allocate on every call.
    @inline(__always)
    func evaluate(_ input: PolicyInput) -> Bool {
        switch self {
        case .ja3(let set):
            guard let d = input.ja3 else { return false }
            return set.contains(d)
        case .ja4(let patterns):
            guard let s = input.ja4 else { return false }
            return JA4Pattern.matchesAny(patterns, s)
        case .highestVersion(let c, let v): return compare(input.features.highestVersion, c, v)
        case .legacyVersion(let c, let v): return compare(input.features.legacyVersion, c, v)
        case .ciphersPrefix(let p): return hasPrefix(input.features.cipherSuites, p)
        case .ciphersContainAll(let s): return containsAll(input.features.cipherSuites, s)
        case .ciphersContainAny(let s): return containsAny(input.features.cipherSuites, s)
        case .cipherSetEqual(let s): return setEqual(input.features.cipherSuites, s)
        case .ciphersSubsetOf(let s): return isSubset(input.features.cipherSuites, s)
        case .firstCipherIn(let s):
            guard let first = input.features.cipherSuites.first else { return false }
            return s.contains(first)
        case .extensionsEqual(let e): return input.features.extensions == e
        case .extensionsSubsequence(let e): return isSubsequence(e, of: input.features.extensions)
        case .extensionsPrefix(let e): return hasPrefix(input.features.extensions, e)
        case .extensionsSuffix(let e): return hasSuffix(input.features.extensions, e)
        case .extensionsPresent(let s): return containsAll(input.features.extensions, s)
        case .extensionsAbsent(let s): return !containsAny(input.features.extensions, s)
        case .extensionsSubsetOf(let s): return isSubset(input.features.extensions, s)
        case .flag(let flag, let want): return Self.flagValue(flag, input.features) == want
        case .groupSetEqual(let s): return setEqual(input.features.supportedGroups, s)
        case .groupsContainAll(let s): return containsAll(input.features.supportedGroups, s)
        case .groupsSubsetOf(let s): return isSubset(input.features.supportedGroups, s)
        case .pointFormatsEqual(let p): return input.features.ecPointFormats == p
        case .sigalgsPrefix(let p): return hasPrefix(input.features.signatureAlgorithms, p)
        case .sigalgsContainAll(let s): return containsAll(input.features.signatureAlgorithms, s)
        case .sigalgsSubsetOf(let s): return isSubset(input.features.signatureAlgorithms, s)
        case .alpnEqual(let want):
            let alpn = input.features.alpn
            guard alpn.count == want.count else { return false }
            for i in 0..<want.count where !utf8Equal(alpn[i], want[i]) { return false }
            return true
        case .alpnContainsAll(let want):
            let alpn = input.features.alpn
            for w in want {
                var found = false
                for a in alpn where utf8Equal(a, w) {
                    found = true
                    break
                }
                if !found { return false }
            }
            return true
        }
    }

    @inline(__always)
    static func flagValue(_ flag: FeatureFlag, _ f: ClientHelloFeatures) -> Bool {
        switch flag {
        case .grease: return f.greasePresent
        case .renegotiationSCSV: return f.renegotiationSCSVPresent
        case .fallbackSCSV: return f.fallbackSCSVPresent
        case .sni: return f.sniPresent
        case .sessionTicket: return f.sessionTicketExtPresent
        case .extendedMasterSecret: return f.extendedMasterSecretExtPresent
        case .renegotiationInfo: return f.renegotiationInfoExtPresent
        case .alpn: return f.extensions.contains(16)
        case .supportedVersions: return f.extensions.contains(43)
        }
    }
}

@inline(__always)
private func compare(_ have: UInt16, _ c: VersionComparison, _ want: UInt16) -> Bool {
    switch c {
    case .equal: return have == want
    case .atLeast: return have >= want
    case .atMost: return have <= want
    }
}

@inline(__always)
private func contains(_ list: [UInt16], _ v: UInt16) -> Bool {
    for x in list where x == v { return true }
    return false
}

@inline(__always)
private func containsAll(_ list: [UInt16], _ s: U16Set) -> Bool {
    for v in s.sorted where !contains(list, v) { return false }
    return true
}

@inline(__always)
private func containsAny(_ list: [UInt16], _ s: U16Set) -> Bool {
    for v in list where s.contains(v) { return true }
    return false
}

@inline(__always)
private func isSubset(_ list: [UInt16], _ s: U16Set) -> Bool {
    for v in list where !s.contains(v) { return false }
    return true
}

@inline(__always)
private func setEqual(_ list: [UInt16], _ s: U16Set) -> Bool {
    isSubset(list, s) && containsAll(list, s)
}

@inline(__always)
private func hasPrefix(_ list: [UInt16], _ p: [UInt16]) -> Bool {
    guard list.count >= p.count else { return false }
    for i in 0..<p.count where list[i] != p[i] { return false }
    return true
}

@inline(__always)
private func hasSuffix(_ list: [UInt16], _ p: [UInt16]) -> Bool {
    guard list.count >= p.count else { return false }
    let off = list.count - p.count
    for i in 0..<p.count where list[off + i] != p[i] { return false }
    return true
}

@inline(__always)
private func isSubsequence(_ needle: [UInt16], of hay: [UInt16]) -> Bool {
    var i = 0
    for v in hay where i < needle.count && v == needle[i] { i += 1 }
    return i == needle.count
}

@inline(__always)
private func utf8Equal(_ s: String, _ bytes: [UInt8]) -> Bool {
    var i = 0
    for c in s.utf8 {
        if i == bytes.count || bytes[i] != c { return false }
        i += 1
    }
    return i == bytes.count
}

/// Which part of a hello a predicate reads; used when a sample (e.g. a fingerprint-database entry) is incomplete.
public enum FeatureField: String, Sendable, Hashable, CaseIterable {
    case ja3, ja4, legacyVersion, supportedVersions, ciphers, extensionOrder, groups, pointFormats
    case signatureAlgorithms, alpn, grease
}

/// Three-valued truth for evaluating incomplete samples (Kleene logic).
public enum Truth: Sendable, Equatable {
    case yes, no, unknown
}

/// A JA4 pattern: three `_`-separated sections, each a glob (`*` = any run, `?` = one character), e.g.
/// `t12d*_*_*` or `*_e99a3d2b2b8b_*`. Stored as bytes so matching never builds a String.
public struct JA4Pattern: Sendable, Hashable, CustomStringConvertible {
    public let sections: [[UInt8]]
    public let description: String

    /// nil when the pattern does not have exactly three sections or contains characters outside `[0-9a-z?*]`.
    public init?(_ text: String) {
        let parts = text.utf8.split(separator: UInt8(ascii: "_"), omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        for p in parts {
            guard !p.isEmpty else { return nil }
            for c in p {
                let ok =
                    (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
                    || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z"))
                    || c == UInt8(ascii: "*") || c == UInt8(ascii: "?")
                guard ok else { return nil }
            }
        }
        sections = parts.map(Array.init)
        description = text
    }

    /// True when every section of `ja4` matches the corresponding section glob.
    public func matches(_ ja4: String) -> Bool { Self.matchesAny([self], ja4) }

    static func matchesAny(_ patterns: [JA4Pattern], _ ja4: String) -> Bool {
        var s = ja4
        // Native Swift strings are contiguous UTF-8: no copy. (Bridged/foreign strings are made native once.)
        return s.withUTF8 { b in
            for p in patterns where p.matches(bytes: b) { return true }
            return false
        }
    }

    func matches(bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var start = 0
        var n = 0
        while n < 3 {
            var end = start
            while end < bytes.count && bytes[end] != UInt8(ascii: "_") { end += 1 }
            if n < 2 && end == bytes.count { return false }
            if n == 2 && end != bytes.count { return false }
            if !Self.glob(sections[n], bytes, start, end) { return false }
            start = end + 1
            n += 1
        }
        return true
    }

    /// Iterative glob with single-star backtracking (O(n·m) worst case; JA4 sections are ≤ 12 bytes).
    private static func glob(_ p: [UInt8], _ s: UnsafeBufferPointer<UInt8>, _ from: Int, _ to: Int) -> Bool {
        var pi = 0
        var si = from
        var star = -1
        var mark = from
        while si < to {
            if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == s[si]) {
                pi += 1
                si += 1
            } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
                star = pi
                mark = si
                pi += 1
            } else if star >= 0 {
                pi = star + 1
                mark += 1
                si = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }
}

/// A compiled matcher: predicates combined with all / any / not.
public indirect enum Matcher: Sendable, Hashable {
    /// True when every child is true (an empty `all` is true: matches every hello).
    case all([Matcher])
    /// True when some child is true (an empty `any` is false).
    case any([Matcher])
    case not(Matcher)
    case leaf(MatchPredicate)

    /// Evaluate on a complete hello. Allocation-free: walks the precompiled tree.
    public func matches(_ input: PolicyInput) -> Bool {
        switch self {
        case .leaf(let p): return p.evaluate(input)
        case .all(let cs):
            for c in cs where !c.matches(input) { return false }
            return true
        case .any(let cs):
            for c in cs where c.matches(input) { return true }
            return false
        case .not(let c): return !c.matches(input)
        }
    }

    /// Evaluate on an incomplete sample: predicates reading a field in `unknown` are `.unknown`, combined with
    /// Kleene logic. Off the hot path (tests, `classify`, offline analysis).
    public func evaluate(_ input: PolicyInput, unknown: Set<FeatureField>) -> Truth {
        switch self {
        case .leaf(let p):
            if unknown.contains(p.field) { return .unknown }
            return p.evaluate(input) ? .yes : .no
        case .all(let cs):
            var r = Truth.yes
            for c in cs {
                switch c.evaluate(input, unknown: unknown) {
                case .no: return .no
                case .unknown: r = .unknown
                case .yes: break
                }
            }
            return r
        case .any(let cs):
            var r = Truth.no
            for c in cs {
                switch c.evaluate(input, unknown: unknown) {
                case .yes: return .yes
                case .unknown: r = .unknown
                case .no: break
                }
            }
            return r
        case .not(let c):
            switch c.evaluate(input, unknown: unknown) {
            case .yes: return .no
            case .no: return .yes
            case .unknown: return .unknown
            }
        }
    }

    /// True if any leaf is a JA3 / JA4 predicate.
    func uses(_ field: FeatureField) -> Bool {
        switch self {
        case .leaf(let p): return p.field == field
        case .all(let cs), .any(let cs): return cs.contains { $0.uses(field) }
        case .not(let c): return c.uses(field)
        }
    }
}
