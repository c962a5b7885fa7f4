/// Passive ejection of one server address (nginx `max_fails`/`fail_timeout`, Envoy outlier detection's
/// consecutive-failure rule), as a value with pure transitions.
///
/// - A failure (connect refused or timed out, or the connection lost before a response head) adds one to
///   `failures`; reaching `maxFails` ejects the address until `now + failTimeout`. Failures reported while it is
///   ejected (requests that were already in flight) neither extend nor repeat the ejection.
/// - When the ejection expires the address is tried again with its count unchanged: the next failure ejects it at
///   once, the next success clears it.
/// - A success (a response head arrived, whatever its status) resets everything.
/// - `maxFails == 0` disables ejection; failures are still counted for `/upstreams`.
///
/// Packed into one `UInt64` (16 bits of count, 48 bits of monotonic milliseconds) so workers share it through a
/// single atomic with a compare-and-swap loop.
public struct PassiveHealth: Sendable, Equatable {
    /// Consecutive failures (saturates at 65535).
    public var failures: Int
    /// Monotonic milliseconds until which the address is ejected; 0 when it never was since the last success.
    public var ejectedUntil: UInt64

    public init(failures: Int = 0, ejectedUntil: UInt64 = 0) {
        self.failures = failures
        self.ejectedUntil = ejectedUntil
    }

    public enum Event: Sendable { case success, failure }

    public func isEjected(now: UInt64) -> Bool { ejectedUntil > now }

    /// The state after `event` at `now`; `ejected` is true when this event started an ejection.
    public func next(
        _ event: Event,
        now: UInt64,
        maxFails: Int,
        failTimeout: UInt64
    ) -> (
        state: PassiveHealth, ejected: Bool
    ) {
        switch event {
        case .success:
            return (PassiveHealth(), false)
        case .failure:
            var s = self
            s.failures = min(failures + 1, 0xFFFF)
            guard maxFails > 0, s.failures >= maxFails, !isEjected(now: now) else { return (s, false) }
            s.ejectedUntil = min(now &+ max(failTimeout, 1), 0xFFFF_FFFF_FFFF)
            return (s, true)
        }
    }

    public var packed: UInt64 { UInt64(failures) << 48 | (ejectedUntil & 0xFFFF_FFFF_FFFF) }
    public init(packed: UInt64) { self.init(failures: Int(packed >> 48), ejectedUntil: packed & 0xFFFF_FFFF_FFFF) }
}

/// Why an address failed its last check (or was ejected), for logs and `/upstreams`.
public enum FailureReason: UInt8, Sendable, CaseIterable {
    case none = 0
    case connectRefused
    case connectTimeout
    case responseTimeout
    case closedBeforeResponse
    case invalidResponse
    case unexpectedStatus
    case connectFailed
    /// `https://` servers: the TLS handshake failed (verification, alert, ...).
    case tlsHandshakeFailed

    public var text: String {
        switch self {
        case .none: ""
        case .connectRefused: "connection refused"
        case .connectTimeout: "connect timed out"
        case .responseTimeout: "no response head within the timeout"
        case .closedBeforeResponse: "connection closed before a response"
        case .invalidResponse: "invalid response"
        case .unexpectedStatus: "unexpected status"
        case .connectFailed: "connect failed"
        case .tlsHandshakeFailed: "TLS handshake failed"
        }
    }
}

/// Active health of one address under `rise`/`fall` (HAProxy's check counters), as a value with pure transitions.
///
/// An address starts **up, one failure from down** (HAProxy's initial state): requests flow from the first moment,
/// and an address that is already dead is taken out by the very first check instead of after `fall` of them.
/// While up, `fall` consecutive failed checks take it down; while down, `rise` consecutive good checks bring it up;
/// a result agreeing with the current state resets the streak.
public struct ActiveHealth: Sendable, Equatable {
    public var isUp: Bool
    /// Consecutive results contradicting `isUp`.
    public var streak: Int
    /// Why the last failed check failed (`.none` after a good one).
    public var reason: FailureReason
    /// The status of the last check that got a response head (0 when none did).
    public var lastStatus: Int

    public init(isUp: Bool, streak: Int, reason: FailureReason = .none, lastStatus: Int = 0) {
        self.isUp = isUp
        self.streak = streak
        self.reason = reason
        self.lastStatus = lastStatus
    }

    /// The initial state described on the type.
    public static func initial(fall: Int) -> ActiveHealth { ActiveHealth(isUp: true, streak: max(0, fall - 1)) }

    /// Never checked: up for good (pools without `health_check`).
    public static let unchecked = ActiveHealth(isUp: true, streak: 0)

    /// The state after one check; `changed` is true when the address went up or down.
    public func next(
        ok: Bool,
        reason: FailureReason,
        status: Int,
        rise: Int,
        fall: Int
    ) -> (
        state: ActiveHealth, changed: Bool
    ) {
        var s = self
        s.reason = ok ? .none : reason
        s.lastStatus = status
        if ok == isUp {
            s.streak = 0
            return (s, false)
        }
        s.streak = streak + 1
        if s.streak >= (isUp ? fall : rise) {
            s.isUp.toggle()
            s.streak = 0
            return (s, true)
        }
        return (s, false)
    }

    public var packed: UInt64 {
        (isUp ? 1 : 0) | UInt64(min(streak, 0xFF)) << 8 | UInt64(reason.rawValue) << 16
            | UInt64(min(max(lastStatus, 0), 0xFFFF)) << 24
    }

    public init(packed: UInt64) {
        self.init(
            isUp: packed & 1 == 1,
            streak: Int(packed >> 8 & 0xFF),
            reason: FailureReason(rawValue: UInt8(packed >> 16 & 0xFF)) ?? .none,
            lastStatus: Int(packed >> 24 & 0xFFFF)
        )
    }
}
