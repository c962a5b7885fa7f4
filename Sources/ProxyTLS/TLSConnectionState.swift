internal import COpenSSL
import CProxyShims
import ProxyCore
import ProxyTickets

/// The outcome labels live with the ticket decision (ProxyTickets); re-exported for ProxyTLS users.
public typealias TicketOutcome = ProxyTickets.TicketOutcome

/// What the delegate answers for one ClientHello: the connection's ticket behaviour (nil keeps the default).
public struct TLSHelloAnswer: Sendable, Equatable {
    /// Fail the handshake with a decode_error alert (the hello could not be parsed).
    public var reject = false
    public var staleTicket: StaleTicketAction?
    public var tls13Tickets: Int?
    public var sessionCacheEnabled: Bool?
    /// false switches tickets off for this connection (nil or true keep the listener's setting).
    public var ticketsEnabled: Bool?
    public init() {}
    public static let reject: TLSHelloAnswer = {
        var a = TLSHelloAnswer()
        a.reject = true
        return a
    }()
}

/// How a handshake that did not complete ended, as far as the TLS layer can tell.
public enum TLSHandshakeFailure: Sendable, Equatable {
    /// The peer sent a fatal alert.
    case peerAlert
    /// The peer closed or reset the connection without an alert.
    case peerClosed
    /// Anything else (a protocol error on our side of the check, an internal error).
    case other
}

/// Where ProxyTLS reports ClientHellos and handshake events, and gets its per-connection answer.
///
/// ProxyTLS is plumbing: its OpenSSL callbacks are trampolines into this protocol. The server implements it
/// (fingerprints, policies, metrics, the detector). Called on the connection's loop thread; must not block.
public protocol TLSHandshakeDelegate: AnyObject {
    /// Once per connection, from the ClientHello callback (before the ticket callback). The captured handshake
    /// message is `connection.helloBytes` (empty when none was captured, e.g. an SSLv2-format hello).
    func clientHello(_ connection: TLSConnectionState) -> TLSHelloAnswer
    /// A ticket was sealed.
    func ticketIssued()
    /// The handshake completed (`outcome` settled with `TicketOutcome.final`).
    func handshakeCompleted(_ connection: TLSConnectionState, version: Int32, outcome: TicketOutcome)
    /// The handshake failed after the ClientHello callback ran.
    func handshakeFailed(_ connection: TLSConnectionState, version: Int32, failure: TLSHandshakeFailure)
}

/// Per-worker state the TLS callbacks read: the worker's current snapshots. Loop thread only.
public final class TLSWorkerContext {
    /// The ticket key ring snapshot this worker uses now (replaced at the top of a loop tick on rotation).
    public var ring: TicketKeyRing?
    public unowned(unsafe) let delegate: TLSHandshakeDelegate

    /// Socket BIOs of freed connections, handed to the next accepted ones: a BIO_new + BIO_free pair (a lock and
    /// ex_data each) cost ~5,800 instructions per connection, more than the rest of SSL_set_fd. A socket BIO holds
    /// only its fd and flags, both reset on reuse (`cps_BIO_reuse_socket`); the SSL object itself is never reused
    /// (SSL_clear keeps per-peer state from the last handshake, see SSL_clear(3)).
    private var spareBIOs: [OpaquePointer] = []
    /// Sessions this worker decoded from the session cache, kept for the next resumption of the same ID.
    public let decodedSessions = DecodedSessions()
    /// At most this many spare BIOs (~200 bytes each) per worker: a burst of closes keeps no more.
    static let spareBIOLimit = 256

    /// - Parameter delegate: must outlive this context (the server's worker owns both).
    public init(delegate: TLSHandshakeDelegate) {
        self.delegate = delegate
        spareBIOs.reserveCapacity(Self.spareBIOLimit)
    }

    deinit {
        for b in spareBIOs { BIO_free(b) }
    }

    /// A spare socket BIO pointed at `fd` (one reference, the caller's), or nil when there is none.
    func takeSocketBIO(fd: Int32) -> OpaquePointer? {
        guard let b = spareBIOs.popLast() else { return nil }
        cps_BIO_reuse_socket(b, fd)
        return b
    }

    /// Keeps `ssl`'s socket BIO for a later connection; call just before SSL_free (which then drops only its own
    /// references). Not for an SSL whose BIO is not a plain socket BIO set by `accept`.
    func keepSocketBIO(of ssl: OpaquePointer) {
        guard spareBIOs.count < Self.spareBIOLimit, let b = SSL_get_rbio(ssl), SSL_get_wbio(ssl) == b,
            BIO_up_ref(b) == 1
        else { return }
        spareBIOs.append(b)
    }
}

/// Everything the OpenSSL callbacks learn or decide about one connection.
///
/// Created per connection before `SSL_accept`; reached from callbacks through SSL ex_data (unretained: the
/// connection owns both this object and the SSL, and frees the SSL first). Open so the delegate's module can keep
/// its own per-connection facts (fingerprints, policy) in the same object, with no second allocation.
open class TLSConnectionState {
    public final unowned(unsafe) let worker: TLSWorkerContext
    /// The context set the SSL was created from (kept alive for the SNI callback across reloads).
    public final let contextSet: TLSContextSet
    /// The raw ClientHello handshake message, captured by the message callback (empty until then). Kept (one
    /// allocation) instead of a parsed form: an idle connection should hold as little as possible.
    public final internal(set) var helloBytes: [UInt8] = []
    final var helloCaptured = false
    final var decided = false
    /// The ClientHello callback ran (the hello was answered).
    public final var helloAnswered: Bool { decided }

    /// Effective per-connection ticket behaviour (config default, possibly changed by a policy).
    public final internal(set) var staleAction: StaleTicketAction
    public final internal(set) var ticketsEnabled: Bool
    public final internal(set) var tls13Tickets: Int
    /// Whether this connection may use the session cache (`[sessions]` on, possibly switched by a policy).
    public final internal(set) var sessionCacheEnabled: Bool
    /// The session cache returned a session for the client's session ID (OpenSSL may still refuse it).
    final var sessionCacheHit = false
    /// Ticket outcome as seen by the decrypt callback; `finalOutcome(resumed:)` settles it after the handshake.
    public final internal(set) var ticketOutcome: TicketOutcome = .full
    /// The presented ticket's key state and what the callback told OpenSSL (`.none`/`.refuse`: no ticket decrypted).
    public final internal(set) var presentedKey: PresentedTicketKey = .none
    public final internal(set) var ticketCallback: TicketDecision.Callback = .refuse
    // Name of the key that decrypted the presented ticket, or else sealed the first issued one.
    final var keyNameHi: UInt64 = 0
    final var keyNameLo: UInt64 = 0
    final var hasKeyName = false

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
    public final func finalOutcome(resumed: Bool) -> TicketOutcome {
        TicketOutcome.final(recorded: ticketOutcome, resumed: resumed, sessionCacheHit: sessionCacheHit)
    }

    /// TLS 1.3 tickets to queue after a completed handshake (`TicketDecision`; 0 unless it resumed with tickets on).
    public final func extraTicketsAfterHandshake(version: Int32, resumed: Bool) -> Int {
        guard resumed, ticketsEnabled else { return 0 }
        return TicketDecision.decide(
            key: presentedKey,
            stale: staleAction,
            tls13: version == 0x0304,
            tickets: tls13Tickets
        )
        .extraTicketsAfterResumption
    }

    private var cachedKeyName: String?
    /// The key name as 32 hex characters (computed on first use, off the handshake path, then cached).
    public final var keyName: String? {
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
