import CoreMetrics
import Glibc
import Logging
import ProxyConfig
import ProxyCore
import ProxyEventLoop
import ProxyHTTP1

/// The admin listener (only with `--admin`): Prometheus metrics, health, ticket-key status and rotation,
/// certificates and their OCSP staples, and reload. Runs on the control loop, one short request per connection.
///
/// Safe to expose beyond loopback (issue 16 §2): with a token configured every request must carry
/// `Authorization: Bearer <token>` (compared in constant time; one 401 for every kind of failure), except
/// `GET`/`HEAD` of `/metrics` and `/healthz` when `admin_token_exempt_read_only` is set. Resources are bounded
/// like the proxy listener's (issue 15 items 7 and 8): at most `maxConnections` at once (more are answered 503
/// and closed), each must deliver its request within `timeouts.header_read`, and EMFILE/ENFILE pause accepting
/// instead of spinning.
final class AdminServer: EventHandler {
    private let loop: EventLoop
    private var fd: Int32
    unowned let handler: any AdminHandler
    let boundAddress: SocketAddress?
    private let logger: Logger
    private var connections: [Int32: AdminConnection] = [:]
    /// The bearer token, nil when none is configured (then the listener is on loopback: config validation).
    private let token: SecretBytes?
    private let exemptReadOnly: Bool
    /// Time a connection has from accept to a complete request head (`timeouts.header_read`).
    let requestTimeout: UInt64
    /// Concurrent admin connections; an operator's tools and one scraper need a handful.
    static let maxConnections = 64
    /// Shared read buffer: the control loop handles one connection at a time and the parser keeps what it needs.
    fileprivate var readBuffer = [UInt8](repeating: 0, count: 8192)
    private var acceptPaused = false
    private lazy var acceptResumer = AdminAcceptResumer(server: self)
    private var lastWarning: UInt64 = 0
    private var problemsSinceWarning = 0
    private let acceptExhausted = Counter(
        label: "edgeproxy_accept_exhausted_total",
        dimensions: [("listener", "admin"), ("worker", "control")]
    )
    private let refused = Counter(label: "edgeproxy_admin_connections_refused_total")
    private let unauthorized = Counter(label: "edgeproxy_admin_unauthorized_total")

    init(
        loop: EventLoop,
        address: SocketAddress,
        config: ProxyConfiguration,
        logger: Logger,
        handler: any AdminHandler
    ) throws {
        self.loop = loop
        self.handler = handler
        self.logger = logger
        exemptReadOnly = config.adminTokenExemptReadOnly
        requestTimeout = UInt64(max(1, config.timeouts.headerRead.milliseconds)) * 1_000_000
        token = try AdminToken.load(file: config.adminTokenFile, env: config.adminTokenEnv)
        // SO_REUSEPORT: during an upgrade (SIGUSR2) the new process binds it while the old one still serves.
        fd = try Socket.listen(on: address, backlog: 64, reusePort: true)
        boundAddress = Socket.localAddress(fd)
        try loop.register(fd: fd, interest: EventLoop.readable, handler: self)
    }

    func handleEvent(_ events: UInt32) {
        var peer = SocketAddress(storage: sockaddr_storage(), length: 0)
        while fd >= 0 && !acceptPaused {
            let c: Int32
            do {
                guard case .processed(let f) = try Socket.accept(fd, peer: &peer) else { return }
                c = f
            } catch {
                acceptFailed(error)
                return
            }
            if connections.count >= Self.maxConnections {
                // Accept and answer rather than leave it queued: the level-triggered listener would spin.
                refused.increment()
                AdminConnection.writeAll(c, Self.busyResponse)
                Socket.close(c)
                warn("admin: \(Self.maxConnections) connections open, refusing more (503)")
                continue
            }
            let conn = AdminConnection(fd: c, server: self)
            connections[c] = conn
            do {
                try loop.register(fd: c, interest: EventLoop.readable | EventLoop.readHangup, handler: conn)
            } catch {
                connections[c] = nil
                Socket.close(c)
                continue
            }
            loop.schedule(at: loop.now &+ requestTimeout, conn)
        }
    }

    /// Out of fds the pending connection stays queued: stop polling for 100 ms instead of spinning (as the
    /// workers do). Other errors (a connection reset while queued) are simply skipped.
    private func acceptFailed(_ error: SyscallError) {
        guard Socket.isResourceExhaustion(error) else { return }
        acceptExhausted.increment()
        acceptPaused = true
        loop.deregister(fd: fd)
        loop.schedule(at: loop.now &+ Worker.acceptBackoffNanos, acceptResumer)
        warn("admin: accept failed: \(error); not accepting for 100 ms")
    }

    fileprivate func resumeAccepting() {
        guard acceptPaused else { return }
        acceptPaused = false
        guard fd >= 0 else { return }
        do { try loop.register(fd: fd, interest: EventLoop.readable, handler: self) } catch {
            logger.error("admin: cannot watch the listener again: \(error)")
        }
    }

    /// A warning at most every 5 s, with the number of occurrences since the last one.
    private func warn(_ message: String) {
        problemsSinceWarning += 1
        guard loop.now &- lastWarning > 5_000_000_000 else { return }
        lastWarning = loop.now
        logger.warning("\(message)", metadata: ["occurrences_since_last_warning": "\(problemsSinceWarning)"])
        problemsSinceWarning = 0
    }

    func close() {
        guard fd >= 0 else { return }
        loop.cancelTimer(acceptResumer)
        if !acceptPaused { loop.deregister(fd: fd) }
        Socket.close(fd)
        fd = -1
    }

    fileprivate func finished(_ c: AdminConnection) {
        guard connections[c.fd] === c else { return }
        loop.cancelTimer(c)
        loop.deregister(fd: c.fd)
        Socket.close(c.fd)
        connections[c.fd] = nil
    }

    static let busyResponse = Array(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbusy\n"
            .utf8
    )
    /// The same answer for a missing header, another scheme and a wrong token: nothing tells them apart.
    static let unauthorizedResponse = Array(
        ("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"edgeproxy-admin\"\r\n"
            + "Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nunauthorized\n").utf8
    )

    /// True when `head` may use the endpoint `path` (token present and right, or not needed).
    fileprivate func authorized(_ head: RequestHead, path: String) -> Bool {
        guard let token else { return true }
        if exemptReadOnly && (head.method == .get || head.method == .head)
            && (path == "/metrics" || path == "/healthz")
        {
            return true
        }
        let ok = head.headers.first("authorization").map { AdminToken.matches(header: $0, token: token) } ?? false
        if !ok { unauthorized.increment() }
        return ok
    }

    fileprivate func respond(_ head: RequestHead) -> (Int, StaticString, [UInt8])? {
        let p = String(decoding: head.target.prefix { $0 != UInt8(ascii: "?") }, as: UTF8.self)
        guard authorized(head, path: p) else { return nil }
        switch (head.method, p) {
        case (.get, "/metrics"):
            return (200, "text/plain; version=0.0.4", handler.metricsText())
        case (.get, "/healthz"), (.head, "/healthz"):
            return (200, "text/plain", Array("ok\n".utf8))
        case (.get, "/upstreams"):
            return (200, "application/json", handler.upstreamsJSON())
        case (.get, "/keys"):
            return (200, "application/json", handler.keysJSON())
        case (.get, "/certificates"):
            return (200, "application/json", handler.certificatesJSON())
        case (.get, "/detector"):
            return (200, "application/json", handler.detectorJSON())
        case (.get, "/test/ticket-key-material"):
            guard let body = handler.keyMaterialJSON() else { return (404, "text/plain", Array("not found\n".utf8)) }
            return (200, "application/json", body)
        case (.post, "/keys/rotate"):
            let r = handler.rotateKeys()
            return (r.ok ? 200 : 409, "text/plain", Array((r.message + "\n").utf8))
        case (.post, "/reload"):
            let r = handler.reload()
            return (r.ok ? 200 : 422, "text/plain", Array((r.message + "\n").utf8))
        case (_, "/metrics"), (_, "/healthz"), (_, "/keys"), (_, "/keys/rotate"), (_, "/reload"), (_, "/upstreams"),
            (_, "/certificates"), (_, "/detector"):
            return (405, "text/plain", Array("method not allowed\n".utf8))
        default:
            return (404, "text/plain", Array("not found\n".utf8))
        }
    }
}

/// The admin API's bearer token: loading it into locked, wiped memory and checking a presented header.
enum AdminToken {
    /// Shortest token accepted: a bearer token is the only lock on reload and key rotation.
    static let minimumLength = 16

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The token from `file` or the environment variable `env` (at most one is set; config validation), with
    /// surrounding whitespace (a trailing newline) removed. Nil when neither is set.
    static func load(file: String?, env: String?) throws -> SecretBytes? {
        var raw: [UInt8]
        let source: String
        if let file {
            source = "admin_token_file \(file)"
            guard let f = fopen(file, "rb") else {
                throw Failure(description: "\(source): cannot open: \(String(cString: strerror(errno)))")
            }
            defer { fclose(f) }
            raw = [UInt8](repeating: 0, count: 4097)
            let n = raw.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, f) }
            if n > 4096 {
                raw.withUnsafeMutableBytes { SecretBytes.secureZero($0) }
                throw Failure(description: "\(source): longer than 4096 bytes")
            }
            raw.removeLast(raw.count - n)
        } else if let env {
            source = "admin token environment variable \(env)"
            guard let p = getenv(env) else { throw Failure(description: "\(source) is not set") }
            raw = Array(UnsafeRawBufferPointer(start: p, count: strlen(p)))
        } else {
            return nil
        }
        defer { raw.withUnsafeMutableBytes { SecretBytes.secureZero($0) } }
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }
        let start = raw.firstIndex { !isSpace($0) } ?? raw.count
        let end = (raw.lastIndex { !isSpace($0) } ?? -1) + 1
        guard end - start >= minimumLength else {
            throw Failure(description: "\(source): the token must be at least \(minimumLength) characters")
        }
        guard raw[start..<end].allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw Failure(description: "\(source): the token must be printable ASCII without spaces")
        }
        return try raw.withUnsafeBytes { try SecretBytes(copying: UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
    }

    /// True when `header` is `Bearer <token>` (scheme case-insensitive). The comparison takes time that depends
    /// only on the presented value's length, never on where it differs or on the token's length.
    static func matches(header: ArraySlice<UInt8>, token: SecretBytes) -> Bool {
        let scheme = Array("bearer ".utf8)
        guard header.count > scheme.count else { return false }
        var schemeOK = true
        for (i, b) in header.prefix(scheme.count).enumerated() where b | 0x20 != scheme[i] { schemeOK = false }
        var presented = header.dropFirst(scheme.count)
        while presented.first == 0x20 { presented = presented.dropFirst() }
        let equal = token.withUnsafeBytes { t in constantTimeEquals(presented, t) }
        return schemeOK && equal
    }

    /// Equality of `a` (public length) and `b` (secret) without data-dependent branches: every byte of `a` is
    /// compared with `b` cycled to `a`'s length, and the length difference is folded in.
    static func constantTimeEquals(_ a: ArraySlice<UInt8>, _ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count > 0 else { return false }
        var diff = UInt(bitPattern: a.count ^ b.count)
        var j = 0
        for x in a {
            diff |= UInt(x ^ b[j])
            j += 1
            if j == b.count { j = 0 }
        }
        return diff == 0
    }
}

/// Ends an admin accept back-off.
private final class AdminAcceptResumer: ProxyEventLoop.TimerHandler {
    var timerSlot = TimerSlot()
    unowned let server: AdminServer
    init(server: AdminServer) { self.server = server }
    func timerFired(now: UInt64) { server.resumeAccepting() }
}

private final class AdminConnection: EventHandler, ProxyEventLoop.TimerHandler {
    let fd: Int32
    unowned let server: AdminServer
    var timerSlot = TimerSlot()
    private var parser = RequestParser()

    init(fd: Int32, server: AdminServer) {
        self.fd = fd
        self.server = server
    }

    /// The request did not arrive within `timeouts.header_read`: 408, then close.
    func timerFired(now: UInt64) {
        var out: [UInt8] = []
        HTTP1Writer.appendSimpleResponse(status: 408, body: "request timeout\n", closeConnection: true, to: &out)
        Self.writeAll(fd, out)
        server.finished(self)
    }

    func handleEvent(_ events: UInt32) {
        while true {
            let r = server.readBuffer.withUnsafeMutableBytes { try? Socket.read(fd, $0) }
            guard let r else { return server.finished(self) }
            switch r {
            case .wouldBlock: return
            case .processed(0): return server.finished(self)
            case .processed(let n):
                let ev = server.readBuffer.withUnsafeMutableBytes {
                    let ev = parser.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n]))
                    // The bytes may hold the bearer token: do not leave them in the shared buffer.
                    SecretBytes.secureZero(UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]))
                    return ev
                }
                switch ev {
                case .head:
                    let head = parser.head
                    guard let (status, type, body) = server.respond(head) else {
                        Self.writeAll(fd, AdminServer.unauthorizedResponse)
                        return server.finished(self)
                    }
                    var out: [UInt8] = []
                    body.withUnsafeBytes {
                        HTTP1Writer.appendSimpleResponse(
                            status: status,
                            contentType: type,
                            body: $0,
                            closeConnection: true,
                            includeBody: head.method != .head,
                            to: &out
                        )
                    }
                    Self.writeAll(fd, out)
                    return server.finished(self)
                case .error(let e):
                    var out: [UInt8] = []
                    HTTP1Writer.appendErrorResponse(e, to: &out)
                    Self.writeAll(fd, out)
                    return server.finished(self)
                default:
                    continue
                }
            }
        }
    }

    /// Admin responses are small; a short blocking-style loop on a local socket is acceptable here (control
    /// thread, never a worker).
    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        var off = 0
        var spins = 0
        while off < bytes.count && spins < 1000 {
            let r = bytes.withUnsafeBytes { try? Socket.write(fd, UnsafeRawBufferPointer(rebasing: $0[off...])) }
            switch r {
            case .processed(let n)?: off += n
            case .wouldBlock?:
                spins += 1
                usleep(1000)
            case nil: return
            }
        }
    }
}
