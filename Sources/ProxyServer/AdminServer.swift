import Glibc
import ProxyCore
import ProxyEventLoop
import ProxyHTTP1

/// The admin listener (only with `--admin`; loopback unless explicitly allowed): Prometheus metrics, health,
/// ticket-key status and rotation, and reload. Runs on the control loop, one short request per connection.
final class AdminServer: EventHandler {
    private let loop: EventLoop
    private let fd: Int32
    unowned let handler: EdgeProxyServer
    let boundAddress: SocketAddress?
    private var connections: [Int32: AdminConnection] = [:]

    init(loop: EventLoop, address: SocketAddress, handler: EdgeProxyServer) throws {
        self.loop = loop
        self.handler = handler
        fd = try Socket.listen(on: address, backlog: 64, reusePort: false)
        boundAddress = Socket.localAddress(fd)
        try loop.register(fd: fd, interest: EventLoop.readable, handler: self)
    }

    func handleEvent(_ events: UInt32) {
        var peer = SocketAddress(storage: sockaddr_storage(), length: 0)
        while true {
            guard case .processed(let c)? = try? Socket.accept(fd, peer: &peer) else { return }
            let conn = AdminConnection(fd: c, server: self)
            connections[c] = conn
            do {
                try loop.register(fd: c, interest: EventLoop.readable | EventLoop.readHangup, handler: conn)
            } catch {
                connections[c] = nil
                Socket.close(c)
            }
        }
    }

    func close() {
        loop.deregister(fd: fd)
        Socket.close(fd)
    }

    fileprivate func finished(_ c: AdminConnection) {
        loop.deregister(fd: c.fd)
        Socket.close(c.fd)
        connections[c.fd] = nil
    }

    fileprivate func respond(method: HTTPMethod, path: ArraySlice<UInt8>) -> (Int, StaticString, [UInt8]) {
        let p = String(decoding: path.prefix { $0 != UInt8(ascii: "?") }, as: UTF8.self)
        switch (method, p) {
        case (.get, "/metrics"):
            return (200, "text/plain; version=0.0.4", handler.metricsText())
        case (.get, "/healthz"), (.head, "/healthz"):
            return (200, "text/plain", Array("ok\n".utf8))
        case (.get, "/keys"):
            return (200, "application/json", handler.keysJSON())
        case (.get, "/test/ticket-key-material"):
            guard let body = handler.keyMaterialJSON() else { return (404, "text/plain", Array("not found\n".utf8)) }
            return (200, "application/json", body)
        case (.post, "/keys/rotate"):
            let r = handler.rotateKeys()
            return (r.ok ? 200 : 409, "text/plain", Array((r.message + "\n").utf8))
        case (.post, "/reload"):
            let r = handler.reload()
            return (r.ok ? 200 : 422, "text/plain", Array((r.message + "\n").utf8))
        case (_, "/metrics"), (_, "/healthz"), (_, "/keys"), (_, "/keys/rotate"), (_, "/reload"):
            return (405, "text/plain", Array("method not allowed\n".utf8))
        default:
            return (404, "text/plain", Array("not found\n".utf8))
        }
    }
}

private final class AdminConnection: EventHandler {
    let fd: Int32
    unowned let server: AdminServer
    private var parser = RequestParser()
    private var buf = [UInt8](repeating: 0, count: 8192)

    init(fd: Int32, server: AdminServer) {
        self.fd = fd
        self.server = server
    }

    func handleEvent(_ events: UInt32) {
        while true {
            let r = buf.withUnsafeMutableBytes { try? Socket.read(fd, $0) }
            guard let r else { return server.finished(self) }
            switch r {
            case .wouldBlock: return
            case .processed(0): return server.finished(self)
            case .processed(let n):
                let ev = buf.withUnsafeBytes { parser.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                switch ev {
                case .head:
                    let head = parser.head
                    let (status, type, body) = server.respond(method: head.method, path: head.target)
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
                    writeAll(out)
                    return server.finished(self)
                case .error(let e):
                    var out: [UInt8] = []
                    HTTP1Writer.appendErrorResponse(e, to: &out)
                    writeAll(out)
                    return server.finished(self)
                default:
                    continue
                }
            }
        }
    }

    /// Admin responses are small; a short blocking-style loop on a local socket is acceptable here (control
    /// thread, never a worker).
    private func writeAll(_ bytes: [UInt8]) {
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
