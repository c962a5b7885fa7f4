/// What a completed handshake cost the server, for the handshake-duration histogram's `kind` label: a full
/// handshake (no ticket, or one that could not be used), an abbreviated one (resumed by ticket or session ID),
/// or a full handshake the ticket policy forced although the client presented a decryptable ticket under a stale
/// key (the renewal strategy for clients that abort on inline renewal).
public enum HandshakeKind: Int, Sendable, CaseIterable {
    case full
    case resumed
    case forcedFull

    public var label: String {
        switch self {
        case .full: return "full"
        case .resumed: return "resumed"
        case .forcedFull: return "forced_full"
        }
    }
}

extension TicketOutcome {
    /// The handshake kind of a completed handshake with this outcome.
    public var handshakeKind: HandshakeKind {
        switch self {
        case .full, .unknownKey, .expiredKey: return .full
        case .resumed, .resumedRenewedInline, .staleResumedNoRenewal, .resumedSessionID: return .resumed
        case .staleForcedFull: return .forcedFull
        }
    }
}
