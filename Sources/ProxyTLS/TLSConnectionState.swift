import ProxyCore
import ProxyFingerprint
import ProxyPolicy
import ProxyTickets

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

/// Receives per-handshake events from the TLS callbacks (implemented by the server with its metrics).
/// Called on the connection's loop thread.
public protocol TLSObserver: AnyObject {
    func clientHelloRejected(reason: String)
    func ticketIssued()
    func policyApplied(name: String, enforced: Bool)
}

/// Per-worker state the TLS callbacks read: the worker's current snapshots. Loop thread only.
public final class TLSWorkerContext {
    /// The ticket key ring snapshot this worker uses now (replaced at the top of a loop tick on rotation).
    public var ring: TicketKeyRing?
    /// The compiled policy set this worker uses now (nil: no policies loaded).
    public var policies: CompiledPolicySet?
    public unowned(unsafe) let observer: TLSObserver

    /// - Parameter observer: must outlive this context (the server's worker owns both).
    public init(observer: TLSObserver) {
        self.observer = observer
    }
}

/// Everything the OpenSSL callbacks learn or decide about one connection.
///
/// Created per connection before `SSL_accept`; reached from callbacks through SSL ex_data (unretained: the
/// connection owns both this object and the SSL, and frees the SSL first).
public final class TLSConnectionState {
    unowned(unsafe) let worker: TLSWorkerContext
    /// The context set the SSL was created from (kept alive for the SNI callback across reloads).
    let contextSet: TLSContextSet
    /// The raw ClientHello handshake message, captured by the message callback. Kept (one allocation) instead of
    /// the parsed form (some twenty small arrays): an idle connection should hold as little as possible, and the
    /// parsed hello is only needed again for fingerprints in logs, the built-in page and origin headers.
    var helloBytes: [UInt8] = []
    var helloCaptured = false
    var helloParsed = false
    var decided = false

    /// The ClientHello, parsed again from the captured bytes (nil when none was captured or it did not parse).
    /// Not cached: call it rarely.
    public var hello: ClientHello? {
        guard helloParsed else { return nil }
        return try? ClientHello.parse(handshake: helloBytes)
    }
    // JA3/JA4 are computed on first use (policy needing them, access log, page, origin headers) and cached:
    // the handshake itself only needs the feature set, and hashing is most of the fingerprinting cost.
    private var cachedJA3: JA3?
    private var cachedJA4: String?
    public var ja3String: String? { ja3Value?.string }
    public var ja3Hash: String? { ja3Value?.md5 }
    public var ja4: String? {
        if cachedJA4 == nil { computeFingerprints(from: nil) }
        return cachedJA4
    }
    private var ja3Value: JA3? {
        if cachedJA3 == nil { computeFingerprints(from: nil) }
        return cachedJA3
    }

    /// Fills both caches from `parsed` (or a fresh parse of the captured bytes).
    func computeFingerprints(from parsed: ClientHello?) {
        guard let h = parsed ?? hello else { return }
        if cachedJA3 == nil { cachedJA3 = h.ja3 }
        if cachedJA4 == nil { cachedJA4 = h.ja4Fingerprint }
    }
    /// Effective per-connection ticket behaviour (config default, possibly changed by a policy).
    public internal(set) var staleAction: StaleTicketAction
    public internal(set) var ticketsEnabled: Bool
    public internal(set) var tls13Tickets: Int
    /// The policy that matched (enforced or observed), its mode and tag.
    public internal(set) var policyName: String?
    public internal(set) var policyEnforced = false
    /// An observe-mode policy that matched (counted and logged; it changes nothing).
    public internal(set) var observedPolicyName: String?
    public internal(set) var tag: String?
    /// Whether this connection may use the session cache (`[sessions]` on, possibly switched by a policy).
    public internal(set) var sessionCacheEnabled: Bool
    /// The session cache returned a session for the client's session ID (OpenSSL may still refuse it).
    var sessionCacheHit = false
    /// Ticket outcome as seen by the decrypt callback; `finalOutcome(resumed:)` settles it after the handshake.
    public internal(set) var ticketOutcome: TicketOutcome = .full
    // Name of the key that decrypted the presented ticket, or else sealed the first issued one.
    var keyNameHi: UInt64 = 0
    var keyNameLo: UInt64 = 0
    var hasKeyName = false

    public init(worker: TLSWorkerContext, contextSet: TLSContextSet) {
        self.worker = worker
        self.contextSet = contextSet
        self.staleAction = contextSet.settings.defaultStaleAction
        self.ticketsEnabled = contextSet.settings.ticketsEnabled
        self.tls13Tickets = contextSet.settings.tls13TicketCount
        self.sessionCacheEnabled = contextSet.settings.sessionCache != nil
    }

    /// The outcome label once the handshake is done: a resumption the callback accepted but OpenSSL did not
    /// complete (e.g. cipher mismatch) counts as a full handshake.
    public func finalOutcome(resumed: Bool) -> TicketOutcome {
        // OpenSSL consults the cache only for a hello without a ticket, so a hit excludes every ticket outcome.
        if resumed && sessionCacheHit { return .resumedSessionID }
        switch ticketOutcome {
        case .resumed, .resumedRenewedInline, .staleResumedNoRenewal: return resumed ? ticketOutcome : .full
        default: return resumed ? .resumed : ticketOutcome
        }
    }

    private var cachedKeyName: String?
    /// The key name as 32 hex characters (computed on first use, off the handshake path, then cached).
    public var keyName: String? {
        guard hasKeyName else { return nil }
        if let k = cachedKeyName { return k }
        let k = hex64(keyNameHi) + hex64(keyNameLo)
        cachedKeyName = k
        return k
    }

    /// `nameWords` loads the 16 name bytes as native-endian words; print them in wire (byte) order.
    private func hex64(_ v: UInt64) -> String {
        let s = String(v.bigEndian, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
