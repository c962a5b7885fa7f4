/// Load-time analysis of a compiled set (best effort; produces warnings, never changes the set).
///
/// Heuristic, documented:
/// 1. Each matcher is rewritten into disjunctive normal form over (predicate, polarity) literals; negations are
///    pushed down to the leaves. Matchers whose DNF would exceed `maxTerms` conjunctions are not analysed.
/// 2. A conjunction is *contradictory* when two of its literals cannot both hold: p and not p; a flag required
///    both present and absent; empty version ranges (eq/min/max of highest or legacy version); an extension both
///    required and forbidden (also via flags such as `renegotiation_info`, or outside `extensions_subset_of` /
///    a fixed `extensions` order); disjoint `ja3` sets or `first_cipher_in` sets; two different exact sets/orders
///    (`cipher_set`, `groups`, `extensions`, `point_formats`, `alpn_equals`); `*_contain_all` outside `*_subset_of`.
///    Everything else is assumed satisfiable, so "can both match" over-approximates and "never matches" under-
///    approximates.
/// 3. never matches: every conjunction contradictory.
/// 4. conflict: two enforce policies with equal priority have a pair of conjunctions whose union is not
///    contradictory. The tie is broken by load order (file name, then position), which operators should not rely on.
/// 5. unreachable: every satisfiable conjunction of policy L implies some conjunction of an enforce policy H that
///    is tried before L. Implication is literal-wise (same literal, or a literal that is stronger: subset `ja3`,
///    superset `extensions_present`, tighter version bound, longer prefix, smaller `*_subset_of`, ...).
public enum PolicyAnalysis {
    static let maxTerms = 256

    struct Literal: Hashable {
        var predicate: MatchPredicate
        var positive: Bool
    }
    typealias Conjunction = [Literal]

    public static func analyse(_ set: CompiledPolicySet) -> [PolicyDiagnostic] {
        var out: [PolicyDiagnostic] = []
        let forms: [[Conjunction]?] = set.policies.map { dnf($0.matcher, negated: false) }
        // Satisfiable conjunctions per policy (nil: not analysed).
        let live: [[Conjunction]?] = forms.map { $0?.filter { !contradictory($0) } }
        for (i, p) in set.policies.enumerated() {
            if let l = live[i], l.isEmpty {
                out.append(
                    PolicyDiagnostic(
                        severity: .warning,
                        kind: .neverMatches,
                        location: p.origin,
                        message: "policy '\(p.name)' can never match (its conditions contradict each other)"
                    )
                )
            }
        }
        for i in set.policies.indices {
            let a = set.policies[i]
            guard a.mode == .enforce, let la = live[i], !la.isEmpty else { continue }
            for j in set.policies.indices where j > i {
                let b = set.policies[j]
                guard b.mode == .enforce, b.priority == a.priority, let lb = live[j], !lb.isEmpty else { continue }
                let overlap = la.contains { ca in lb.contains { cb in !contradictory(ca + cb) } }
                if overlap {
                    out.append(
                        PolicyDiagnostic(
                            severity: .warning,
                            kind: .conflict,
                            location: b.origin,
                            message:
                                "enforce policies '\(a.name)' (\(a.origin)) and '\(b.name)' have the same priority \(a.priority) and can match the same ClientHello; '\(a.name)' wins by load order"
                        )
                    )
                }
            }
        }
        for j in set.policies.indices {
            let low = set.policies[j]
            guard let lj = live[j], !lj.isEmpty else { continue }
            for i in 0..<j {
                let high = set.policies[i]
                guard high.mode == .enforce, let li = live[i], !li.isEmpty else { continue }
                if lj.allSatisfy({ cl in li.contains { ch in implies(cl, ch) } }) {
                    out.append(
                        PolicyDiagnostic(
                            severity: .warning,
                            kind: .unreachable,
                            location: low.origin,
                            message:
                                "policy '\(low.name)' (priority \(low.priority)) is unreachable: every ClientHello it matches is matched first by enforce policy '\(high.name)' (priority \(high.priority), \(high.origin))"
                        )
                    )
                    break
                }
            }
        }
        return out
    }

    // MARK: DNF

    static func dnf(_ m: Matcher, negated: Bool) -> [Conjunction]? {
        switch m {
        case .leaf(let p): return [[normalise(Literal(predicate: p, positive: !negated))]]
        case .not(let c): return dnf(c, negated: !negated)
        case .all(let cs): return negated ? union(cs, negated: true) : product(cs, negated: false)
        case .any(let cs): return negated ? product(cs, negated: true) : union(cs, negated: false)
        }
    }

    private static func union(_ cs: [Matcher], negated: Bool) -> [Conjunction]? {
        var out: [Conjunction] = []
        for c in cs {
            guard let d = dnf(c, negated: negated) else { return nil }
            out += d
            if out.count > maxTerms { return nil }
        }
        return out
    }

    private static func product(_ cs: [Matcher], negated: Bool) -> [Conjunction]? {
        var out: [Conjunction] = [[]]
        for c in cs {
            guard let d = dnf(c, negated: negated) else { return nil }
            var next: [Conjunction] = []
            for a in out { for b in d { next.append(a + b) } }
            if next.count > maxTerms { return nil }
            out = next
        }
        return out
    }

    /// Negated flags become positive flags of the opposite value.
    private static func normalise(_ l: Literal) -> Literal {
        if case .flag(let f, let v) = l.predicate, !l.positive {
            return Literal(predicate: .flag(f, !v), positive: true)
        }
        return l
    }

    private static func flagExtension(_ f: FeatureFlag) -> UInt16? {
        switch f {
        case .sni: return 0
        case .sessionTicket: return 35
        case .extendedMasterSecret: return 23
        case .renegotiationInfo: return 0xff01
        case .alpn: return 16
        case .supportedVersions: return 43
        default: return nil
        }
    }

    // MARK: contradiction

    static func contradictory(_ c: Conjunction) -> Bool {
        var hi = (lo: 0, hi: 0xffff)
        var lv = (lo: 0, hi: 0xffff)
        var required = Set<UInt16>()  // extensions that must be present
        var forbidden = Set<UInt16>()
        var allowed: [U16Set] = []
        var exactExt: [UInt16]?
        for l in c {
            if c.contains(Literal(predicate: l.predicate, positive: !l.positive)) { return true }
            guard l.positive else { continue }
            switch l.predicate {
            case .highestVersion(let cmp, let v): narrow(&hi, cmp, Int(v))
            case .legacyVersion(let cmp, let v): narrow(&lv, cmp, Int(v))
            case .extensionsPresent(let s): required.formUnion(s.sorted)
            case .extensionsAbsent(let s): forbidden.formUnion(s.sorted)
            case .extensionsSubsetOf(let s): allowed.append(s)
            case .extensionsEqual(let e):
                if let x = exactExt, x != e { return true }
                exactExt = e
            case .extensionsPrefix(let e), .extensionsSuffix(let e), .extensionsSubsequence(let e):
                required.formUnion(e)
            case .flag(let f, let v):
                if let e = flagExtension(f) { if v { required.insert(e) } else { forbidden.insert(e) } }
            default: break
            }
        }
        if hi.lo > hi.hi || lv.lo > lv.hi { return true }
        if !required.isDisjoint(with: forbidden) { return true }
        for s in allowed where !required.allSatisfy(s.contains) { return true }
        if let x = exactExt {
            if !required.isSubset(of: x) || x.contains(where: forbidden.contains) { return true }
            for s in allowed where !x.allSatisfy(s.contains) { return true }
        }
        // Pairwise checks between positive literals.
        let pos = c.filter(\.positive).map(\.predicate)
        for (n, a) in pos.enumerated() {
            for b in pos[(n + 1)...] where pairContradicts(a, b) || pairContradicts(b, a) { return true }
        }
        return false
    }

    private static func narrow(_ r: inout (lo: Int, hi: Int), _ c: VersionComparison, _ v: Int) {
        switch c {
        case .equal:
            r.lo = max(r.lo, v)
            r.hi = min(r.hi, v)
        case .atLeast: r.lo = max(r.lo, v)
        case .atMost: r.hi = min(r.hi, v)
        }
    }

    private static func pairContradicts(_ a: MatchPredicate, _ b: MatchPredicate) -> Bool {
        switch (a, b) {
        case (.flag(let f, let x), .flag(let g, let y)): return f == g && x != y
        case (.ja3(let x), .ja3(let y)): return x.isDisjoint(with: y)
        case (.firstCipherIn(let x), .firstCipherIn(let y)): return x.isDisjoint(with: y)
        case (.cipherSetEqual(let x), .cipherSetEqual(let y)): return x != y
        case (.groupSetEqual(let x), .groupSetEqual(let y)): return x != y
        case (.pointFormatsEqual(let x), .pointFormatsEqual(let y)): return x != y
        case (.alpnEqual(let x), .alpnEqual(let y)): return x != y
        case (.ciphersContainAll(let x), .ciphersSubsetOf(let s)): return !x.isSubset(of: s)
        case (.ciphersContainAll(let x), .cipherSetEqual(let s)): return !x.isSubset(of: s)
        case (.groupsContainAll(let x), .groupsSubsetOf(let s)): return !x.isSubset(of: s)
        case (.groupsContainAll(let x), .groupSetEqual(let s)): return !x.isSubset(of: s)
        case (.sigalgsContainAll(let x), .sigalgsSubsetOf(let s)): return !x.isSubset(of: s)
        case (.ciphersContainAny(let x), .ciphersSubsetOf(let s)): return x.isDisjoint(with: s)
        case (.firstCipherIn(let x), .ciphersSubsetOf(let s)): return x.isDisjoint(with: s)
        default: return false
        }
    }

    // MARK: implication

    /// Every literal of `strong`'s partner `weak` is implied by some literal of `strong`.
    static func implies(_ strong: Conjunction, _ weak: Conjunction) -> Bool {
        weak.allSatisfy { w in strong.contains { s in literalImplies(s, w) } }
    }

    private static func literalImplies(_ s: Literal, _ w: Literal) -> Bool {
        if s == w { return true }
        guard s.positive && w.positive else { return false }
        switch (s.predicate, w.predicate) {
        case (.ja3(let a), .ja3(let b)): return a.isSubset(of: b)
        case (.ja4(let a), .ja4(let b)): return Set(a).isSubset(of: Set(b))
        case (.extensionsPresent(let a), .extensionsPresent(let b)),
            (.extensionsAbsent(let a), .extensionsAbsent(let b)),
            (.ciphersContainAll(let a), .ciphersContainAll(let b)),
            (.groupsContainAll(let a), .groupsContainAll(let b)),
            (.sigalgsContainAll(let a), .sigalgsContainAll(let b)):
            return b.isSubset(of: a)
        case (.extensionsSubsetOf(let a), .extensionsSubsetOf(let b)),
            (.ciphersSubsetOf(let a), .ciphersSubsetOf(let b)),
            (.groupsSubsetOf(let a), .groupsSubsetOf(let b)),
            (.sigalgsSubsetOf(let a), .sigalgsSubsetOf(let b)),
            (.ciphersContainAny(let a), .ciphersContainAny(let b)),
            (.firstCipherIn(let a), .firstCipherIn(let b)):
            return a.isSubset(of: b)
        case (.ciphersPrefix(let a), .ciphersPrefix(let b)), (.extensionsPrefix(let a), .extensionsPrefix(let b)),
            (.sigalgsPrefix(let a), .sigalgsPrefix(let b)):
            return a.starts(with: b)
        case (.extensionsSuffix(let a), .extensionsSuffix(let b)): return a.reversed().starts(with: b.reversed())
        case (.highestVersion(let c1, let v1), .highestVersion(let c2, let v2)),
            (.legacyVersion(let c1, let v1), .legacyVersion(let c2, let v2)):
            return versionImplies(c1, v1, c2, v2)
        case (.extensionsPresent(let a), .flag(let f, true)):
            return flagExtension(f).map(a.contains) ?? false
        case (.flag(let f, true), .extensionsPresent(let b)):
            return b.count == 1 && flagExtension(f) == b.sorted[0]
        default: return false
        }
    }

    private static func versionImplies(
        _ c1: VersionComparison,
        _ v1: UInt16,
        _ c2: VersionComparison,
        _ v2: UInt16
    )
        -> Bool
    {
        switch (c1, c2) {
        case (.equal, .equal): return v1 == v2
        case (.equal, .atLeast), (.atLeast, .atLeast): return v1 >= v2
        case (.equal, .atMost), (.atMost, .atMost): return v1 <= v2
        default: return false
        }
    }
}
