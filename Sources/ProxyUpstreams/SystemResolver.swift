import Glibc
import ProxyEventLoop

/// Why a name did not resolve (`gai_strerror` text), for logs and `/upstreams`.
public struct ResolveFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Resolves `host` with the system resolver (`getaddrinfo`, so `/etc/hosts`, `nsswitch.conf` and the libc cache
/// apply, exactly as for every other program on the host). Blocking: call it on the resolver thread, at start-up or
/// on reload, never on an event loop. Addresses come back deduplicated in the resolver's order; an empty answer is
/// a failure (a name that vanished keeps its last good addresses).
@Sendable
public func systemResolve(host: String, port: UInt16) -> Result<[SocketAddress], ResolveFailure> {
    switch SocketAddress.lookup(host: host, port: Int(port)) {
    case .failure(let e):
        return .failure(ResolveFailure("cannot resolve \"\(host)\": \(e.message)"))
    case .success(let out) where out.isEmpty:
        return .failure(ResolveFailure("\"\(host)\" resolved to no address"))
    case .success(let out):
        return .success(out)
    }
}
