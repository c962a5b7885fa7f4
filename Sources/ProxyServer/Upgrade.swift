import CProxyShims
import Glibc
import Logging
import ProxyEventLoop

/// Zero-downtime binary upgrade, triggered by SIGUSR2 (nginx's and HAProxy's signal for it).
///
/// The running process starts the executable found at the path it was started from (the new binary once it has
/// been installed there) with the same arguments, and hands it its listening sockets: the new process inherits
/// them as file descriptors 3, 4, … (named in `EDGEPROXY_LISTEN_FDS`) and uses them instead of binding new ones.
/// Both processes then accept from the *same* sockets, so no connection waiting in an accept queue is lost — with
/// separate SO_REUSEPORT sockets, closing the old process's listeners would reset every connection queued on them.
/// The new process writes `READY` to the pipe named in `EDGEPROXY_UPGRADE_READY_FD` once its workers run; only
/// then does the old one drain (stop accepting, answer what is in flight with `Connection: close`, exit 0). If the
/// new process fails before it is ready, the old one logs why and keeps serving.
///
/// Under systemd (Type=notify, NotifyAccess=all) the new process announces itself with `MAINPID=` and `READY=1`.
enum Upgrade {
    static let listenFdsVariable = "EDGEPROXY_LISTEN_FDS"
    static let readyFdVariable = "EDGEPROXY_UPGRADE_READY_FD"

    /// The executable this process was started from, read at start (after an upgrade installs a new binary there,
    /// `/proc/self/exe` names a deleted file; this path names the new one).
    static func executablePath() -> String? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        let path = buf.withUnsafeBufferPointer { p in
            String(decoding: UnsafeRawBufferPointer(start: p.baseAddress, count: n), as: UTF8.self)
        }
        return path.hasSuffix(" (deleted)") ? String(path.dropLast(" (deleted)".count)) : path
    }
}

/// The listening sockets and the readiness pipe a previous process handed over (read once at start).
struct InheritedListeners {
    var fds: [Int32]
    var readyFd: Int32?

    /// Reads and clears the upgrade variables; nil when this process was not started by an upgrade.
    static func fromEnvironment() throws(SyscallErrorLike) -> InheritedListeners? {
        guard let raw = getenv(Upgrade.listenFdsVariable).map({ String(cString: $0) }) else { return nil }
        let ready = getenv(Upgrade.readyFdVariable).map { String(cString: $0) }
        unsetenv(Upgrade.listenFdsVariable)
        unsetenv(Upgrade.readyFdVariable)
        var fds: [Int32] = []
        for part in raw.split(separator: ",") {
            guard let fd = Int32(part), fd >= 3, isListeningSocket(fd) else {
                throw SyscallErrorLike("\(Upgrade.listenFdsVariable)=\(raw): \(part) is not a listening socket")
            }
            // Ours now: non-blocking like every listener, and not passed on to anything we start.
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            fds.append(fd)
        }
        guard !fds.isEmpty else { throw SyscallErrorLike("\(Upgrade.listenFdsVariable) is empty") }
        var readyFd: Int32? = nil
        if let r = ready, let fd = Int32(r), fcntl(fd, F_GETFD) >= 0 {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            readyFd = fd
        }
        return InheritedListeners(fds: fds, readyFd: readyFd)
    }

    private static func isListeningSocket(_ fd: Int32) -> Bool {
        var v: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v == 1
    }

    /// Whether the inherited sockets serve `wanted` (port 0 — tests — matches any port on the same host).
    func check(against wanted: SocketAddress) throws(SyscallErrorLike) -> SocketAddress {
        guard let bound = Socket.localAddress(fds[0]) else {
            throw SyscallErrorLike("cannot read the address of inherited listener \(fds[0])")
        }
        let same = bound == wanted || (wanted.port == 0 && bound.host == wanted.host && bound.family == wanted.family)
        guard same else {
            throw SyscallErrorLike(
                "the inherited listeners are bound to \(bound) but listen is \(wanted): the listen address changes "
                    + "only with a restart, not with an upgrade"
            )
        }
        return bound
    }

    /// Tells the previous process that this one serves; it then drains.
    func signalReady() {
        guard let fd = readyFd else { return }
        let msg = Array("READY \(getpid())\n".utf8)
        _ = msg.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }
}

/// A new process started by SIGUSR2, until it reports ready (or dies first). Lives on the control loop.
final class UpgradeChild: EventHandler {
    let pid: pid_t
    private let readFd: Int32
    private let loop: EventLoop
    private var received: [UInt8] = []
    private var done = false
    private let onReady: (pid_t) -> Void
    private let onFailure: (pid_t, String) -> Void

    /// Starts `executable` with `arguments` (argv[0] included) and the environment of this process, handing it
    /// `listenFds` as fds 3… and a readiness pipe.
    init(
        executable: String,
        arguments: [String],
        listenFds: [Int32],
        loop: EventLoop,
        onReady: @escaping (pid_t) -> Void,
        onFailure: @escaping (pid_t, String) -> Void
    ) throws(SyscallErrorLike) {
        var p: [Int32] = [-1, -1]
        guard cps_pipe2_cloexec_nonblock(&p) == 0 else {
            throw SyscallErrorLike("pipe2: \(String(cString: strerror(errno)))")
        }
        // The child's descriptors: listeners at 3..<3+n, the pipe's write end right after. Copies above any of
        // those numbers first, so no dup2 overwrites a source another one still needs.
        let sources = listenFds + [p[1]]
        var high: [Int32] = []
        defer {
            for fd in high { close(fd) }
            close(p[1])
        }
        for fd in sources {
            let h = fcntl(fd, F_DUPFD_CLOEXEC, Int32(3 + sources.count + 64))
            guard h >= 0 else {
                close(p[0])
                throw SyscallErrorLike("dup: \(String(cString: strerror(errno)))")
            }
            high.append(h)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (i, h) in high.enumerated() { posix_spawn_file_actions_adddup2(&actions, h, Int32(3 + i)) }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // This thread blocks the signals the server reads through signalfd; the new process must start without.
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let fdList = (0..<listenFds.count).map { "\(3 + $0)" }.joined(separator: ",")
        var env: [String] = []
        var e: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = environ
        while let cur = e, let s = cur.pointee {
            let entry = String(cString: s)
            if !entry.hasPrefix(Upgrade.listenFdsVariable + "=") && !entry.hasPrefix(Upgrade.readyFdVariable + "=") {
                env.append(entry)
            }
            e = cur + 1
        }
        env.append("\(Upgrade.listenFdsVariable)=\(fdList)")
        env.append("\(Upgrade.readyFdVariable)=\(3 + listenFds.count)")

        var cArgs: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        var cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer {
            for a in cArgs { free(a) }
            for a in cEnv { free(a) }
        }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, &attr, &cArgs, &cEnv)
        guard rc == 0 else {
            close(p[0])
            throw SyscallErrorLike("cannot start \(executable): \(String(cString: strerror(rc)))")
        }
        pid = child
        readFd = p[0]
        self.loop = loop
        self.onReady = onReady
        self.onFailure = onFailure
        do {
            try loop.register(fd: readFd, interest: EventLoop.readable, handler: self)
        } catch {
            close(readFd)
            throw SyscallErrorLike("cannot watch the upgrade pipe: \(error)")
        }
    }

    func handleEvent(_ events: UInt32) {
        guard !done else { return }
        var buf = [UInt8](repeating: 0, count: 256)
        while true {
            let n = buf.withUnsafeMutableBytes { read(readFd, $0.baseAddress, $0.count) }
            if n > 0 {
                received += buf[0..<n]
                if received.count > 4096 { received.removeFirst(received.count - 4096) }
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if String(decoding: received, as: UTF8.self).hasPrefix("READY") { finish(ready: true) }
                return
            }
            // EOF (or an error): the child closed the pipe — after READY, or by exiting.
            finish(ready: String(decoding: received, as: UTF8.self).hasPrefix("READY"))
            return
        }
    }

    private func finish(ready: Bool) {
        done = true
        loop.deregister(fd: readFd)
        close(readFd)
        if ready {
            onReady(pid)
            return
        }
        // It closed the pipe without READY: it is exiting. Reap it (briefly blocking) and say how it ended.
        var status: Int32 = 0
        var why = "it closed the readiness pipe"
        for _ in 0..<200 {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                let code = (status >> 8) & 0xff
                let sig = status & 0x7f
                why = sig == 0 ? "it exited with status \(code)" : "it was killed by signal \(sig)"
                break
            }
            if r < 0 { break }
            usleep(10_000)
        }
        onFailure(pid, why)
    }
}

/// The old process's side of an upgrade: at most one new process at a time; drains once it is ready.
final class UpgradeCoordinator {
    private let logger: Logger
    /// Read at start, before anything could replace the binary (see ``Upgrade/executablePath()``).
    private let executable: String?
    private var child: UpgradeChild?

    init(logger: Logger) {
        self.logger = logger
        self.executable = Upgrade.executablePath()
    }

    /// SIGUSR2: start the binary at the original path with the same arguments and our listeners; call `drain` once
    /// it reports ready. Ignored while draining or while a previous upgrade is still starting.
    func start(listenFds: [Int32], draining: Bool, loop: EventLoop, drain: @escaping () -> Void) {
        guard !draining else {
            logger.warning("SIGUSR2 ignored: this process is already draining")
            return
        }
        guard child == nil else {
            logger.warning("SIGUSR2 ignored: new process \(child!.pid) is still starting")
            return
        }
        guard let exe = executable else {
            logger.error("upgrade failed: cannot tell which executable this process was started from")
            return
        }
        do {
            let c = try UpgradeChild(
                executable: exe,
                arguments: CommandLine.arguments,
                listenFds: listenFds,
                loop: loop,
                onReady: { [unowned self] pid in
                    self.child = nil
                    self.logger.notice("upgrade: new process \(pid) is ready; this one drains now")
                    drain()
                },
                onFailure: { [unowned self] pid, why in
                    self.child = nil
                    self.logger.error(
                        "upgrade failed: new process \(pid) stopped before it was ready (\(why)); still serving"
                    )
                }
            )
            child = c
            logger.notice("SIGUSR2: upgrade: started \(exe) as process \(c.pid) with \(listenFds.count) listener(s)")
        } catch {
            logger.error("upgrade failed: \(error); still serving")
        }
    }
}
