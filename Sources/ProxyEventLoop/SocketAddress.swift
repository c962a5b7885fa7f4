import CProxyShims
import Glibc

/// An IPv4 or IPv6 socket address, stored inline (no allocation).
public struct SocketAddress: Sendable, CustomStringConvertible, Equatable {
    public var storage: sockaddr_storage
    public var length: socklen_t

    public init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        self.length = length
    }

    public static func == (a: SocketAddress, b: SocketAddress) -> Bool {
        a.description == b.description
    }

    /// Parses "1.2.3.4:80", "[::1]:80" (literal addresses only).
    public init?(literal host: String, port: Int) {
        guard (0...65535).contains(port) else { return nil }
        var ss = sockaddr_storage()
        if host.contains(":") {
            var a6 = sockaddr_in6()
            a6.sin6_family = sa_family_t(AF_INET6)
            a6.sin6_port = in_port_t(UInt16(port).bigEndian)
            guard inet_pton(AF_INET6, host, &a6.sin6_addr) == 1 else { return nil }
            withUnsafeMutableBytes(of: &ss) { dst in withUnsafeBytes(of: a6) { dst.copyMemory(from: $0) } }
            self.init(storage: ss, length: socklen_t(MemoryLayout<sockaddr_in6>.size))
        } else {
            var a4 = sockaddr_in()
            a4.sin_family = sa_family_t(AF_INET)
            a4.sin_port = in_port_t(UInt16(port).bigEndian)
            guard inet_pton(AF_INET, host, &a4.sin_addr) == 1 else { return nil }
            withUnsafeMutableBytes(of: &ss) { dst in withUnsafeBytes(of: a4) { dst.copyMemory(from: $0) } }
            self.init(storage: ss, length: socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }

    /// Resolves a host name or literal (blocking getaddrinfo: call at start-up or reload only, never on a loop).
    public static func resolve(host: String, port: Int) -> [SocketAddress] {
        (try? lookup(host: host, port: port).get()) ?? []
    }

    /// Why `lookup` found no address: getaddrinfo's own text (or errno's, for EAI_SYSTEM).
    public struct LookupError: Error, Sendable {
        public let message: String
    }

    /// `resolve`, with getaddrinfo's reason when it fails (an empty list is a success with no address).
    public static func lookup(host: String, port: Int) -> Result<[SocketAddress], LookupError> {
        if let lit = SocketAddress(literal: host, port: port) { return .success([lit]) }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0, let first = res else {
            let text = rc == EAI_SYSTEM ? String(cString: strerror(errno)) : String(cString: gai_strerror(rc))
            return .failure(LookupError(message: text))
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
        return .success(out)
    }

    public var family: Int32 { Int32(storage.ss_family) }

    public var port: Int {
        withUnsafeBytes(of: storage) { raw in
            if family == AF_INET6 {
                return Int(UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port))
            }
            return Int(UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port))
        }
    }

    /// The address without the port ("1.2.3.4" or "::1").
    public var host: String { String(decoding: hostBytes, as: UTF8.self) }

    /// `host` as ASCII bytes (what X-Forwarded-For and hashing take). IPv4 is formatted here: glibc's inet_ntop
    /// goes through sprintf, ~1,700 instructions per accepted connection, this ~100. IPv6 still uses inet_ntop
    /// (its "::" compression rules are not worth repeating).
    public var hostBytes: [UInt8] {
        withUnsafeBytes(of: storage) { raw -> [UInt8] in
            if family == AF_INET6 {
                var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
                var a = raw.load(as: sockaddr_in6.self).sin6_addr
                inet_ntop(AF_INET6, &a, &buf, socklen_t(buf.count))
                return buf.withUnsafeBufferPointer { b in
                    Array(UnsafeRawBufferPointer(start: b.baseAddress!, count: strlen(b.baseAddress!)))
                }
            }
            // sockaddr_in: family(2) port(2) addr(4), the address in network byte order.
            var out: [UInt8] = []
            out.reserveCapacity(15)
            for i in 4..<8 {
                let v = raw[i]
                if i > 4 { out.append(UInt8(ascii: ".")) }
                if v >= 100 { out.append(48 + v / 100) }
                if v >= 10 { out.append(48 + v / 10 % 10) }
                out.append(48 + v % 10)
            }
            return out
        }
    }

    /// The IP address's bytes (4 for IPv4, 16 for IPv6), for network matching.
    public var addressBytes: [UInt8] {
        withUnsafeBytes(of: storage) { raw -> [UInt8] in
            if family == AF_INET6 {
                var a = raw.load(as: sockaddr_in6.self).sin6_addr
                return withUnsafeBytes(of: &a) { Array($0) }
            }
            var a = raw.load(as: sockaddr_in.self).sin_addr
            return withUnsafeBytes(of: &a) { Array($0) }
        }
    }

    public var description: String {
        family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Calls `body` with a `sockaddr` pointer to this address.
    public func withSockAddr<R, E: Error>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws(E) -> R) throws(E) -> R {
        var ss = storage
        let len = length
        return try withUnsafePointer(to: &ss) { (p) throws(E) -> R in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { (sa) throws(E) -> R in try body(sa, len) }
        }
    }
}

/// Splits "host:port" / "[v6]:port" into parts; nil when malformed.
public func splitHostPort(_ s: String) -> (host: String, port: Int)? {
    if s.hasPrefix("[") {
        guard let close = s.firstIndex(of: "]") else { return nil }
        let host = String(s[s.index(after: s.startIndex)..<close])
        let rest = s[s.index(after: close)...]
        guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()), (0...65535).contains(p) else { return nil }
        return (host, p)
    }
    guard let colon = s.lastIndex(of: ":") else { return nil }
    let host = String(s[..<colon])
    guard !host.isEmpty, !host.contains(":"), let p = Int(s[s.index(after: colon)...]), (0...65535).contains(p)
    else { return nil }
    return (host, p)
}
