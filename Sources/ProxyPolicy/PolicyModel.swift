// ProxyPolicy: per-client TLS behaviour decided from the ClientHello.
//
// Policy files (TOML, see `PolicyLoader` and policies/README.md) are loaded, validated and compiled into an
// immutable `CompiledPolicySet`; the TLS layer calls `decide(_:)` once per handshake from the ClientHello callback.
// Matching is hand-written over `ClientHelloFeatures` (no regex, no Foundation) because it sits on the handshake path.
import ProxyCore
import ProxyFingerprint

/// `enforce`: the policy's actions take effect. `observe`: the match is recorded (`PolicyDecision.wouldApply`)
/// but changes nothing, and does not hide lower-priority policies.
public enum PolicyMode: String, Sendable, CaseIterable {
    case enforce
    case observe
}

/// The actions a policy asks for. `nil` means "not specified: keep the server default".
public struct PolicyActions: Sendable, Equatable {
    /// What to do with a ticket sealed under a stale key.
    public var staleTicket: StaleTicketAction?
    /// Issue/accept TLS session tickets at all (`tickets = "on" | "off"`).
    public var ticketsEnabled: Bool?
    /// Use the session cache (session-ID resumption) for this client (`session_cache = "on" | "off"`); only has an
    /// effect when the server has a cache (`[sessions] cache` is not "off").
    public var sessionCacheEnabled: Bool?
    /// Number of TLS 1.3 NewSessionTicket messages after a full handshake (0...16).
    public var tls13Tickets: Int?
    /// Free-form label for logs and metrics.
    public var tag: String?

    public init(
        staleTicket: StaleTicketAction? = nil,
        ticketsEnabled: Bool? = nil,
        tls13Tickets: Int? = nil,
        tag: String? = nil,
        sessionCacheEnabled: Bool? = nil
    ) {
        self.sessionCacheEnabled = sessionCacheEnabled
        self.staleTicket = staleTicket
        self.ticketsEnabled = ticketsEnabled
        self.tls13Tickets = tls13Tickets
        self.tag = tag
    }

    /// No action specified: the server defaults apply.
    public static let none = PolicyActions()
}

/// A JA3 MD5 digest as two machine words so that `decide` compares integers, not strings.
public struct JA3Digest: Sendable, Hashable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// From 16 raw digest bytes; nil unless exactly 16 bytes.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 16 else { return nil }
        var h: UInt64 = 0
        var l: UInt64 = 0
        for (i, b) in bytes.enumerated() {
            if i < 8 { h = h << 8 | UInt64(b) } else { l = l << 8 | UInt64(b) }
        }
        self.init(high: h, low: l)
    }

    /// From 32 hex digits (either case); nil otherwise. Does not allocate.
    public init?(hex: some StringProtocol) {
        var h: UInt64 = 0
        var l: UInt64 = 0
        var n = 0
        for c in hex.utf8 {
            guard let d = hexDigitValue(c) else { return nil }
            if n < 16 { h = h << 4 | UInt64(d) } else { l = l << 4 | UInt64(d) }
            n += 1
            if n > 32 { return nil }
        }
        guard n == 32 else { return nil }
        self.init(high: h, low: l)
    }

    public var description: String { hex16(high) + hex16(low) }
}

@inline(__always)
func hexDigitValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
    default: return nil
    }
}

func hex16(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}

/// What `decide` looks at: the normalised features, plus the JA3 digest / JA4 string when some policy needs them.
///
/// The caller fills `ja3`/`ja4` only when `CompiledPolicySet.needsJA3`/`needsJA4` is true; a `ja3`/`ja4` predicate
/// evaluated without its value is false (it never matches by accident).
public struct PolicyInput: Sendable {
    public var features: ClientHelloFeatures
    public var ja3: JA3Digest?
    public var ja4: String?

    public init(features: ClientHelloFeatures, ja3: JA3Digest? = nil, ja4: String? = nil) {
        self.features = features
        self.ja3 = ja3
        self.ja4 = ja4
    }
}

/// The outcome of `CompiledPolicySet.decide`.
///
/// Semantics: policies are tried in priority order. The first matching **enforce** policy supplies `effective`.
/// An **observe** policy that matches before it is reported in `matchedIndex`/`wouldApply` but changes nothing.
public struct PolicyDecision: Sendable, Equatable {
    /// Index (into `CompiledPolicySet.policies`) of the highest-priority matching policy of either mode.
    public var matchedIndex: Int?
    /// Name of that policy.
    public var matchedName: String?
    /// Mode of that policy.
    public var mode: PolicyMode?
    /// Index of the enforce policy whose actions are in `effective` (nil: server defaults).
    public var enforcedIndex: Int?
    /// Actions that take effect (`.none` when no enforce policy matched).
    public var effective: PolicyActions
    /// Actions of the matched observe policy, which did *not* take effect.
    public var wouldApply: PolicyActions?
    /// Tag of the matched policy (observe or enforce), for logs and metrics.
    public var tag: String?

    public init(
        matchedIndex: Int? = nil,
        matchedName: String? = nil,
        mode: PolicyMode? = nil,
        enforcedIndex: Int? = nil,
        effective: PolicyActions = .none,
        wouldApply: PolicyActions? = nil,
        tag: String? = nil
    ) {
        self.matchedIndex = matchedIndex
        self.matchedName = matchedName
        self.mode = mode
        self.enforcedIndex = enforcedIndex
        self.effective = effective
        self.wouldApply = wouldApply
        self.tag = tag
    }

    /// Nothing matched.
    public static let noMatch = PolicyDecision()
}
