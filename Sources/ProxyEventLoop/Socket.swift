import CProxyShims
import Glibc

/// Thin, allocation-free socket helpers over raw fds. All non-blocking; all through `syscall`.
public enum Socket {
    /// Creates a non-blocking listening socket with SO_REUSEADDR and SO_REUSEPORT (one per worker).
    public static func listen(
        on addr: SocketAddress,
        backlog: Int32 = 4096,
        reusePort: Bool
    ) throws(SyscallError)
        -> Int32
    {
        let fd = try syscallChecked("socket") {
            Glibc.socket(addr.family, Int32(SOCK_STREAM.rawValue) | cps_sock_nonblock() | cps_sock_cloexec(), 0)
        }
        do {
            var one: Int32 = 1
            let sz = socklen_t(MemoryLayout<Int32>.size)
            try syscallChecked("setsockopt(SO_REUSEADDR)") { setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sz) }
            if reusePort {
                try syscallChecked("setsockopt(SO_REUSEPORT)") { setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sz) }
            }
            if addr.family == AF_INET6 {
                try syscallChecked("setsockopt(IPV6_V6ONLY)") {
                    setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, sz)
                }
            }
            _ = try addr.withSockAddr { (sa, len) throws(SyscallError) in
                try syscallChecked("bind") { Glibc.bind(fd, sa, len) }
            }
            try syscallChecked("listen") { Glibc.listen(fd, backlog) }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    /// Accepts one connection (non-blocking, close-on-exec). `.wouldBlock` when the queue is empty.
    public static func accept(_ fd: Int32, peer: inout SocketAddress) throws(SyscallError) -> IOResult<Int32> {
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return try withUnsafeMutablePointer(to: &peer.storage) { p throws(SyscallError) in
            let r = try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(SyscallError) in
                try syscall("accept4") { cps_accept4(fd, sa, &len, cps_sock_nonblock() | cps_sock_cloexec()) }
            }
            peer.length = len
            return r
        }
    }

    /// True for the accept errors that mean "out of file descriptors or kernel memory" (EMFILE, ENFILE, ENOBUFS,
    /// ENOMEM): the pending connection stays queued, so a level-triggered listener would wake the loop again at
    /// once. The caller must stop polling the listener for a while instead of retrying (nginx disables accept
    /// events the same way).
    public static func isResourceExhaustion(_ error: SyscallError) -> Bool {
        switch error.errno {
        case EMFILE, ENFILE, ENOBUFS, ENOMEM: return true
        default: return false
        }
    }

    /// What has arrived on a fresh connection before anything is allocated for it (see `firstRecordState`).
    public enum FirstRecord: Equatable {
        /// Nothing yet, or less than one complete TLS record: wait for the next readability edge.
        case incomplete
        /// The first TLS record (or enough bytes for a non-TLS peer to be answered) is in the socket buffer.
        case ready
        /// The peer closed before sending anything.
        case closedEmpty
        /// A socket error (reset).
        case failed
    }

    /// Largest first-record length waited for: a TLS plaintext record holds at most 2^14 bytes; a peer that
    /// announces more is left to the TLS library to refuse once this much has arrived.
    static let maxFirstRecord = 5 + 16_384 + 2_048

    /// Peeks (never consumes) the bytes a new connection sent: `.ready` once its first TLS record has arrived
    /// whole, so a peer that connects and says nothing, or trickles its ClientHello, costs no TLS state or
    /// buffers. A first byte that is not a TLS handshake record is `.ready` at once (the TLS library answers it).
    ///
    /// One `recv(MSG_PEEK)` into `scratch` (the caller's, reused: a 4 KiB one holds nearly every ClientHello)
    /// answers it: a peek returns everything queued up to its size, so a short peek that ends before the record
    /// does means the record is incomplete. Only a record longer than `scratch` costs a second call (FIONREAD).
    /// (A 5-byte peek plus FIONREAD made two system calls for every connection.)
    public static func firstRecordState(_ fd: Int32, scratch: UnsafeMutableRawBufferPointer) -> FirstRecord {
        precondition(scratch.count >= 5)
        let n = Glibc.recv(fd, scratch.baseAddress, scratch.count, Int32(MSG_PEEK))
        if n < 0 {
            let e = errno
            return e == EAGAIN || e == EINTR ? .incomplete : .failed
        }
        if n == 0 { return .closedEmpty }
        if scratch[0] != 22 { return .ready }  // not a handshake record: let TLS send its alert now
        if n < 5 { return .incomplete }
        let need = min(5 + (Int(scratch[3]) << 8 | Int(scratch[4])), maxFirstRecord)
        if n >= need { return .ready }
        if n < scratch.count { return .incomplete }
        var available: Int32 = 0
        guard Glibc.ioctl(fd, UInt(FIONREAD), &available) == 0 else { return .ready }
        return Int(available) >= need ? .ready : .incomplete
    }

    /// Starts a non-blocking connect. Returns true when already connected, false when in progress.
    public static func connect(_ addr: SocketAddress) throws(SyscallError) -> (fd: Int32, connected: Bool) {
        let fd = try syscallChecked("socket") {
            Glibc.socket(addr.family, Int32(SOCK_STREAM.rawValue) | cps_sock_nonblock() | cps_sock_cloexec(), 0)
        }
        setNoDelay(fd)
        let r = addr.withSockAddr { sa, len in Glibc.connect(fd, sa, len) }
        if r == 0 { return (fd, true) }
        let e = errno
        if e == EINPROGRESS || e == EINTR { return (fd, false) }
        Glibc.close(fd)
        throw SyscallError("connect", e)
    }

    /// SO_ERROR of a socket (0 when a non-blocking connect succeeded).
    public static func pendingError(_ fd: Int32) -> Int32 {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 { return errno }
        return err
    }

    public static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    public static func read(_ fd: Int32, _ buf: UnsafeMutableRawBufferPointer) throws(SyscallError) -> IOResult<Int> {
        try syscall("read") { Glibc.read(fd, buf.baseAddress, buf.count) }
    }

    public static func write(_ fd: Int32, _ buf: UnsafeRawBufferPointer) throws(SyscallError) -> IOResult<Int> {
        try syscall("write") { Glibc.send(fd, buf.baseAddress, buf.count, Int32(MSG_NOSIGNAL)) }
    }

    /// For an idle keep-alive connection: true when the peer closed it, reset it, or sent bytes nobody asked
    /// for (all make it unusable); false when there is simply nothing to read.
    public static func peekClosedOrData(_ fd: Int32) -> Bool {
        var b: UInt8 = 0
        let n = Glibc.recv(fd, &b, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        if n < 0 { return errno != EAGAIN && errno != EINTR }
        return true
    }

    /// Copies up to `buf.count` waiting bytes without consuming them. The count, 0 at EOF, -1 when nothing is
    /// there yet (EAGAIN), -2 on an error.
    public static func peek(_ fd: Int32, _ buf: UnsafeMutableRawBufferPointer) -> Int {
        let n = Glibc.recv(fd, buf.baseAddress, buf.count, Int32(MSG_PEEK | MSG_DONTWAIT))
        if n >= 0 { return n }
        return errno == EAGAIN || errno == EINTR ? -1 : -2
    }

    /// Consumes exactly `count` bytes already seen by `peek` (so they are known to be there). False on a failure.
    public static func discard(_ fd: Int32, count: Int) -> Bool {
        var left = count
        var scratch: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        while left > 0 {
            let n = withUnsafeMutableBytes(of: &scratch) { Glibc.recv(fd, $0.baseAddress, min(left, $0.count), 0) }
            if n <= 0 { return false }
            left -= n
        }
        return true
    }

    public static func shutdownWrite(_ fd: Int32) { _ = Glibc.shutdown(fd, Int32(SHUT_WR)) }

    /// Closes with an RST instead of a FIN (SO_LINGER 0): used when a response must not look complete.
    public static func abort(_ fd: Int32) {
        var l = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        Glibc.close(fd)
    }

    public static func close(_ fd: Int32) { Glibc.close(fd) }

    public static func localAddress(_ fd: Int32) -> SocketAddress? {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &ss) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return r == 0 ? SocketAddress(storage: ss, length: len) : nil
    }
}
