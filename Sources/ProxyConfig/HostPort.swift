import Foundation

/// A host and a TCP port as written in the configuration: `127.0.0.1:8443`, `[::1]:8443`, `localhost:9000`.
///
/// IPv6 literals are bracketed; IPv4 literals must be dotted quads; anything else must be a valid DNS name
/// (resolved when the socket is bound or connected, not here). Port 0 is accepted where binding is meant, so tests
/// can ask the kernel for a free port.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    /// A host: an address literal, kept in its canonical text form, or a DNS name (lower-cased).
    public enum Host: Sendable, Hashable, CustomStringConvertible {
        case ipv4(String)
        case ipv6(String)
        case name(String)

        /// The host as it goes in a URL authority or `host:port`: IPv6 literals in brackets.
        public var description: String {
            switch self {
            case .ipv4(let a), .name(let a): a
            case .ipv6(let a): "[\(a)]"
            }
        }

        /// The host without brackets, as `getaddrinfo`/`inet_pton` want it.
        public var unbracketed: String {
            switch self {
            case .ipv4(let a), .ipv6(let a), .name(let a): a
            }
        }

        /// Whether the host only reaches this machine: 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104, or `localhost`.
        public var isLoopback: Bool {
            switch self {
            case .ipv4(let a): return a.hasPrefix("127.")
            case .ipv6(let a):
                var bytes = [UInt8](repeating: 0, count: 16)
                guard inet_pton(AF_INET6, a, &bytes) == 1 else { return false }
                if bytes == [UInt8](repeating: 0, count: 15) + [1] { return true }
                return bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xff && bytes[11] == 0xff
                    && bytes[12] == 127
            case .name(let n): return n == "localhost" || n.hasSuffix(".localhost")
            }
        }

        /// Parses a host: a bracketed IPv6 literal (`[::1]`, zone IDs rejected), a dotted-quad IPv4 literal or a
        /// DNS name (lower-cased, trailing dot dropped).
        static func parse(_ text: String) throws(ValueError) -> Host {
            if text.hasPrefix("[") {
                guard text.hasSuffix("]"), text.count > 2 else {
                    throw ValueError("unterminated IPv6 literal \"\(text)\"")
                }
                let inner = String(text.dropFirst().dropLast())
                var bytes = [UInt8](repeating: 0, count: 16)
                guard !inner.contains("%"), inet_pton(AF_INET6, inner, &bytes) == 1 else {
                    throw ValueError("\"\(inner)\" is not a valid IPv6 address")
                }
                var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
                inet_ntop(AF_INET6, bytes, &buffer, socklen_t(buffer.count))
                return .ipv6(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            if text.contains(":") {
                throw ValueError("IPv6 addresses must be written in brackets, e.g. \"[::1]:8443\" (got \"\(text)\")")
            }
            guard !text.isEmpty else { throw ValueError("the host is empty") }
            if text.utf8.allSatisfy({ ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || $0 == UInt8(ascii: ".") })
            {
                // Strictly four decimal octets; inet_pton(AF_INET) rejects the octal/hex/short forms inet_aton allows.
                var address = in_addr()
                guard inet_pton(AF_INET, text, &address) == 1 else {
                    throw ValueError("\"\(text)\" is not a valid IPv4 address")
                }
                return .ipv4(text)
            }
            let name = text.lowercased()
            let trimmed = name.hasSuffix(".") ? String(name.dropLast()) : name
            let labels = trimmed.split(separator: ".", omittingEmptySubsequences: false)
            let validLabels = labels.allSatisfy { label in
                !label.isEmpty && label.utf8.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                    && label.utf8.allSatisfy { b in
                        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z"))
                            || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
                            || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")
                    }
            }
            guard validLabels, trimmed.utf8.count <= 253 else {
                throw ValueError("\"\(text)\" is not a valid host name or IP address")
            }
            return .name(trimmed)
        }
    }

    public var host: Host
    public var port: UInt16

    public init(host: Host, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// `127.0.0.1:8443`, `[::1]:8443`.
    public var description: String { "\(host):\(port)" }

    /// Parses `host:port`; the port is required and must be 0...65535 (1...65535 unless `allowPortZero`).
    static func parse(_ text: String, allowPortZero: Bool) throws(ValueError) -> HostPort {
        let example = "write host:port, e.g. \"127.0.0.1:8443\" or \"[::1]:8443\""
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw ValueError("unterminated IPv6 literal in \"\(text)\"")
            }
            hostPart = text[...close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw ValueError("missing port in \"\(text)\"; \(example)") }
            portPart = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw ValueError("missing port in \"\(text)\"; \(example)")
            }
            if text[..<colon].contains(":") {
                throw ValueError("IPv6 addresses must be written in brackets, e.g. \"[::1]:8443\" (got \"\(text)\")")
            }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        let host = try Host.parse(String(hostPart))
        let port = try parsePort(portPart, allowZero: allowPortZero, in: text)
        return HostPort(host: host, port: port)
    }

    static func parsePort(_ text: Substring, allowZero: Bool, in whole: String) throws(ValueError) -> UInt16 {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let value = Int(text), value <= 65535
        else { throw ValueError("invalid port \"\(text)\" in \"\(whole)\"; ports are 1...65535") }
        guard allowZero || value != 0 else { throw ValueError("port 0 is not allowed in \"\(whole)\"") }
        return UInt16(value)
    }
}
