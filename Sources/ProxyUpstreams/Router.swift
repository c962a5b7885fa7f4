import ProxyConfig

/// What the router decided for one request.
public enum RouteDecision: Sendable, Equatable {
    /// Forward to the pool at this index of ``UpstreamSnapshot/pools``.
    case pool(Int)
    /// Answer with this status and never contact an origin: 421 (the TLS server name and the Host name two
    /// different configured sites), 404 (no route matches and there is no default pool).
    case reject(UInt16)
}

/// A routing decision with the matched route's options.
public struct RouteMatch: Sendable, Equatable {
    public var decision: RouteDecision
    /// `websocket` of the matched route (true for the default pool): HTTP/1.1 Upgrade and RFC 8441 extended
    /// CONNECT requests may be tunnelled.
    public var websocket: Bool

    public init(_ decision: RouteDecision, websocket: Bool = true) {
        self.decision = decision
        self.websocket = websocket
    }
}

/// Routes compiled for matching on raw request bytes: `[[routes]]` in order, then the default pool.
///
/// The rules (README "Fronting origins"):
/// 1. **421 Misdirected Request** when the client sent an SNI name and a Host that are both configured names
///    (a name in some route's `sni` or `host`) but no single route's names cover both — the connection was set up
///    for one site and the request asks for another (e.g. an HTTP/2 connection reused across certificates).
///    Aliases listed in one route, or covered by one wildcard, may share a connection.
/// 2. Otherwise the first route whose every matcher matches: `sni` against the SNI name, `host` against the
///    Host (or `:authority`) without port and trailing dot, ASCII case-insensitively; `path_prefix` against the
///    path (case-sensitive, whole segments) after removing dot segments and decoding percent-encoded unreserved
///    characters, so `/public/../admin` and `/%61dmin` are matched as `/admin`.
/// 3. Otherwise the default pool when there is one, else **404**.
///
/// The third status, **502**, is the caller's: a pool with no address at all (a DNS name never resolved).
/// Matching reads the bytes in place; only a path with dot segments or `%` is copied.
public struct Router: Sendable {
    struct Pattern: Sendable {
        /// Lower-case name, or for `*.example.com` the suffix `.example.com`.
        var bytes: [UInt8]
        var isWildcard: Bool

        init(_ text: String) {
            isWildcard = text.hasPrefix("*.")
            bytes = Array((isWildcard ? String(text.dropFirst()) : text).utf8)
        }

        func matches(_ name: UnsafeRawBufferPointer) -> Bool {
            if isWildcard {
                guard name.count > bytes.count else { return false }
                return Router.equalsLowercased(
                    UnsafeRawBufferPointer(rebasing: name[(name.count - bytes.count)...]),
                    bytes
                )
            }
            return Router.equalsLowercased(name, bytes)
        }
    }

    struct CompiledRoute: Sendable {
        var sni: [Pattern]
        var host: [Pattern]
        var prefix: [UInt8]?
        var pool: Int
        var websocket: Bool
        /// Whether the route names a site (has `sni` or `host`), so it takes part in the 421 rule.
        var namesSite: Bool { !sni.isEmpty || !host.isEmpty }

        func namesSite(_ name: UnsafeRawBufferPointer) -> Bool {
            sni.contains { $0.matches(name) } || host.contains { $0.matches(name) }
        }
    }

    let routes: [CompiledRoute]
    let defaultPool: Int?

    /// Compiles `routes` against `poolNames` (the order of ``UpstreamSnapshot/pools``). A route naming an unknown
    /// pool is dropped (a validated configuration has none).
    public init(routes: [Route], poolNames: [String]) {
        self.routes = routes.compactMap { r in
            guard let pool = poolNames.firstIndex(of: r.upstream) else { return nil }
            return CompiledRoute(
                sni: r.sni.map(Pattern.init),
                host: r.host.map(Pattern.init),
                prefix: r.pathPrefix.map { Array($0.utf8) },
                pool: pool,
                websocket: r.websocket
            )
        }
        defaultPool = poolNames.firstIndex(of: UpstreamPool.defaultName)
    }

    /// The decision for one request; see the type for the rules.
    /// - Parameters:
    ///   - sni: the TLS server name, `nil` when the client sent none.
    ///   - host: the Host header or `:authority` as received (port allowed), `nil` when absent.
    ///   - path: the request target's path (a query after `?` is ignored).
    public func route(
        sni: UnsafeRawBufferPointer?,
        host: UnsafeRawBufferPointer?,
        path: UnsafeRawBufferPointer
    )
        -> RouteDecision
    {
        resolve(sni: sni, host: host, path: path).decision
    }

    /// The decision for one request and the matched route's options (see `route`).
    public func resolve(
        sni: UnsafeRawBufferPointer?,
        host: UnsafeRawBufferPointer?,
        path: UnsafeRawBufferPointer
    )
        -> RouteMatch
    {
        // No routes (the usual single-pool setup): nothing below can change the answer.
        if routes.isEmpty { return RouteMatch(defaultPool.map { .pool($0) } ?? .reject(404)) }
        let sniName = sni.map(Self.hostName)
        let hostName = host.map(Self.hostName)
        if let s = sniName, let h = hostName, !Self.equalsIgnoringCase(s, h) {
            var sniKnown = false
            var hostKnown = false
            var together = false
            for r in routes where r.namesSite {
                let a = r.namesSite(s)
                let b = r.namesSite(h)
                sniKnown = sniKnown || a
                hostKnown = hostKnown || b
                if a && b {
                    together = true
                    break
                }
            }
            if sniKnown && hostKnown && !together { return RouteMatch(.reject(421)) }
        }
        var pathEnd = path.count
        if let q = path.firstIndex(where: { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }) { pathEnd = q }
        let rawPath = UnsafeRawBufferPointer(rebasing: path[..<pathEnd])
        if Self.needsNormalizing(rawPath) {
            let normalized = Self.normalize(rawPath)
            return normalized.withUnsafeBytes { decide(sniName, hostName, $0) }
        }
        return decide(sniName, hostName, rawPath)
    }

    private func decide(
        _ sni: UnsafeRawBufferPointer?,
        _ host: UnsafeRawBufferPointer?,
        _ path: UnsafeRawBufferPointer
    )
        -> RouteMatch
    {
        for r in routes {
            if !r.sni.isEmpty {
                guard let sni, r.sni.contains(where: { $0.matches(sni) }) else { continue }
            }
            if !r.host.isEmpty {
                guard let host, r.host.contains(where: { $0.matches(host) }) else { continue }
            }
            if let prefix = r.prefix, !Self.prefix(prefix, matches: path) { continue }
            return RouteMatch(.pool(r.pool), websocket: r.websocket)
        }
        if let defaultPool { return RouteMatch(.pool(defaultPool)) }
        return RouteMatch(.reject(404))
    }

    /// String convenience for tests and the admin endpoint (allocates).
    public func route(sni: String?, host: String?, path: String) -> RouteDecision {
        resolve(sni: sni, host: host, path: path).decision
    }

    /// String convenience for tests (allocates).
    public func resolve(sni: String?, host: String?, path: String) -> RouteMatch {
        func with<R>(_ s: String?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
            guard let s else { return body(nil) }
            return Array(s.utf8).withUnsafeBytes { body($0) }
        }
        return with(sni) { s in
            with(host) { h in Array(path.utf8).withUnsafeBytes { resolve(sni: s, host: h, path: $0) } }
        }
    }

    // MARK: - Byte helpers

    /// The host without port, brackets and trailing dot: `Example.COM.:443` → `Example.COM`, `[::1]:8443` → `::1`.
    static func hostName(_ raw: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var start = 0
        var end = raw.count
        while start < end, raw[start] == UInt8(ascii: " ") || raw[start] == UInt8(ascii: "\t") { start += 1 }
        while end > start, raw[end - 1] == UInt8(ascii: " ") || raw[end - 1] == UInt8(ascii: "\t") { end -= 1 }
        if start < end, raw[start] == UInt8(ascii: "[") {
            var close = start
            while close < end, raw[close] != UInt8(ascii: "]") { close += 1 }
            return UnsafeRawBufferPointer(rebasing: raw[(start + 1)..<close])
        }
        var colon = start
        while colon < end, raw[colon] != UInt8(ascii: ":") { colon += 1 }
        end = colon
        if end > start, raw[end - 1] == UInt8(ascii: ".") { end -= 1 }
        return UnsafeRawBufferPointer(rebasing: raw[start..<end])
    }

    @inline(__always)
    static func lower(_ b: UInt8) -> UInt8 { b >= 0x41 && b <= 0x5A ? b | 0x20 : b }

    /// `name` equals the lower-case `pattern` ignoring ASCII case.
    static func equalsLowercased(_ name: UnsafeRawBufferPointer, _ pattern: [UInt8]) -> Bool {
        guard name.count == pattern.count else { return false }
        for i in 0..<pattern.count where lower(name[i]) != pattern[i] { return false }
        return true
    }

    static func equalsIgnoringCase(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        for i in 0..<a.count where lower(a[i]) != lower(b[i]) { return false }
        return true
    }

    /// Segment-wise prefix match (see ``Route/pathPrefix``).
    static func prefix(_ prefix: [UInt8], matches path: UnsafeRawBufferPointer) -> Bool {
        guard path.count >= prefix.count else { return false }
        for i in 0..<prefix.count where path[i] != prefix[i] { return false }
        if path.count == prefix.count || prefix.last == UInt8(ascii: "/") { return true }
        return path[prefix.count] == UInt8(ascii: "/")
    }

    /// Whether the path has a `%` or a `.`/`..` segment (or an empty path, which means `/`).
    static func needsNormalizing(_ path: UnsafeRawBufferPointer) -> Bool {
        if path.isEmpty { return true }
        var i = 0
        while i < path.count {
            let b = path[i]
            if b == UInt8(ascii: "%") { return true }
            if b == UInt8(ascii: "."), i == 0 || path[i - 1] == UInt8(ascii: "/") {
                let next = i + 1 < path.count ? path[i + 1] : UInt8(ascii: "/")
                if next == UInt8(ascii: "/") { return true }
                if next == UInt8(ascii: "."), i + 2 >= path.count || path[i + 2] == UInt8(ascii: "/") { return true }
            }
            i += 1
        }
        return false
    }

    /// Decodes `%XX` of unreserved characters (RFC 3986 §2.3; other escapes stay as written) and removes dot
    /// segments (RFC 3986 §5.2.4). The result always starts with `/`.
    static func normalize(_ path: UnsafeRawBufferPointer) -> [UInt8] {
        func hex(_ b: UInt8) -> UInt8? {
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): b - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        func isUnreserved(_ c: UInt8) -> Bool {
            (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x2E
                || c == 0x5F || c == 0x7E
        }
        var decoded: [UInt8] = []
        decoded.reserveCapacity(path.count + 1)
        var i = 0
        while i < path.count {
            if path[i] == UInt8(ascii: "%"), i + 2 < path.count, let h = hex(path[i + 1]), let l = hex(path[i + 2]),
                isUnreserved(h << 4 | l)
            {
                decoded.append(h << 4 | l)
                i += 3
            } else {
                decoded.append(path[i])
                i += 1
            }
        }
        // Segments after splitting on "/"; "." is dropped, ".." drops the previous one.
        var segments: [ArraySlice<UInt8>] = []
        let parts = decoded.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        for (index, part) in parts.enumerated() {
            if index == 0 && part.isEmpty { continue }
            let isLast = index == parts.count - 1
            if part.elementsEqual([UInt8(ascii: ".")]) {
                if isLast { segments.append([]) }
            } else if part.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
                if !segments.isEmpty { segments.removeLast() }
                if isLast { segments.append([]) }
            } else {
                segments.append(part)
            }
        }
        var out: [UInt8] = [UInt8(ascii: "/")]
        for (index, s) in segments.enumerated() {
            if index > 0 { out.append(UInt8(ascii: "/")) }
            out.append(contentsOf: s)
        }
        return out
    }
}
