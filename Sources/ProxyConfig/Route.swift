/// One `[[routes]]` entry: which requests go to which pool.
///
/// Routes are tried in the order written; the first whose every given matcher matches wins. A route without
/// matchers matches everything (it must be the last one). Host names are lower-case, without a trailing dot;
/// `*.example.com` matches any name that ends in `.example.com` (at any depth) but not `example.com` itself.
public struct Route: Sendable, Equatable {
    /// `sni`: names matched against the TLS server name the client sent (no SNI never matches).
    public var sni: [String] = []
    /// `host`: names matched against the request's Host (HTTP/1) or `:authority` (HTTP/2), port removed.
    public var host: [String] = []
    /// `path_prefix`: starts with `/`; matches whole segments (`/api` matches `/api`, `/api/x` and `/api?q`,
    /// not `/apix`); a prefix ending in `/` matches as written.
    public var pathPrefix: String? = nil
    /// `upstream`: the pool's name.
    public var upstream: String
    /// `websocket` (default true): HTTP/1.1 `Upgrade` requests (with `Connection: upgrade`) are forwarded and a
    /// `101 Switching Protocols` answer becomes a tunnel; RFC 8441 extended CONNECT over HTTP/2 is translated to
    /// such an upgrade. False: `Upgrade` is stripped like any hop-by-hop field (the origin sees a plain request)
    /// and an extended CONNECT is answered 501.
    public var websocket: Bool

    public init(
        sni: [String] = [],
        host: [String] = [],
        pathPrefix: String? = nil,
        upstream: String,
        websocket: Bool = true
    ) {
        self.sni = sni
        self.host = host
        self.pathPrefix = pathPrefix
        self.upstream = upstream
        self.websocket = websocket
    }

    /// Whether the route has no matcher at all (a catch-all).
    public var isCatchAll: Bool { sni.isEmpty && host.isEmpty && pathPrefix == nil }

    /// Whether every request this route matches is also matched by `earlier` (so this one can never be chosen
    /// when `earlier` comes first).
    public func isShadowed(by earlier: Route) -> Bool {
        func covers(_ a: [String], _ b: [String]) -> Bool {
            if a.isEmpty { return true }
            if b.isEmpty { return false }
            return b.allSatisfy { name in a.contains { Route.pattern($0, covers: name) } }
        }
        guard covers(earlier.sni, sni), covers(earlier.host, host) else { return false }
        guard let outer = earlier.pathPrefix else { return true }
        guard let inner = pathPrefix else { return false }
        return Route.prefix(outer, matches: inner)
    }

    /// Whether host pattern `pattern` matches every name `name` (itself a name or a pattern) matches.
    public static func pattern(_ pattern: String, covers name: String) -> Bool {
        if pattern == name { return true }
        guard pattern.hasPrefix("*.") else { return false }
        return name.hasSuffix(pattern.dropFirst())
    }

    /// Whether `path` is matched by `prefix` under the segment rule described on ``pathPrefix``.
    public static func prefix(_ prefix: String, matches path: String) -> Bool {
        guard path.hasPrefix(prefix) else { return false }
        if prefix.hasSuffix("/") || path.count == prefix.count { return true }
        let next = path[path.index(path.startIndex, offsetBy: prefix.count)]
        return next == "/" || next == "?"
    }

    /// Checks one host pattern: a DNS name, or `*.` followed by one.
    static func validateHostPattern(_ text: String) throws(ValueError) -> String {
        let lower = text.lowercased()
        let name = lower.hasPrefix("*.") ? String(lower.dropFirst(2)) : lower
        if name.contains("*") {
            throw ValueError("\"\(text)\": a wildcard is only allowed as the whole first label (\"*.example.com\")")
        }
        if name.contains(":") { throw ValueError("\"\(text)\": write the name without a port") }
        let host: HostPort.Host
        do { host = try HostPort.Host.parse(name) } catch { throw ValueError("\"\(text)\": \(error.message)") }
        if case .name(let n) = host { return lower.hasPrefix("*.") ? "*." + n : n }
        if lower.hasPrefix("*.") { throw ValueError("\"\(text)\": a wildcard needs a DNS name after it") }
        return host.unbracketed
    }
}
