// A minimal blocking HTTP/1.1 client for an instance's admin listener (`keys status`, `health`): one request per
// connection, tiny responses. The response is read with the proxy's own parser (ProxyHTTP1.ResponseParser), so
// status line, framing (Content-Length, chunked, close-delimited) and malformed answers are handled the same way
// the proxy handles origins.
import Glibc
import ProxyConfig
import ProxyHTTP1

enum AdminClient {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    struct Response {
        var status: Int
        var body: [UInt8]
    }

    /// GET `path`; returns the body of a 200 response, throws `Failure` otherwise.
    static func get(_ hostPort: String, _ path: String, timeoutSeconds: Int = 5) throws -> String {
        let r = try request(hostPort, method: "GET", path: path, timeoutSeconds: timeoutSeconds)
        guard r.status == 200 else {
            throw Failure(
                description: "admin API answered \(r.status): \(String(decoding: r.body.prefix(200), as: UTF8.self))"
            )
        }
        return String(decoding: r.body, as: UTF8.self)
    }

    static func request(_ hostPort: String, method: String, path: String, timeoutSeconds: Int) throws -> Response {
        let fd = try connectTo(hostPort, timeoutSeconds: timeoutSeconds)
        defer { close(fd) }
        // An instance with an admin token (issue 16 §2) needs it: taken from the same environment variable.
        let auth = getenv(ConfigOverrides.Flag.adminTokenEnvironment).map {
            "Authorization: Bearer \(String(cString: $0))\r\n"
        }
        let req = Array(
            "\(method) \(path) HTTP/1.1\r\nHost: \(hostPort)\r\n\(auth ?? "")Connection: close\r\n\r\n".utf8
        )
        var sent = 0
        while sent < req.count {
            let n = req.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw Failure(description: "cannot send to \(hostPort): \(String(cString: strerror(errno)))")
            }
            sent += n
        }
        var parser = ResponseParser()
        var pending: [UInt8] = []
        var status = 0
        var body: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        var eof = false
        while true {
            let event: ParseEvent =
                eof ? parser.finish() : pending.withUnsafeBytes { parser.parse($0, requestIsHEAD: method == "HEAD") }
            switch event {
            case .needMore:
                if eof { throw Failure(description: "no HTTP response from \(hostPort)") }
                let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n < 0 && errno == EINTR { continue }
                if n < 0 {
                    throw Failure(description: "no answer from \(hostPort): \(String(cString: strerror(errno)))")
                }
                if n == 0 { eof = true } else { pending += buf[0..<n] }
            case .informational(let consumed):
                pending.removeFirst(consumed)
            case .head(let consumed):
                status = parser.head.status
                pending.removeFirst(consumed)
            case .body(let range, let consumed):
                body += pending[range]
                pending.removeFirst(consumed)
            case .end:
                return Response(status: status, body: body)
            case .error(let e):
                throw Failure(description: "malformed HTTP response from \(hostPort): \(e)")
            }
        }
    }

    /// A blocking TCP connection with send/receive timeouts (HOST:PORT, IPv6 hosts in brackets).
    static func connectTo(_ hostPort: String, timeoutSeconds: Int) throws -> Int32 {
        guard let colon = hostPort.lastIndex(of: ":"), let port = UInt16(hostPort[hostPort.index(after: colon)...])
        else {
            throw Failure(description: "address must be HOST:PORT (got \(hostPort))")
        }
        var host = String(hostPort[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, "\(port)", &hints, &res) == 0, let ai = res else {
            throw Failure(description: "cannot resolve \(host)")
        }
        defer { freeaddrinfo(res) }
        let fd = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 else {
            let e = errno
            close(fd)
            throw Failure(description: "cannot connect to \(hostPort): \(String(cString: strerror(e)))")
        }
        return fd
    }
}
