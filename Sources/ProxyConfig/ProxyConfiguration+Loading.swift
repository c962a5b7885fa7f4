import Foundation
import ProxyCore
import TOMLKit

extension ProxyConfiguration {
    /// Reads and validates the TOML file at `path`. Relative paths inside it (`policies.dir`, certificate, key,
    /// ticket key and access log files) are resolved against the file's directory.
    /// - Throws: ``ConfigError`` listing every problem, each at `path:line:column`.
    public static func load(path: String) throws(ConfigError) -> ProxyConfiguration {
        let text: String
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            guard let decoded = String(data: data, encoding: .utf8) else {
                throw ConfigError(file: path, line: 0, column: 0, message: "the configuration file is not valid UTF-8")
            }
            text = decoded
        } catch let error as ConfigError {
            throw error
        } catch {
            let reason = FileManager.default.fileExists(atPath: path) ? "it could not be read" : "no such file"
            throw ConfigError(file: path, line: 0, column: 0, message: "cannot open configuration file: \(reason)")
        }
        let directory = (path as NSString).deletingLastPathComponent
        return try parse(text: text, fileName: path, baseDirectory: directory.isEmpty ? nil : directory)
    }

    /// Parses and validates a TOML document.
    /// - Parameters:
    ///   - fileName: used in diagnostics only.
    ///   - baseDirectory: directory that relative paths in the document are resolved against; `nil` leaves them
    ///     relative to the working directory.
    /// - Throws: ``ConfigError`` listing every problem found, sorted by position.
    public static func parse(
        text: String,
        fileName: String = "<config>",
        baseDirectory: String? = nil
    ) throws(ConfigError) -> ProxyConfiguration {
        if let nul = text.unicodeScalars.firstIndex(of: "\0") {
            // toml++ reads a C string, so text after a NUL would silently vanish; refuse it instead.
            var line = 1
            var column = 1
            for scalar in text.unicodeScalars[..<nul] {
                if scalar == "\n" {
                    line += 1
                    column = 1
                } else {
                    column += 1
                }
            }
            throw ConfigError(file: fileName, line: line, column: column, message: "NUL characters are not allowed")
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError(
                file: fileName,
                line: max(1, error.source.begin.line),
                column: max(1, error.source.begin.column),
                message: "TOML syntax error: \(error.description)"
            )
        } catch {
            throw ConfigError(file: fileName, line: 1, column: 1, message: "TOML syntax error: \(error)")
        }

        let decoder = ConfigDecoder(fileName: fileName, text: text)
        var config = ProxyConfiguration()
        config.read(TableReader(decoder: decoder, table: table, path: TOMLPath()))
        if let base = baseDirectory { config.resolveRelativePaths(against: base) }
        for problem in config.problems() { decoder.report(problem.paths, problem.message) }
        if !decoder.diagnostics.isEmpty { throw ConfigError(decoder.diagnostics) }
        return config
    }

    /// Resolves the relative file paths a config file may hold against `base`.
    mutating func resolveRelativePaths(against base: String) {
        func resolve(_ path: String) -> String {
            path.isEmpty || path.hasPrefix("/") ? path : (base as NSString).appendingPathComponent(path)
        }
        policies.dir = resolve(policies.dir)
        certificates = certificates.map {
            var ocsp = $0.ocsp
            if case .file(let f) = ocsp { ocsp = .file(resolve(f)) }
            return CertificatePair(cert: resolve($0.cert), key: resolve($0.key), ocsp: ocsp)
        }
        tickets.files = tickets.files.map(resolve)
        detector.stateFile = detector.stateFile.map(resolve)
        adminTokenFile = adminTokenFile.map(resolve)
        if var r = redis {
            r.wrappingKeyFile = r.wrappingKeyFile.map(resolve)
            r.previousWrappingKeys = r.previousWrappingKeys.map {
                WrappingKeyRef(id: $0.id, file: $0.file.map(resolve), env: $0.env)
            }
            redis = r
        }
        if case .file(let path) = accessLog { accessLog = .file(resolve(path)) }
    }

    // MARK: - Schema. Each key read here is a known key; anything else in the document is reported as unknown.

    private mutating func read(_ root: TableReader) {
        var root = root
        if let v = root.string("listen", { s throws(ValueError) in try HostPort.parse(s, allowPortZero: true) }) {
            listen = v
        }
        if let v = root.bool("listen_proxy_protocol") { listenProxyProtocol = v }
        if let v = root.stringArray("proxy_protocol_from") {
            proxyProtocolFrom = v
            for c in v where CIDRBlock(c) == nil {
                root.report("proxy_protocol_from", "\"\(c)\" is not an IPv4 or IPv6 network (e.g. \"10.0.0.0/8\")")
            }
        }
        if let value = root.raw("workers") {
            if value.string == "auto" {
                workers = nil
            } else if let n = value.int {
                workers = n
            } else if let s = value.string {
                root.report("workers", "\"\(s)\" is neither an integer nor \"auto\"")
            } else {
                root.typeMismatch("workers", expected: "an integer or \"auto\"", found: value.type)
            }
        }
        let decoder = root.decoder
        readUpstreamsAndRoutes(&root)
        if let v = root.array("certificates", { Self.readCertificatePair($0, at: $1, decoder) }) { certificates = v }
        if let v = root.string("admin", { s throws(ValueError) in try HostPort.parse(s, allowPortZero: true) }) {
            admin = v
        }
        if let v = root.bool("admin_allow_remote") { adminAllowRemote = v }
        if let v = root.string("admin_token_file") { adminTokenFile = v }
        if let v = root.string("admin_token_env") { adminTokenEnv = v }
        if let v = root.bool("admin_token_exempt_read_only") { adminTokenExemptReadOnly = v }

        if var t = root.table("tls") {
            // The profile first: the keys below override what it sets.
            if let v: TLSProfile = t.choice("profile") { tls.apply(profile: v) }
            if let v: TLSVersion = t.choice("min_version") { tls.minVersion = v }
            if let v: TLSVersion = t.choice("max_version") { tls.maxVersion = v }
            if let v = t.string("ciphers") { tls.ciphers = v }
            if let v = t.string("ciphersuites") { tls.ciphersuites = v }
            if let v = t.string("groups") { tls.groups = v }
            if let v = t.stringArray("alpn") { tls.alpn = v }
            if let v = t.bool("alpn_strict") { tls.alpnStrict = v }
            t.finish()
        }
        if var t = root.table("timeouts") {
            if let v = t.duration("handshake") { timeouts.handshake = v }
            if let v = t.duration("header_read") { timeouts.headerRead = v }
            if let v = t.duration("idle") { timeouts.idle = v }
            if let v = t.duration("upstream_connect") { timeouts.upstreamConnect = v }
            if let v = t.duration("upstream_read") { timeouts.upstreamRead = v }
            if let v = t.duration("upstream_send") { timeouts.upstreamSend = v }
            if let v = t.duration("tunnel_idle") { timeouts.tunnelIdle = v }
            if let v = t.duration("drain") { timeouts.drain = v }
            t.finish()
        }
        if var t = root.table("limits") {
            if let v = t.int("max_request_line") { limits.maxRequestLine = v }
            if let v = t.int("max_header_bytes") { limits.maxHeaderBytes = v }
            if let v = t.int("max_headers") { limits.maxHeaders = v }
            if let v = t.int("max_connections_per_worker") { limits.maxConnectionsPerWorker = v }
            t.finish()
        }
        if var t = root.table("access_log") {
            if let v = t.string("path", { s throws(ValueError) in try AccessLogDestination.parse(s) }) { accessLog = v }
            if let v = t.accessLogFields("fields") { accessLogFields = v }
            t.finish()
        }
        if var t = root.table("log") {
            if let v: LogLevel = t.choice("level") { logLevel = v }
            t.finish()
        }
        if var t = root.table("detector") {
            readDetector(&t)
            t.finish()
        }
        if var t = root.table("tickets") {
            if let v = t.bool("enabled") { tickets.enabled = v }
            if let v: TicketKeySource = t.choice("source") { tickets.source = v }
            if let v = t.duration("rotation") { tickets.rotation = v }
            if let v = t.duration("lifetime") { tickets.lifetime = v }
            if let v: StaleTicketAction = t.choice("stale_action") { tickets.staleAction = v }
            if let v = t.int("tls13_count") { tickets.tls13Count = v }
            if let v = t.stringArray("files") { tickets.files = v }
            t.finish()
        }
        if var t = root.table("policies") {
            if let v = t.string("dir") { policies.dir = v }
            if let v = t.bool("enabled") { policies.enabled = v }
            if var h = t.table("headers") {
                if let v = h.bool("enabled") { policies.headers.enabled = v }
                if let v = h.string("ja3") { policies.headers.ja3 = v }
                if let v = h.string("ja4") { policies.headers.ja4 = v }
                if let v = h.string("policy") { policies.headers.policy = v }
                if let v = h.string("tag") { policies.headers.tag = v }
                h.finish()
            }
            t.finish()
        }
        if var t = root.table("redis") {
            var r = Redis()
            if let v = t.string("url", { s throws(ValueError) in try RedisURL.parse(s) }) {
                r.url = v
            } else if t.table["url"] != nil {
                r.urlWasInvalid = true
            }
            if let v = t.string("replica", { s throws(ValueError) in try RedisURL.parse(s) }) { r.replica = v }
            if let v = t.bool("required") { r.required = v }
            if let v = t.duration("connect_timeout") { r.connectTimeout = v }
            if let v = t.duration("command_timeout") { r.commandTimeout = v }
            if let v = t.duration("poll_interval") { r.pollInterval = v }
            if let v = t.string("wrapping_key_file") { r.wrappingKeyFile = v }
            if let v = t.string("wrapping_key_env") { r.wrappingKeyEnv = v }
            if let v = t.string("wrapping_key_id") { r.wrappingKeyID = v }
            if let v = t.array("previous_wrapping_keys", { Self.readWrappingKeyRef($0, at: $1, decoder) }) {
                r.previousWrappingKeys = v
            }
            if let v = t.string("key_prefix") { r.keyPrefix = v }
            if let v = t.duration("max_clock_skew") { r.maxClockSkew = v }
            if let v = t.duration("fallback_grace") { r.fallbackGrace = v }
            t.finish()
            redis = r
        }
        if var t = root.table("sessions") { readSessions(&t) }
        if var t = root.table("http2") {
            if let v = t.int("max_concurrent_streams") { http2.maxConcurrentStreams = v }
            if let v = t.int("max_header_list_size") { http2.maxHeaderListSize = v }
            if let v = t.int("initial_window_size") { http2.initialWindowSize = v }
            if let v = t.int("rapid_reset_burst") { http2.rapidResetBurst = v }
            if let v = t.int("rapid_reset_rate") { http2.rapidResetRate = v }
            if let v = t.int("control_frame_burst") { http2.controlFrameBurst = v }
            if let v = t.int("control_frame_rate") { http2.controlFrameRate = v }
            if let v = t.int("max_continuations") { http2.maxContinuations = v }
            if let v = t.duration("zero_window_timeout") { http2.zeroWindowTimeout = v }
            t.finish()
        }
        root.finish()
    }
}

extension ProxyConfiguration {
    /// One `previous_wrapping_keys` element: `{ id = "...", file = "..." }` or `{ id = "...", env = "..." }`.
    fileprivate static func readWrappingKeyRef(
        _ item: TOMLValueConvertible,
        at path: TOMLPath,
        _ decoder: ConfigDecoder
    ) -> WrappingKeyRef? {
        guard let table = item.table else {
            decoder.report(path, "\(path): expected a table { id = ..., file = ... }, found \(item.type.article)")
            return nil
        }
        var reader = TableReader(decoder: decoder, table: table, path: path)
        let id = reader.string("id")
        let file = reader.string("file")
        let env = reader.string("env")
        reader.finish()
        guard let id else {
            if table["id"] == nil { decoder.report(path, "\(path): missing \"id\"") }
            return nil
        }
        return WrappingKeyRef(id: id, file: file, env: env)
    }

    /// One `[[certificates]]` element: a table with `cert`, `key` and optionally `ocsp`.
    fileprivate static func readCertificatePair(
        _ item: TOMLValueConvertible,
        at path: TOMLPath,
        _ decoder: ConfigDecoder
    ) -> CertificatePair? {
        guard let table = item.table else {
            decoder.report(path, "\(path): expected a table with cert and key, found \(item.type.article)")
            return nil
        }
        var reader = TableReader(decoder: decoder, table: table, path: path)
        let cert = reader.string("cert")
        let key = reader.string("key")
        let ocsp = reader.string("ocsp", OCSPStapling.parse)
        reader.finish()
        for (name, value) in [("cert", cert), ("key", key)] where value == nil && table[name] == nil {
            decoder.report(path, "\(path): missing \"\(name)\"")
        }
        guard let cert, let key else { return nil }
        return CertificatePair(cert: cert, key: key, ocsp: ocsp ?? .auto)
    }
}

extension AccessLogDestination {
    static func parse(_ s: String) throws(ValueError) -> AccessLogDestination {
        switch s {
        case "stdout": return .stdout
        case "off": return .off
        case "": throw ValueError("must be \"stdout\", \"off\" or a file path, not empty")
        default: return .file(s)
        }
    }
}
