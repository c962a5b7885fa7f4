import ProxyCore

/// How a handshake ended with respect to session tickets (issue #3's outcome labels).
public enum TicketOutcome: Int, Sendable, CaseIterable {
    /// Full handshake, no ticket presented (or tickets off).
    case full
    /// Resumed with a ticket under the current key; no renewal needed.
    case resumed
    /// Resumed with a stale key's ticket and a NewSessionTicket sent inside the abbreviated handshake.
    case resumedRenewedInline
    /// Stale key, the connection's action refused the ticket: full handshake + fresh ticket.
    case staleForcedFull
    /// Stale key, resumed without a new ticket.
    case staleResumedNoRenewal
    /// The ticket's key name is not in the ring.
    case unknownKey
    /// The ticket's key is past its decrypt window.
    case expiredKey
    /// Resumed by session ID from the session cache (no ticket involved: SChannel on Windows 7/8, `tickets = "off"`).
    case resumedSessionID

    /// The label as static text (no allocation; for the access log).
    public var staticLabel: StaticString {
        switch self {
        case .full: return "full"
        case .resumed: return "resumed"
        case .resumedRenewedInline: return "resumed_renewed_inline"
        case .staleForcedFull: return "stale_forced_full"
        case .staleResumedNoRenewal: return "stale_resumed_no_renewal"
        case .unknownKey: return "unknown_key"
        case .expiredKey: return "expired_key"
        case .resumedSessionID: return "resumed_session_id"
        }
    }

    public var label: String { staticLabel.description }
}

/// What the ring says about the key named in a presented ticket (`none`: no ticket reached the decrypt callback).
public enum PresentedTicketKey: Sendable, Hashable, CaseIterable {
    case none
    /// The name is not in the ring at all.
    case unknown
    /// The name is known but past its decrypt window (or reported expired by the lookup).
    case expired
    case next
    case current
    case stale
}

/// The one ticket decision (the table in TLS-NOTES.md, "Tickets"): what OpenSSL's ticket-key callback must return,
/// which outcome is recorded, and how many extra TLS 1.3 tickets the connection tops up after a resumption.
///
/// | key | TLS 1.2 | TLS 1.3 |
/// |---|---|---|
/// | none / unknown / expired | 0: full handshake + fresh ticket | same |
/// | current (or next) | 1: resume, no new ticket | 2: resume + 1 ticket (1 when the ticket count is 0) |
/// | stale, renew-inline | 2: resume + NewSessionTicket before CCS | 2 (1 when the ticket count is 0) |
/// | stale, full-handshake | 0 | 0 |
/// | stale, resume-without-renewal | 1 | 1 |
///
/// Pure: no OpenSSL, no state; `TicketDecisionTests` enumerates the whole table.
public struct TicketDecision: Sendable, Hashable {
    /// The ticket-key callback's decrypt-side return value.
    public enum Callback: Int32, Sendable, Hashable {
        /// Refuse the ticket: full handshake (which issues fresh tickets).
        case refuse = 0
        /// Accept the ticket, issue no new one.
        case resume = 1
        /// Accept the ticket and renew it (TLS 1.2: NewSessionTicket inside the abbreviated handshake; TLS 1.3:
        /// OpenSSL 3.0's only way to send any ticket on a resumption).
        case resumeAndRenew = 2
    }

    public var callback: Callback
    /// The outcome to record (before `TicketOutcome.final` settles it against what OpenSSL actually did).
    public var outcome: TicketOutcome
    /// TLS 1.3 only: NewSessionTickets to queue after the handshake when it did resume (OpenSSL sends at most one
    /// by itself on a resumption; this tops it up to the configured count).
    public var extraTicketsAfterResumption: Int

    public init(callback: Callback, outcome: TicketOutcome, extraTicketsAfterResumption: Int) {
        self.callback = callback
        self.outcome = outcome
        self.extraTicketsAfterResumption = extraTicketsAfterResumption
    }

    /// Whether the callback must set up the decryption contexts (it accepts the ticket).
    public var decrypts: Bool { callback != .refuse }

    /// - Parameters:
    ///   - key: the presented ticket's key state (`.none` when no ticket was decrypted).
    ///   - stale: the connection's stale-ticket action (configuration default or policy).
    ///   - tls13: the negotiated version is TLS 1.3.
    ///   - tickets: the connection's TLS 1.3 ticket count (`[tickets] tls13_count` or policy).
    public static func decide(
        key: PresentedTicketKey,
        stale: StaleTicketAction,
        tls13: Bool,
        tickets: Int
    ) -> TicketDecision {
        let topUp = tls13 && tickets > 1 ? tickets - 1 : 0
        switch key {
        case .none:
            return TicketDecision(callback: .refuse, outcome: .full, extraTicketsAfterResumption: topUp)
        case .unknown:
            return TicketDecision(callback: .refuse, outcome: .unknownKey, extraTicketsAfterResumption: topUp)
        case .expired:
            return TicketDecision(callback: .refuse, outcome: .expiredKey, extraTicketsAfterResumption: topUp)
        case .current, .next:
            // OpenSSL 3.0 sends no TLS 1.3 ticket at all on a resumption unless the callback returns 2.
            return TicketDecision(
                callback: tls13 && tickets > 0 ? .resumeAndRenew : .resume,
                outcome: .resumed,
                extraTicketsAfterResumption: topUp
            )
        case .stale:
            switch stale {
            case .fullHandshake:
                return TicketDecision(callback: .refuse, outcome: .staleForcedFull, extraTicketsAfterResumption: topUp)
            case .resumeWithoutRenewal:
                return TicketDecision(
                    callback: .resume,
                    outcome: .staleResumedNoRenewal,
                    extraTicketsAfterResumption: 0
                )
            case .renewInline:
                return TicketDecision(
                    callback: tls13 && tickets == 0 ? .resume : .resumeAndRenew,
                    outcome: .resumedRenewedInline,
                    extraTicketsAfterResumption: topUp
                )
            }
        }
    }
}

extension TicketOutcome {
    /// The outcome once the handshake is done: a resumption the callback accepted but OpenSSL did not complete
    /// (e.g. cipher mismatch) counts as a full handshake; a session-cache hit that resumed excludes every ticket
    /// outcome (OpenSSL consults the cache only for a hello without a ticket).
    public static func final(recorded: TicketOutcome, resumed: Bool, sessionCacheHit: Bool) -> TicketOutcome {
        if resumed && sessionCacheHit { return .resumedSessionID }
        switch recorded {
        case .resumed, .resumedRenewedInline, .staleResumedNoRenewal: return resumed ? recorded : .full
        default: return resumed ? .resumed : recorded
        }
    }
}
