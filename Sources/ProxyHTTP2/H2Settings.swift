/// Limits of one HTTP/2 server session: what it advertises in SETTINGS and what it enforces on the peer.
public struct H2Settings: Sendable, Equatable {
    /// SETTINGS_MAX_CONCURRENT_STREAMS; nghttp2 refuses streams beyond it (RST_STREAM REFUSED_STREAM).
    public var maxConcurrentStreams = 100
    /// SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 §6.5.2 size: name + value + 32 per field). A request head over
    /// it is answered with 431; a header block over four times it closes the connection (decompression bomb).
    public var maxHeaderListSize = 32768
    /// Most fields in one request head (431 beyond it).
    public var maxHeaderCount = 100
    /// SETTINGS_INITIAL_WINDOW_SIZE: request-body bytes a stream may have in flight. The server buffers at most
    /// this much per stream and re-opens the window only after forwarding the bytes (`consume`).
    public var initialWindowSize = 65535
    /// Client RST_STREAM frames: a token bucket of `resetBurst` tokens refilled at `resetRate` per second. An
    /// empty bucket closes the connection with GOAWAY ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487).
    public var resetBurst = 200
    public var resetRate = 50
    /// PING, SETTINGS, PRIORITY and empty DATA frames: the same kind of bucket (SETTINGS/PING/empty-frame floods).
    public var controlBurst = 1000
    public var controlRate = 100
    /// CONTINUATION frames after one HEADERS frame (CVE-2024-27316); more closes the connection.
    public var maxContinuations = 8
    /// Outbound SETTINGS/PING ACKs queued while the peer does not read; more closes the connection.
    public var maxOutboundAcks = 1000
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3): clients may send extended CONNECT (`:protocol`, e.g.
    /// WebSocket over HTTP/2). nghttp2 accepts `:protocol` only once this was sent; without it the field is a
    /// malformed request (stream reset).
    public var enableConnectProtocol = true

    public init() {}
}

/// Why a session closed its connection on its own.
public enum H2Failure: Sendable, Equatable {
    /// Not an HTTP/2 client (bad connection preface): close without a GOAWAY.
    case badPreface
    /// A protocol violation; GOAWAY with the matching code was queued.
    case protocolError
    /// Abuse: GOAWAY ENHANCE_YOUR_CALM was queued.
    case rapidReset
    case controlFlood
    case continuationFlood
    case headerBomb
    case ackFlood
    /// The client left response bytes unread past the stall timeout (closed by the owner).
    case zeroWindow

    /// Metric/log label.
    public var label: String {
        switch self {
        case .badPreface: "bad_preface"
        case .protocolError: "protocol_error"
        case .rapidReset: "rapid_reset"
        case .controlFlood: "control_flood"
        case .continuationFlood: "continuation_flood"
        case .headerBomb: "header_bomb"
        case .ackFlood: "ack_flood"
        case .zeroWindow: "zero_window"
        }
    }
}

/// HTTP/2 error codes (RFC 9113 §7) used by callers.
public enum H2ErrorCode: UInt32, Sendable {
    case noError = 0x0
    case protocolError = 0x1
    case internalError = 0x2
    case flowControlError = 0x3
    case streamClosed = 0x5
    case refusedStream = 0x7
    case cancel = 0x8
    case enhanceYourCalm = 0xb
}

/// A token bucket over a monotonic nanosecond clock (integer arithmetic, no allocation).
struct TokenBucket {
    private var tokens: Int  // in millitokens
    private let burst: Int
    private let ratePerSecond: Int
    private var last: UInt64 = 0

    init(burst: Int, rate: Int) {
        self.burst = max(1, burst) * 1000
        self.ratePerSecond = max(0, rate)
        self.tokens = self.burst
    }

    /// Takes one token; false when none is left.
    mutating func take(now: UInt64) -> Bool {
        if last != 0 && now > last {
            let refill = Int(min((now - last) / 1000, UInt64(Int.max / 1000))) * ratePerSecond / 1000
            tokens = min(burst, tokens + refill)
        }
        last = now
        if tokens < 1000 { return false }
        tokens -= 1000
        return true
    }
}
