// How a running proxy tells others it is ready: systemd's notify protocol (a datagram to $NOTIFY_SOCKET, for
// `Type=notify` units; no libsystemd needed, the protocol is one sendto) and an optional state file that
// `edgeproxy health` reads (the container HEALTHCHECK runs without the entrypoint's arguments, so it learns the
// listen and admin addresses from there).
import Glibc

enum ServiceNotifier {
    /// Sends `message` (e.g. "READY=1") to $NOTIFY_SOCKET when set; a no-op otherwise. Abstract sockets start with @.
    static func notify(_ message: String) {
        guard let path = getenv("NOTIFY_SOCKET").map({ String(cString: $0) }), !path.isEmpty else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else { return }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
        }
        let len = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
        let msg = Array(message.utf8)
        _ = withUnsafePointer(to: &addr) { ap in
            ap.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                msg.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, len) }
            }
        }
    }
}

/// `pid=`, `listen=`, `admin=` lines, written atomically (temporary file + rename) once the proxy is ready.
struct StateFile {
    var pid: Int32
    var listen: String
    var admin: String?

    static let environmentName = "EDGEPROXY_STATE_FILE"

    func render() -> String {
        "pid=\(pid)\nlisten=\(listen)\n" + (admin.map { "admin=\($0)\n" } ?? "")
    }

    static func parse(_ text: String) -> StateFile? {
        var values: [Substring: Substring] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            values[line[..<eq]] = line[line.index(after: eq)...]
        }
        guard let pid = values["pid"].flatMap({ Int32($0) }), let listen = values["listen"] else { return nil }
        return StateFile(pid: pid, listen: String(listen), admin: values["admin"].map(String.init))
    }

    func write(to path: String) throws {
        let tmp = path + ".tmp.\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw AdminClient.Failure(description: "cannot write \(tmp): \(String(cString: strerror(errno)))")
        }
        var text = render()
        let ok = text.withUTF8 { Glibc.write(fd, $0.baseAddress, $0.count) == $0.count }
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw AdminClient.Failure(description: "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func read(from path: String) throws -> StateFile {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw AdminClient.Failure(description: "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0, let s = parse(String(decoding: buf[0..<n], as: UTF8.self)) else {
            throw AdminClient.Failure(description: "\(path) is not an edgeproxy state file")
        }
        return s
    }

    /// The address to connect to for a listener bound to `hostPort` (a wildcard becomes the loopback address).
    static func connectable(_ hostPort: String) -> String {
        if hostPort.hasPrefix("0.0.0.0:") { return "127.0.0.1:" + hostPort.dropFirst("0.0.0.0:".count) }
        if hostPort.hasPrefix("[::]:") { return "[::1]:" + hostPort.dropFirst("[::]:".count) }
        return hostPort
    }
}
