// ProxyEventLoop: our own epoll loop.
//
// Hand-written on purpose: SwiftNIO's loop is the obvious library, but its channel pipeline allocates per event,
// owns the socket, and would sit between OpenSSL and the fd; EdgeProxy runs OpenSSL directly on the socket
// (SSL_set_fd) with one loop per worker thread and no per-request allocation, which needs a loop this small.
import CProxyShims
import Glibc
import ProxyCore

/// The result of a non-blocking call: it did something, or the kernel said EAGAIN.
public enum IOResult<T> {
    case processed(T)
    case wouldBlock
}

/// A failed system call: its name and errno.
public struct SyscallError: Error, CustomStringConvertible, Sendable {
    public let call: StaticString
    public let errno: Int32
    public init(_ call: StaticString, _ errno: Int32) {
        self.call = call
        self.errno = errno
    }
    public var description: String {
        "\(call): \(String(cString: strerror(errno))) (errno \(errno))"
    }

    /// The proxy itself lacks a resource (descriptors, memory, local ports, epoll room): nobody on the other end
    /// of the socket is at fault, and another peer would fail the same way.
    public var isLocalShortage: Bool {
        errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM || errno == EADDRNOTAVAIL
            || errno == ENOSPC
    }
}

/// Every system call goes through here: retries EINTR, maps EAGAIN to `.wouldBlock`, throws the rest.
/// This is the seam tests can replace.
@inline(__always)
public func syscall<T: FixedWidthInteger>(
    _ name: StaticString,
    _ body: () -> T
) throws(SyscallError) -> IOResult<T> {
    while true {
        let r = body()
        if r >= 0 { return .processed(r) }
        let e = Glibc.errno
        switch e {
        case EINTR: continue
        case EAGAIN: return .wouldBlock
        default: throw SyscallError(name, e)
        }
    }
}

/// Like `syscall` for calls that never return EAGAIN meaningfully (setup calls): throws on any failure.
@inline(__always)
@discardableResult
public func syscallChecked<T: FixedWidthInteger>(_ name: StaticString, _ body: () -> T) throws(SyscallError) -> T {
    while true {
        let r = body()
        if r >= 0 { return r }
        let e = Glibc.errno
        if e == EINTR { continue }
        throw SyscallError(name, e)
    }
}
