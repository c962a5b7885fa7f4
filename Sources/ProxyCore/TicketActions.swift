/// What to do when a client presents a session ticket sealed under a *stale* key (one that still decrypts but no
/// longer encrypts). Shared by the ticket callback, the policy engine and the configuration.
public enum StaleTicketAction: String, Sendable, CaseIterable {
    /// Resume and send a NewSessionTicket inside the abbreviated handshake (RFC 5077 §3.3; nginx/HAProxy behaviour).
    case renewInline = "renew-inline"
    /// Refuse the ticket; the full handshake then issues a fresh one (what SChannel clients need).
    case fullHandshake = "full-handshake"
    /// Resume without issuing a new ticket.
    case resumeWithoutRenewal = "resume-without-renewal"
}
