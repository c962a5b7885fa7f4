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
    if let literal = SocketAddress(literal: host, port: Int(port)) { return .success([literal]) }
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var res: UnsafeMutablePointer<addrinfo>?
    let rc = getaddrinfo(host, String(port), &hints, &res)
    guard rc == 0, let first = res else {
        let text = rc == EAI_SYSTEM ? String(cString: strerror(errno)) : String(cString: gai_strerror(rc))
        return .failure(ResolveFailure("cannot resolve \"\(host)\": \(text)"))
    }
    defer { freeaddrinfo(first) }
    var out: [SocketAddress] = []
    var cur: UnsafeMutablePointer<addrinfo>? = first
    while let ai = cur {
        if let sa = ai.pointee.ai_addr {
            var ss = sockaddr_storage()
            withUnsafeMutableBytes(of: &ss) { dst in
                dst.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: Int(ai.pointee.ai_addrlen)))
            }
            let addr = SocketAddress(storage: ss, length: ai.pointee.ai_addrlen)
            if !out.contains(addr) { out.append(addr) }
        }
        cur = ai.pointee.ai_next
    }
    if out.isEmpty { return .failure(ResolveFailure("\"\(host)\" resolved to no address")) }
    return .success(out)
}
