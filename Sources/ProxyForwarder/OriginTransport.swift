import ProxyCore
import ProxyHTTP1

/// What one `OriginTransport.fillInput()` did.
public enum TransportRead: Equatable, Sendable {
    /// This many bytes were appended to `inBuf`.
    case read(Int)
    /// Nothing to read now (`canRead` is false until the next readiness event).
    case blocked
    /// `inBuf` has no room: process it first.
    case full
    /// The origin closed its side (`peerClosed` is now true).
    case eof
    /// A socket error (reset, ...): the connection is unusable.
    case failed
}

/// What one `OriginTransport.write(_:)` did.
public enum TransportWrite: Equatable, Sendable {
    case wrote(Int)
    /// The socket buffer is full (`canWrite` is false until the next readiness event).
    case blocked
    /// A socket error (EPIPE, reset, ...): the connection is unusable.
    case failed
}

/// One connection to an origin as the forwarder sees it: non-blocking, edge-triggered readiness remembered in
/// `canRead`/`canWrite`, input read into a pooled buffer. Production uses `UpstreamConnection` (a TCP socket on
/// the worker's loop); the unit tests use a scripted fake.
public protocol OriginTransport: AnyObject {
    /// The connect completed (a new connection starts unconnected while its non-blocking connect is pending).
    var isConnected: Bool { get }
    /// The connection served an earlier exchange (came from the keep-alive pool).
    var wasReused: Bool { get }
    var canRead: Bool { get }
    var canWrite: Bool { get }
    /// The origin closed its side (EOF was read).
    var peerClosed: Bool { get }
    /// Bytes read from the origin and not yet parsed.
    var inBuf: ByteBuffer? { get }
    /// The server (within its pool) this connection goes to; for logs, health and failover.
    var server: Int { get }
    /// Completes a pending connect: 0, or the errno it failed with.
    func finishConnect() -> Int32
    /// Reads what the socket has into `inBuf`, once.
    func fillInput() -> TransportRead
    func write(_ bytes: UnsafeRawBufferPointer) -> TransportWrite
    /// Tunnel half-close: no more bytes will be written (the origin reads EOF; its replies still arrive).
    func shutdownWrite()
    /// Makes readiness events reach `forwarder.transportReady()` (nil: nobody is using the connection).
    func setOwner(_ forwarder: OriginForwarder?)
}

/// Hands out origin connections to forwarders: server choice (pools, routes, load balancing, health), the
/// keep-alive pool, connecting. One per worker; the forwarder never sees sockets or addresses.
public protocol OriginConnector: AnyObject {
    /// A connection for the next attempt of `forwarder` (pooled and checked alive, or newly connecting), or nil
    /// when no server may be tried. Servers in `forwarder.triedServers` are avoided when
    /// `forwarder.needsOtherServer` is set.
    func acquire(for forwarder: OriginForwarder) -> (any OriginTransport)?
    /// The forwarder is done with `transport`: back to the keep-alive pool when `reusable`, else closed.
    func release(_ transport: any OriginTransport, reusable: Bool)
    /// Passive health: how an attempt on `transport`'s server went.
    func report(_ transport: any OriginTransport, _ outcome: OriginOutcome)
    /// Upper bound on attempts (connections tried) for one exchange.
    var maxAttempts: Int { get }
}

/// The client connection an exchange serves, as the connector sees it. Origin connections that carry the client's
/// identity (a PROXY protocol header) are reused only for the same client connection.
public protocol OriginClient: AnyObject {
    /// Unique within the worker for the process's life (unlike an object address, never reused).
    var originClientID: UInt64 { get }
    /// The PROXY protocol header naming this client (v2: with the TLVs in `tlvs`), written first on a new
    /// connection to a pool that wants it.
    func proxyProtocolHeader(_ version: ProxyProtocol.Version, tlvs: ProxyProtocol.TLVSet) -> [UInt8]
}

/// How one attempt on a server went, for passive health checks.
public enum OriginOutcome: Equatable, Sendable {
    case connectFailed
    /// The connection failed or timed out before a response head arrived.
    case failedBeforeResponse
    /// A response head arrived (its status).
    case responded(status: Int)
}

/// Where an exchange's response goes: the HTTP/1 client connection or one HTTP/2 stream. The forwarder calls
/// these in order: at most one `forwarderResponseHead`, then body bytes (never more than `forwarderBodyRoom`),
/// then exactly one of `forwarderResponseEnd` / `forwarderFailed`. For a tunnel (a 101 head) the body bytes are
/// the origin's raw bytes, and `forwarderTunnelOriginDone` may come before the end.
public protocol ForwarderSink: AnyObject {
    /// The origin's final response head (1xx interim heads are not forwarded). False when the sink cannot take it
    /// (e.g. it does not fit, or cannot be expressed in the client's protocol): the exchange fails with 502.
    func forwarderResponseHead(_ head: ResponseHead, isHEAD: Bool) -> Bool
    /// How many body bytes the sink can take now (backpressure: the origin is not read while this is 0).
    var forwarderBodyRoom: Int { get }
    func forwarderResponseBody(_ bytes: UnsafeRawBufferPointer)
    /// The response is complete; `trailers` holds the trailer fields of a chunked response (often empty).
    func forwarderResponseEnd(trailers: HTTPHeaders)
    /// The exchange failed. `status` is set when nothing was delivered yet (answer with it: 502, 504); nil when
    /// a response was already under way, and the client must see the truncation (abort, RST_STREAM).
    func forwarderFailed(status: Int?, reason: ForwardFailure)
    /// The origin connection has readiness news: drive the forwarder (from the session's own pump).
    func forwarderOriginReady()
    /// Tunnel (after a forwarded 101): the origin closed its sending side and every byte before its EOF was handed
    /// to `forwarderResponseBody`. Half-close toward the client once those bytes are out (HTTP/1: close_notify;
    /// HTTP/2: END_STREAM). The client may still send; the tunnel ends with `forwarderResponseEnd` once its side
    /// ended too, or with `forwarderFailed(status: nil, ...)` (idle timeout, reset).
    func forwarderTunnelOriginDone()
}

/// Why an exchange failed (metrics label and log text).
public enum ForwardFailure: String, Sendable {
    case connect
    case noServer = "no_server"
    case resetBeforeHead = "reset_before_headers"
    case resetMidBody = "reset_mid_body"
    case badResponse = "bad_response"
    case timeout
    case unsupported
    /// A tunnel moved no byte in either direction for `ForwarderTimeouts.tunnelIdle` (not an origin error).
    case tunnelIdle = "tunnel_idle"
    /// The proxy itself had no descriptor, memory or local port for an origin socket (not an origin error).
    case localResources = "local_resources"

    /// Whether the session that hears of the failure counts it in `edgeproxy_upstream_errors_total`. Connect
    /// failures and local shortages are counted by the connector where they happen (once per attempt); an idle
    /// tunnel is not an error.
    public var isCountedBySession: Bool {
        switch self {
        case .connect, .tunnelIdle, .localResources: false
        case .noServer, .resetBeforeHead, .resetMidBody, .badResponse, .timeout, .unsupported: true
        }
    }
}
