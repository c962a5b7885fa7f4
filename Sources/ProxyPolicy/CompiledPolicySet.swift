/// One compiled policy.
public struct CompiledPolicy: Sendable {
    public let name: String
    public let description: String
    public let priority: Int
    public let mode: PolicyMode
    public let matcher: Matcher
    public let actions: PolicyActions
    /// Where it was defined (`file:line:column`), for diagnostics.
    public let origin: SourceLocation

    public init(
        name: String,
        description: String = "",
        priority: Int,
        mode: PolicyMode,
        matcher: Matcher,
        actions: PolicyActions,
        origin: SourceLocation = SourceLocation(file: "<memory>", line: 0, column: 0)
    ) {
        self.name = name
        self.description = description
        self.priority = priority
        self.mode = mode
        self.matcher = matcher
        self.actions = actions
        self.origin = origin
    }
}

/// An immutable, compiled set of policies, swapped as a whole on reload (see STYLE.md "immutable snapshot").
///
/// `policies` is sorted by descending priority; ties keep load order (file name, then position in the file).
public struct CompiledPolicySet: Sendable {
    /// Monotonic number chosen by the loader's caller; lets workers tell snapshots apart.
    public let generation: UInt64
    public let policies: [CompiledPolicy]
    /// True when some policy has a `ja3` predicate: only then must the caller compute the JA3 digest.
    public let needsJA3: Bool
    /// True when some policy has a `ja4` predicate: only then must the caller compute JA4.
    public let needsJA4: Bool

    public init(generation: UInt64, policies: [CompiledPolicy]) {
        self.generation = generation
        // Stable sort: equal priorities keep the caller's order.
        self.policies = policies.enumerated().sorted {
            $0.element.priority != $1.element.priority
                ? $0.element.priority > $1.element.priority : $0.offset < $1.offset
        }.map(\.element)
        needsJA3 = policies.contains { $0.matcher.uses(.ja3) }
        needsJA4 = policies.contains { $0.matcher.uses(.ja4) }
    }

    /// An empty set: every decision is `.noMatch`.
    public static let empty = CompiledPolicySet(generation: 0, policies: [])

    /// Decide for one handshake. Policies are tried by priority; the first matching enforce policy wins; an observe
    /// policy matching earlier is reported (`wouldApply`) without changing `effective` or stopping the search.
    /// Allocation-free apart from the returned value's retained references.
    public func decide(_ input: PolicyInput) -> PolicyDecision {
        var observed = -1
        for i in policies.indices {
            // Read in place: `let p = policies[i]` copied the policy (retaining its 8 references) per policy tried.
            guard policies[i].matcher.matches(input) else { continue }
            let p = policies[i]
            if p.mode == .observe {
                if observed < 0 { observed = i }
                continue
            }
            if observed >= 0 {
                let o = policies[observed]
                return PolicyDecision(
                    matchedIndex: observed,
                    matchedName: o.name,
                    mode: .observe,
                    enforcedIndex: i,
                    effective: p.actions,
                    wouldApply: o.actions,
                    tag: o.actions.tag
                )
            }
            return PolicyDecision(
                matchedIndex: i,
                matchedName: p.name,
                mode: .enforce,
                enforcedIndex: i,
                effective: p.actions,
                wouldApply: nil,
                tag: p.actions.tag
            )
        }
        if observed >= 0 {
            let o = policies[observed]
            return PolicyDecision(
                matchedIndex: observed,
                matchedName: o.name,
                mode: .observe,
                enforcedIndex: nil,
                effective: .none,
                wouldApply: o.actions,
                tag: o.actions.tag
            )
        }
        return .noMatch
    }

    /// Index of the policy with this name.
    public func index(named name: String) -> Int? { policies.firstIndex { $0.name == name } }
}

/// A position in a policy file (1-based line and column; 0 when unknown).
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }
    public var description: String { "\(file):\(line):\(column)" }
}
