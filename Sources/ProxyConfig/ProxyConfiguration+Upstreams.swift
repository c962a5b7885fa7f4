import ProxyCore
import TOMLKit

// `upstreams` is either the legacy array of URLs (the default pool) or a table of named pools; `[[routes]]` maps
// requests to pools. Reading and the cross-checks live here; the loader and `problems()` call in with one line each.

extension ProxyConfiguration {
    /// Every pool requests can be sent to: the `[upstreams.NAME]` pools in file order, and the default pool defined
    /// by the `upstreams` array or `--upstream` (which replaces the servers of a `[upstreams.default]` table, keeping
    /// its other settings). Empty when no upstream is configured.
    public var upstreamPools: [UpstreamPool] {
        var pools = namedPools
        guard !upstreams.isEmpty else { return pools }
        let servers = upstreams.map { UpstreamPool.Server(url: $0) }
        if let i = pools.firstIndex(where: { $0.name == UpstreamPool.defaultName }) {
            pools[i].servers = servers
        } else {
            pools.insert(UpstreamPool(name: UpstreamPool.defaultName, servers: servers), at: 0)
        }
        return pools
    }

    // MARK: - Reading

    /// Reads `upstreams` (array or table of pools) and `[[routes]]` from the root table.
    mutating func readUpstreamsAndRoutes(_ root: inout TableReader) {
        let decoder = root.decoder
        if root.table["upstreams"]?.table != nil {
            if let pools = root.table("upstreams") { namedPools = Self.readPools(pools) }
        } else if let v = root.array("upstreams", { Self.readUpstreamURL($0, at: $1, decoder, what: "a URL string") }) {
            upstreams = v
        }
        if let v = root.array("routes", { Self.readRoute($0, at: $1, decoder) }) { routes = v }
    }

    static func readUpstreamURL(
        _ item: TOMLValueConvertible,
        at path: TOMLPath,
        _ decoder: ConfigDecoder,
        what: String
    ) -> Upstream? {
        guard let text = item.string else {
            decoder.report(path, "\(path): expected \(what), found \(item.type.article)")
            return nil
        }
        do throws(ValueError) {
            return try Upstream.parse(text)
        } catch {
            decoder.report(path, "\(path): \(error.message)")
            return nil
        }
    }

    private static func readPools(_ table: TableReader) -> [UpstreamPool] {
        var table = table
        var pools: [UpstreamPool] = []
        for name in table.table.keys.sorted(by: { Self.position(of: $0, in: table) < Self.position(of: $1, in: table) })
        {
            guard var t = table.table(name) else { continue }
            var pool = UpstreamPool(name: name, servers: [])
            let decoder = t.decoder
            if let v = t.array("servers", { Self.readServer($0, at: $1, decoder) }) {
                pool.servers = v
                pool.serversWereInvalid = v.isEmpty && t.table["servers"]?.array?.isEmpty == false
            } else {
                pool.serversWereInvalid = true
                if t.table["servers"] == nil { decoder.report(t.path, "\(t.path): missing \"servers\"") }
            }
            if let v: BalanceMethod = t.choice("balance") { pool.balance = v }
            if let v = t.string("hash_key", { s throws(ValueError) in try HashKey.parse(s) }) { pool.hashKey = v }
            if let v = t.duration("resolve_interval") { pool.resolveInterval = v }
            if let v = t.int("max_fails") { pool.maxFails = v }
            if let v = t.duration("fail_timeout") { pool.failTimeout = v }
            if let v: ProxyProtocol.Version = t.choice("proxy_protocol") { pool.proxyProtocol = v }
            if let v = t.array("proxy_protocol_tlvs", { Self.readTLVName($0, at: $1, decoder) }) {
                pool.proxyProtocolTLVs = ProxyProtocol.TLVSet(v)
                if pool.proxyProtocol != .v2 {
                    decoder.report(
                        t.path.appending("proxy_protocol_tlvs"),
                        "\(t.path.appending("proxy_protocol_tlvs")): TLVs exist only in PROXY protocol v2 "
                            + "(set proxy_protocol = \"v2\")"
                    )
                }
            }
            if var h = t.table("health_check") {
                var check = UpstreamPool.HealthCheck()
                if let v = h.string("path") { check.path = v }
                if let v = h.duration("interval") { check.interval = v }
                if let v = h.duration("timeout") { check.timeout = v }
                if let v = h.int("rise") { check.rise = v }
                if let v = h.int("fall") { check.fall = v }
                if let v = Self.readExpectStatus(&h) { check.expectStatus = v }
                h.finish()
                pool.healthCheck = check
            }
            if var x = t.table("tls") {
                pool.tlsTableWritten = true
                if let v = x.bool("verify") { pool.tls.verify = v }
                if let v = x.string("ca_file") { pool.tls.caFile = v }
                if let v = x.string("sni", { s throws(ValueError) in try Self.validateSNI(s) }) { pool.tls.sni = v }
                if let v = x.string("client_cert") { pool.tls.clientCert = v }
                if let v = x.string("client_key") { pool.tls.clientKey = v }
                if let v: OriginTLS.Version = x.choice("min_version") { pool.tls.minVersion = v }
                x.finish()
            }
            t.finish()
            pools.append(pool)
        }
        table.finish()
        return pools
    }

    /// `sni`: a DNS name (SNI carries no address literals, RFC 6066 §3), lower-cased.
    static func validateSNI(_ s: String) throws(ValueError) -> String {
        guard case .name(let name) = try HostPort.Host.parse(s) else {
            throw ValueError("\"\(s)\" is an address: SNI carries DNS names only (leave sni out for IP origins)")
        }
        return name
    }

    private static func readTLVName(
        _ item: TOMLValueConvertible,
        at path: TOMLPath,
        _ decoder: ConfigDecoder
    ) -> ProxyProtocol.TLVSet? {
        let names = ProxyProtocol.TLVSet.names
        if let s = item.string, let found = names.first(where: { $0.0 == s }) { return found.1 }
        let accepted = names.map { "\"\($0.0)\"" }.joined(separator: ", ")
        decoder.report(path, "\(path): expected one of \(accepted)")
        return nil
    }

    /// Keys of a TOML table come back unordered; file order keeps diagnostics and `/upstreams` in the order written.
    private static func position(of key: String, in table: TableReader) -> (Int, Int, String) {
        guard let p = table.decoder.locator.position(of: table.path.appending(key)) else { return (Int.max, 0, key) }
        return (p.line, p.column, key)
    }

    /// `expect_status`: an integer, a class such as `"2xx"`, or an array of those.
    private static func readExpectStatus(_ h: inout TableReader) -> [ClosedRange<Int>]? {
        guard let value = h.raw("expect_status") else { return nil }
        let path = h.path.appending("expect_status")
        let decoder = h.decoder
        func one(_ item: TOMLValueConvertible, _ at: TOMLPath) -> ClosedRange<Int>? {
            if let n = item.int {
                guard (100...599).contains(n) else {
                    decoder.report(at, "\(at): \(n) is not an HTTP status (100...599)")
                    return nil
                }
                return n...n
            }
            if let s = item.string, s.count == 3, s.hasSuffix("xx"), let d = Int(s.prefix(1)), (1...5).contains(d) {
                return (d * 100)...(d * 100 + 99)
            }
            decoder.report(at, "\(at): expected a status such as 200 or a class such as \"2xx\"")
            return nil
        }
        if let array = value.array {
            let out = array.enumerated().compactMap { one($0.element, path.appending(index: $0.offset)) }
            if array.isEmpty { decoder.report(path, "\(path) must not be empty") }
            return out.isEmpty ? nil : out
        }
        return one(value, path).map { [$0] }
    }

    private static func readServer(
        _ item: TOMLValueConvertible,
        at path: TOMLPath,
        _ decoder: ConfigDecoder
    )
        -> UpstreamPool.Server?
    {
        if item.string != nil {
            return readUpstreamURL(item, at: path, decoder, what: "a URL string").map { .init(url: $0) }
        }
        guard let table = item.table else {
            decoder.report(
                path,
                "\(path): expected a URL string or { url = ..., weight = ... }, found \(item.type.article)"
            )
            return nil
        }
        var reader = TableReader(decoder: decoder, table: table, path: path)
        let url = reader.raw("url").flatMap {
            readUpstreamURL($0, at: path.appending("url"), decoder, what: "a URL string")
        }
        let weight = reader.int("weight")
        reader.finish()
        if table["url"] == nil { decoder.report(path, "\(path): missing \"url\"") }
        guard let url else { return nil }
        return .init(url: url, weight: weight ?? 1)
    }

    private static func readRoute(_ item: TOMLValueConvertible, at path: TOMLPath, _ decoder: ConfigDecoder) -> Route? {
        guard let table = item.table else {
            decoder.report(path, "\(path): expected a table, found \(item.type.article)")
            return nil
        }
        var reader = TableReader(decoder: decoder, table: table, path: path)
        func names(_ key: String) -> [String] {
            guard let value = reader.raw(key) else { return [] }
            let keyPath = path.appending(key)
            func one(_ v: TOMLValueConvertible, _ at: TOMLPath) -> String? {
                guard let s = v.string else {
                    decoder.report(at, "\(at): expected a host name, found \(v.type.article)")
                    return nil
                }
                do throws(ValueError) { return try Route.validateHostPattern(s) } catch {
                    decoder.report(at, "\(at): \(error.message)")
                    return nil
                }
            }
            if let array = value.array {
                if array.isEmpty { decoder.report(keyPath, "\(keyPath) must not be empty (leave the key out)") }
                return array.enumerated().compactMap { one($0.element, keyPath.appending(index: $0.offset)) }
            }
            return one(value, keyPath).map { [$0] } ?? []
        }
        let sni = names("sni")
        let host = names("host")
        let prefix = reader.string("path_prefix") { s throws(ValueError) in
            guard s.hasPrefix("/") else { throw ValueError("\"\(s)\" must start with \"/\"") }
            guard !s.contains("?"), !s.contains("#") else {
                throw ValueError("\"\(s)\": a path has no query or fragment")
            }
            return s
        }
        let upstream = reader.string("upstream")
        let websocket = reader.bool("websocket") ?? true
        reader.finish()
        guard let upstream else {
            if table["upstream"] == nil { decoder.report(path, "\(path): missing \"upstream\" (the pool's name)") }
            return nil
        }
        return Route(sni: sni, host: host, pathPrefix: prefix, upstream: upstream, websocket: websocket)
    }

    // MARK: - Validation

    /// The rules of pools and routes: names, weights, ranges, routes naming existing pools, no unreachable route.
    func upstreamProblems() -> [Problem] {
        var out: [Problem] = []
        func add(_ path: TOMLPath, _ message: String) { out.append(Problem(paths: [path], message: message)) }
        for pool in namedPools {
            let path = TOMLPath(arrayLiteral: "upstreams", pool.name)
            if pool.name.isEmpty || !pool.name.unicodeScalars.allSatisfy(Self.isPoolNameScalar) {
                add(path, "upstreams.\"\(pool.name)\": a pool name is letters, digits, \"_\" and \"-\"")
            }
            var seen: [Upstream: Int] = [:]
            for (i, server) in pool.servers.enumerated() {
                let at = path.appending("servers").appending(index: i)
                if let first = seen[server.url] {
                    add(at, "\(at) repeats servers[\(first)] (\(server.url))")
                } else {
                    seen[server.url] = i
                }
                if !(1...1000).contains(server.weight) {
                    add(
                        at.appending("weight"),
                        "\(at.appending("weight")) must be between 1 and 1000 (got \(server.weight))"
                    )
                }
            }
            if pool.servers.isEmpty && !pool.serversWereInvalid
                && !(pool.name == UpstreamPool.defaultName && !upstreams.isEmpty)
            {
                add(path.appending("servers"), "upstreams.\(pool.name).servers must list at least one server")
            }
            if pool.resolveInterval < .milliseconds(100) {
                add(
                    path.appending("resolve_interval"),
                    "upstreams.\(pool.name).resolve_interval must be at least 100ms"
                )
            }
            if !(0...1000).contains(pool.maxFails) {
                add(
                    path.appending("max_fails"),
                    "upstreams.\(pool.name).max_fails must be between 0 and 1000 (0 disables)"
                )
            }
            if pool.maxFails > 0 && pool.failTimeout.milliseconds == 0 {
                add(path.appending("fail_timeout"), "upstreams.\(pool.name).fail_timeout must be greater than 0")
            }
            if case .header = pool.hashKey, pool.balance != .hash {
                add(path.appending("hash_key"), "upstreams.\(pool.name).hash_key is only used with balance = \"hash\"")
            }
            let tp = path.appending("tls")
            if pool.tlsTableWritten && !pool.usesTLS && !(pool.name == UpstreamPool.defaultName && !upstreams.isEmpty) {
                add(tp, "\(tp): the pool has no https:// server (a tls table only applies to https:// servers)")
            }
            if (pool.tls.clientCert == nil) != (pool.tls.clientKey == nil) {
                let which = pool.tls.clientCert == nil ? "client_key" : "client_cert"
                add(
                    tp.appending(which),
                    "\(tp.appending(which)): client_cert and client_key go together (mutual TLS needs both)"
                )
            }
            if !pool.tls.verify && pool.tls.caFile != nil {
                add(tp.appending("ca_file"), "\(tp.appending("ca_file")): has no effect with verify = false")
            }
            if let check = pool.healthCheck {
                let hc = path.appending("health_check")
                if !check.path.hasPrefix("/")
                    || check.path.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value >= 0x7f })
                {
                    add(
                        hc.appending("path"),
                        "\(hc.appending("path")) must start with \"/\" and contain no spaces or control characters"
                    )
                }
                if check.interval < .milliseconds(100) {
                    add(hc.appending("interval"), "\(hc.appending("interval")) must be at least 100ms")
                }
                if check.timeout.milliseconds == 0 || check.timeout > check.interval {
                    add(
                        hc.appending("timeout"),
                        "\(hc.appending("timeout")) must be greater than 0 and at most interval (\(check.interval))"
                    )
                }
                for key in ["rise", "fall"] {
                    let v = key == "rise" ? check.rise : check.fall
                    if !(1...100).contains(v) {
                        add(hc.appending(key), "\(hc.appending(key)) must be between 1 and 100 (got \(v))")
                    }
                }
            }
        }
        let poolNames = Set(upstreamPools.map(\.name))
        for (i, route) in routes.enumerated() {
            let path = TOMLPath(arrayLiteral: "routes").appending(index: i)
            if !poolNames.contains(route.upstream) {
                let known = poolNames.sorted().map { "\"\($0)\"" }.joined(separator: ", ")
                add(
                    path.appending("upstream"),
                    "\(path.appending("upstream")): no pool named \"\(route.upstream)\""
                        + (known.isEmpty ? " (no pools are configured)" : " (pools: \(known))")
                )
            }
            if let j = routes[..<i].firstIndex(where: { route.isShadowed(by: $0) }) {
                add(path, "\(path) is unreachable: routes[\(j)] matches every request it would match")
            }
        }
        return out
    }

    static func isPoolNameScalar(_ c: Unicode.Scalar) -> Bool {
        switch c {
        case "A"..."Z", "a"..."z", "0"..."9", "_", "-": true
        default: false
        }
    }
}
