/// An origin server that requests are forwarded to, written as an `http://host[:port][/]` or
/// `https://host[:port][/]` URL.
///
/// Requests go to origins over HTTP/1.1, in cleartext (`http://`) or over TLS (`https://`, settings in the pool's
/// `tls` table). The host may be a DNS name, an IPv4 literal or a bracketed IPv6 literal; the port defaults to 80
/// (`http`) or 443 (`https`). Paths (other than `/`), queries, fragments and user information are rejected
/// because the proxy forwards the client's request target unchanged.
public struct Upstream: Sendable, Hashable, CustomStringConvertible {
    public var host: HostPort.Host
    public var port: UInt16
    /// `https://`: the connection to this origin is TLS.
    public var tls: Bool

    public init(host: HostPort.Host, port: UInt16? = nil, tls: Bool = false) {
        self.host = host
        self.port = port ?? (tls ? 443 : 80)
        self.tls = tls
    }

    /// The canonical URL, e.g. `http://[::1]:8080`.
    public var description: String { "\(tls ? "https" : "http")://\(host):\(port)" }

    /// The value for a `Host` header when the origin needs one: `host`, or `host:port` when the port is not the
    /// scheme's default.
    public var hostHeader: String { port == (tls ? 443 : 80) ? "\(host)" : "\(host):\(port)" }

    /// Parses an upstream URL as described on the type; the message names the offending part.
    static func parse(_ text: String) throws(ValueError) -> Upstream {
        guard let schemeEnd = text.range(of: "://") else {
            throw ValueError("upstream \"\(text)\" must be a URL like \"http://127.0.0.1:8080\"")
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else {
            throw ValueError(
                "upstream \"\(text)\": only http:// and https:// upstreams are supported (got \"\(scheme)://\")"
            )
        }
        var rest = text[schemeEnd.upperBound...]
        var path: Substring = ""
        if let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) {
            path = rest[slash...]
            rest = rest[..<slash]
        }
        guard path.isEmpty || path == "/" else {
            throw ValueError("upstream \"\(text)\": a path, query or fragment is not allowed (got \"\(path)\")")
        }
        guard !rest.contains("@") else { throw ValueError("upstream \"\(text)\": user information is not allowed") }
        guard !rest.isEmpty else { throw ValueError("upstream \"\(text)\": the host is missing") }
        let hostPart: Substring
        var portPart: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else {
                throw ValueError("upstream \"\(text)\": unterminated IPv6 literal")
            }
            hostPart = rest[...close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw ValueError("upstream \"\(text)\": unexpected \"\(after)\"") }
                portPart = after.dropFirst()
            }
        } else if let colon = rest.firstIndex(of: ":") {
            hostPart = rest[..<colon]
            portPart = rest[rest.index(after: colon)...]
            if portPart!.contains(":") {
                throw ValueError("upstream \"\(text)\": IPv6 addresses must be in brackets, e.g. http://[::1]:8080")
            }
        } else {
            hostPart = rest
        }
        let host: HostPort.Host
        do {
            host = try HostPort.Host.parse(String(hostPart))
        } catch {
            throw ValueError("upstream \"\(text)\": \(error.message)")
        }
        let port =
            try portPart.map { p throws(ValueError) in try HostPort.parsePort(p, allowZero: false, in: text) }
        return Upstream(host: host, port: port, tls: scheme == "https")
    }
}
