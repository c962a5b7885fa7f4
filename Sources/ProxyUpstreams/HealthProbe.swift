import Glibc
import ProxyCore
import ProxyEventLoop

/// One active health check: `GET path HTTP/1.1` to one address, judged by the status of the response head.
///
/// Runs on the health-check thread with a non-blocking socket and `poll` bounded by one overall deadline, so a
/// black-holed address costs at most `timeout`. Hand-written rather than a client library: it is ~80 lines and must
/// not pull an HTTP client stack into the proxy. `https://` servers are checked over TLS: the caller passes a
/// ``HealthProbeSecurity`` (ProxyServer's, on the pool's client TLS context: the same verification as requests).
public enum HealthProbe {
    /// One step of I/O on the probe's connection.
    public enum Step: Sendable, Equatable {
        case done(Int)
        case wantRead
        case wantWrite
        /// The peer closed (reads) or the connection failed.
        case closed
    }

    /// A TLS session on the probe's connected socket, driven like the socket itself (non-blocking, poll).
    public protocol Channel {
        /// One handshake step: `.done(0)` when complete, `.closed` when it failed.
        func handshake() -> Step
        func send(_ bytes: UnsafeRawBufferPointer) -> Step
        func recv(_ buffer: UnsafeMutableRawBufferPointer) -> Step
        func close()
    }

    /// Makes the TLS channel for a connected socket (nil: cannot, counted as a failed handshake).
    public typealias Security = (_ fd: Int32) -> Channel?

    public enum Result: Sendable, Equatable {
        case ok(status: Int)
        case failed(FailureReason, status: Int)
        /// The proxy could not make a socket (``SyscallError/isLocalShortage``): the check says nothing about the
        /// address, whose health stays as it was.
        case notRun
    }

    /// Checks `address`; `host` is the Host header (the server's host and port as configured); `preamble` is sent
    /// before the request (a PROXY protocol header for origins that require one), raw even when `security` then runs
    /// TLS (`https://` servers).
    public static func check(
        address: SocketAddress,
        host: String,
        path: String,
        timeoutMilliseconds: Int64,
        expect: [ClosedRange<Int>],
        preamble: [UInt8] = [],
        security: Security? = nil
    ) -> Result {
        let deadline = monotonicNanos() &+ UInt64(max(1, timeoutMilliseconds)) &* 1_000_000
        func remaining() -> Int32 {
            let now = monotonicNanos()
            return now >= deadline ? 0 : Int32(min(Int64((deadline - now) / 1_000_000) + 1, Int64(Int32.max)))
        }
        let fd: Int32
        let connected: Bool
        do {
            (fd, connected) = try Socket.connect(address)
        } catch {
            if error.isLocalShortage { return .notRun }
            return .failed(error.errno == ECONNREFUSED ? .connectRefused : .connectFailed, status: 0)
        }
        defer { Socket.close(fd) }
        if !connected {
            guard wait(fd, Int16(POLLOUT), remaining()) else { return .failed(.connectTimeout, status: 0) }
            let err = Socket.pendingError(fd)
            if err != 0 { return .failed(err == ECONNREFUSED ? .connectRefused : .connectFailed, status: 0) }
        }
        // The PROXY protocol header goes first and raw, before any TLS.
        var preambleSent = 0
        while preambleSent < preamble.count {
            let n = preamble.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + preambleSent, $0.count - preambleSent, Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                preambleSent += n
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                guard wait(fd, Int16(POLLOUT), remaining()) else { return .failed(.responseTimeout, status: 0) }
            } else {
                return .failed(.closedBeforeResponse, status: 0)
            }
        }
        var channel: Channel?
        defer { channel?.close() }
        if let security {
            guard let c = security(fd) else { return .failed(.tlsHandshakeFailed, status: 0) }
            channel = c
            while true {
                switch c.handshake() {
                case .done: break
                case .wantRead:
                    guard wait(fd, Int16(POLLIN), remaining()) else { return .failed(.connectTimeout, status: 0) }
                    continue
                case .wantWrite:
                    guard wait(fd, Int16(POLLOUT), remaining()) else { return .failed(.connectTimeout, status: 0) }
                    continue
                case .closed: return .failed(.tlsHandshakeFailed, status: 0)
                }
                break
            }
        }
        func send(_ b: UnsafeRawBufferPointer) -> Step {
            if let c = channel { return c.send(b) }
            let n = Glibc.send(fd, b.baseAddress!, b.count, Int32(MSG_NOSIGNAL))
            if n >= 0 { return .done(n) }
            return errno == EAGAIN || errno == EINTR ? .wantWrite : .closed
        }
        func recv(_ b: UnsafeMutableRawBufferPointer) -> Step {
            if let c = channel { return c.recv(b) }
            let n = Glibc.recv(fd, b.baseAddress!, b.count, 0)
            if n > 0 { return .done(n) }
            return n < 0 && (errno == EAGAIN || errno == EINTR) ? .wantRead : .closed
        }
        func waitFor(_ step: Step) -> Bool {
            wait(fd, Int16(step == .wantRead ? POLLIN : POLLOUT), remaining())
        }
        let request = Array(
            "GET \(path) HTTP/1.1\r\nHost: \(host)\r\nUser-Agent: edgeproxy-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
                .utf8
        )
        var sent = 0
        while sent < request.count {
            let step = request.withUnsafeBytes { send(UnsafeRawBufferPointer(rebasing: $0[sent...])) }
            switch step {
            case .done(let n) where n > 0:
                sent += n
            case .wantRead, .wantWrite:
                guard waitFor(step) else { return .failed(.responseTimeout, status: 0) }
            default:
                return .failed(.closedBeforeResponse, status: 0)
            }
        }
        // The status line is all that is judged; 64 bytes hold "HTTP/1.1 200 " with room to spare.
        var head: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        read: while head.count < 64 && !head.contains(UInt8(ascii: "\n")) {
            let step = buffer.withUnsafeMutableBytes { recv($0) }
            switch step {
            case .done(let n) where n > 0:
                head.append(contentsOf: buffer[..<n])
            case .wantRead, .wantWrite:
                guard waitFor(step) else { return .failed(.responseTimeout, status: 0) }
            default:
                if head.isEmpty { return .failed(.closedBeforeResponse, status: 0) }
                break read
            }
        }
        guard let status = parseStatus(head) else { return .failed(.invalidResponse, status: 0) }
        if expect.contains(where: { $0.contains(status) }) { return .ok(status: status) }
        return .failed(.unexpectedStatus, status: status)
    }

    /// The status code of `HTTP/1.x SSS ...`, or nil.
    static func parseStatus(_ head: [UInt8]) -> Int? {
        let prefix = Array("HTTP/1.".utf8)
        guard head.count >= 12, Array(head[0..<7]) == prefix, head[8] == UInt8(ascii: " ") else { return nil }
        var status = 0
        for b in head[9..<12] {
            guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") else { return nil }
            status = status * 10 + Int(b - UInt8(ascii: "0"))
        }
        guard head.count == 12 || head[12] == UInt8(ascii: " ") || head[12] == UInt8(ascii: "\r") else { return nil }
        return (100...599).contains(status) ? status : nil
    }

    private static func wait(_ fd: Int32, _ events: Int16, _ timeout: Int32) -> Bool {
        guard timeout > 0 else { return false }
        var p = pollfd(fd: fd, events: events, revents: 0)
        while true {
            let r = poll(&p, 1, timeout)
            if r < 0 && errno == EINTR { continue }
            return r > 0
        }
    }
}
