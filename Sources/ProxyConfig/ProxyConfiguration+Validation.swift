import ProxyTickets

extension ProxyConfiguration {
    /// One violated rule, naming the keys involved (the first written one locates it in a file).
    struct Problem {
        var paths: [TOMLPath]
        var message: String
    }

    /// Checks the rules that hold for a whole configuration: ranges, non-empty names and cross-field constraints.
    /// Values read from a file or flags are already checked; use this on a configuration assembled in code.
    /// - Throws: ``ConfigError`` whose diagnostics carry the key names (`file` is `"configuration"`, no position).
    public func validate() throws(ConfigError) {
        let problems = problems()
        guard !problems.isEmpty else { return }
        throw ConfigError(problems.map { .init(file: "configuration", line: 0, column: 0, message: $0.message) })
    }

    /// Every rule this configuration breaks; shared by the file loader, ``applying(_:)`` and ``validate()`` so all
    /// three apply the same checks.
    func problems() -> [Problem] {
        var out: [Problem] = []
        func add(_ paths: [TOMLPath], _ message: String) { out.append(Problem(paths: paths, message: message)) }
        func range(_ path: TOMLPath, _ value: Int, _ allowed: ClosedRange<Int>) {
            if !allowed.contains(value) {
                add([path], "\(path) must be between \(allowed.lowerBound) and \(allowed.upperBound) (got \(value))")
            }
        }

        if let workers { range(["workers"], workers, 1...1024) }
        var seenUpstreams: [Upstream: Int] = [:]
        for (i, upstream) in upstreams.enumerated() {
            let path = TOMLPath(arrayLiteral: "upstreams").appending(index: i)
            if let first = seenUpstreams[upstream] {
                add([path], "\(path) repeats upstreams[\(first)] (\(upstream))")
            } else {
                seenUpstreams[upstream] = i
            }
        }
        out += upstreamProblems()
        out += detectorProblems()
        for (i, pair) in certificates.enumerated() {
            let path = TOMLPath(arrayLiteral: "certificates").appending(index: i)
            if pair.cert.isEmpty { add([path.appending("cert")], "\(path.appending("cert")) must not be empty") }
            if pair.key.isEmpty { add([path.appending("key")], "\(path.appending("key")) must not be empty") }
        }
        if let admin {
            if !admin.host.isLoopback && !adminTokenConfigured {
                add(
                    [["admin"], ["admin_token_file"], ["admin_token_env"]],
                    "admin address \(admin) is not a loopback address: the admin API then requires a bearer token; "
                        + "set admin_token_file or admin_token_env (flags: --admin-token-file, environment "
                        + "EDGEPROXY_ADMIN_TOKEN)"
                )
            }
            if admin == listen && admin.port != 0 {
                add([["admin"], ["listen"]], "admin must not use the listen address \(listen)")
            }
        }

        if listenProxyProtocol && proxyProtocolFrom.isEmpty {
            add(
                [["listen_proxy_protocol"], ["proxy_protocol_from"]],
                "listen_proxy_protocol = true needs proxy_protocol_from: the load balancers' networks allowed to "
                    + "send the PROXY header (a client that could send one could claim any address)"
            )
        }

        switch (adminTokenFile, adminTokenEnv) {
        case (.some, .some):
            add(
                [["admin_token_env"], ["admin_token_file"]],
                "admin_token_file and admin_token_env are exclusive; set one"
            )
        case (.some(let f), nil) where f.isEmpty:
            add([["admin_token_file"]], "admin_token_file must not be empty")
        case (nil, .some(let e)) where e.isEmpty:
            add([["admin_token_env"]], "admin_token_env must not be empty")
        default: break
        }

        // [tls]
        if tls.minVersion > tls.maxVersion {
            add(
                [["tls", "min_version"], ["tls", "max_version"]],
                "tls.min_version (\(tls.minVersion.rawValue)) is greater than tls.max_version (\(tls.maxVersion.rawValue))"
            )
        }
        for (key, value) in [("ciphers", tls.ciphers), ("ciphersuites", tls.ciphersuites), ("groups", tls.groups)] {
            let path: TOMLPath = ["tls", key]
            if value.isEmpty {
                add([path], "\(path) must not be empty")
            } else if let bad = value.unicodeScalars.first(where: { !Self.isCipherListScalar($0) }) {
                add([path], "\(path) contains \"\(bad)\", which never appears in an OpenSSL list")
            }
        }
        for (i, name) in tls.alpn.enumerated() {
            let path = TOMLPath(arrayLiteral: "tls", "alpn").appending(index: i)
            if !["h2", "http/1.1", "http/1.0"].contains(name) {
                add(
                    [path],
                    "\(path): unsupported protocol \"\(name)\"; EdgeProxy speaks \"h2\", \"http/1.1\" and \"http/1.0\""
                )
            } else if tls.alpn[..<i].contains(name) {
                add([path], "\(path) repeats \"\(name)\"")
            }
        }

        // [timeouts]: zero would mean "expire at once"; only drain may be zero (close without waiting).
        let timeoutValues: [(String, ConfigDuration)] = [
            ("handshake", timeouts.handshake), ("header_read", timeouts.headerRead), ("idle", timeouts.idle),
            ("upstream_connect", timeouts.upstreamConnect), ("upstream_read", timeouts.upstreamRead),
            ("upstream_send", timeouts.upstreamSend), ("tunnel_idle", timeouts.tunnelIdle),
        ]
        for (key, value) in timeoutValues where value.milliseconds == 0 {
            add([["timeouts", key]], "timeouts.\(key) must be greater than 0")
        }

        // [limits]
        range(["limits", "max_request_line"], limits.maxRequestLine, 64...1_048_576)
        range(["limits", "max_header_bytes"], limits.maxHeaderBytes, 1024...16_777_216)
        range(["limits", "max_headers"], limits.maxHeaders, 1...10_000)
        range(["limits", "max_connections_per_worker"], limits.maxConnectionsPerWorker, 1...1_000_000)

        // [http2]
        range(["http2", "max_concurrent_streams"], http2.maxConcurrentStreams, 1...10_000)
        range(["http2", "max_header_list_size"], http2.maxHeaderListSize, 1024...16_777_216)
        range(["http2", "initial_window_size"], http2.initialWindowSize, 1024...16_777_215)
        range(["http2", "rapid_reset_burst"], http2.rapidResetBurst, 1...1_000_000)
        range(["http2", "rapid_reset_rate"], http2.rapidResetRate, 0...1_000_000)
        range(["http2", "control_frame_burst"], http2.controlFrameBurst, 1...1_000_000)
        range(["http2", "control_frame_rate"], http2.controlFrameRate, 0...1_000_000)
        range(["http2", "max_continuations"], http2.maxContinuations, 0...1000)
        if http2.zeroWindowTimeout.milliseconds == 0 {
            add([["http2", "zero_window_timeout"]], "http2.zero_window_timeout must be greater than 0")
        }

        // [tickets]
        if tickets.rotation < .seconds(1) {
            add([["tickets", "rotation"]], "tickets.rotation must be at least 1s (got \(tickets.rotation))")
        } else if tickets.lifetime < tickets.rotation {
            add(
                [["tickets", "lifetime"], ["tickets", "rotation"]],
                "tickets.lifetime (\(tickets.lifetime)) must be at least tickets.rotation (\(tickets.rotation))"
            )
        }
        range(["tickets", "tls13_count"], tickets.tls13Count, 0...16)
        switch tickets.source {
        case .files where tickets.files.isEmpty:
            add(
                [["tickets", "files"], ["tickets", "source"]],
                "tickets.source = \"files\" needs at least one path in tickets.files"
            )
        case .memory where !tickets.files.isEmpty:
            add(
                [["tickets", "files"], ["tickets", "source"]],
                "tickets.files is only used with tickets.source = \"files\" (source is \"memory\")"
            )
        default:
            break
        }
        if tickets.source == .redis && redis == nil {
            add(
                [["tickets", "source"]],
                "tickets.source = \"redis\" needs a [redis] section with url and a wrapping key"
            )
        }
        if let redis {
            redisProblems(redis, add)
        }
        for (i, file) in tickets.files.enumerated() where file.isEmpty {
            add(
                [TOMLPath(arrayLiteral: "tickets", "files").appending(index: i)],
                "tickets.files[\(i)] must not be empty"
            )
        }

        sessionProblems(add)

        // [policies]
        if policies.dir.isEmpty { add([["policies", "dir"]], "policies.dir must not be empty") }
        let headerNames = [
            ("ja3", policies.headers.ja3), ("ja4", policies.headers.ja4), ("policy", policies.headers.policy),
            ("tag", policies.headers.tag),
        ]
        for (i, (key, name)) in headerNames.enumerated() {
            let path: TOMLPath = ["policies", "headers", key]
            if name.isEmpty || !name.unicodeScalars.allSatisfy(Self.isTokenScalar) {
                add([path], "\(path) must be a valid HTTP header name (got \"\(name)\")")
            } else if let other = headerNames[..<i].first(where: { $0.1.lowercased() == name.lowercased() }) {
                add([path], "\(path) uses the same header name as policies.headers.\(other.0) (\"\(name)\")")
            }
        }
        return out
    }

    /// The `[redis]` rules (with `tickets.*` where they interact).
    private func redisProblems(_ r: Redis, _ add: ([TOMLPath], String) -> Void) {
        if tickets.source != .redis && sessions.cache != .redis {
            add(
                [["redis"], ["tickets", "source"]],
                "[redis] is only used with tickets.source = \"redis\" or sessions.cache = \"redis\" (source is "
                    + "\"\(tickets.source.rawValue)\")"
            )
        }
        if r.url == nil && !r.urlWasInvalid {
            add([["redis", "url"], ["redis"]], "redis.url is required (redis://[user:password@]host:port[/db])")
        }
        switch (r.wrappingKeyFile, r.wrappingKeyEnv) {
        case (nil, nil):
            add(
                [["redis"]],
                "[redis] needs wrapping_key_file or wrapping_key_env (the key itself never goes in this file)"
            )
        case (.some, .some):
            add(
                [["redis", "wrapping_key_env"], ["redis", "wrapping_key_file"]],
                "redis.wrapping_key_file and redis.wrapping_key_env are exclusive; set one"
            )
        case (.some(let f), nil) where f.isEmpty:
            add([["redis", "wrapping_key_file"]], "redis.wrapping_key_file must not be empty")
        case (nil, .some(let e)) where e.isEmpty:
            add([["redis", "wrapping_key_env"]], "redis.wrapping_key_env must not be empty")
        default: break
        }
        if !Self.isWrappingKeyID(r.wrappingKeyID) {
            add(
                [["redis", "wrapping_key_id"], ["redis"]],
                "redis.wrapping_key_id must be 1-64 printable ASCII characters without spaces (got \"\(r.wrappingKeyID)\")"
            )
        }
        var ids: Set<String> = [r.wrappingKeyID]
        for (i, prev) in r.previousWrappingKeys.enumerated() {
            let path = TOMLPath(arrayLiteral: "redis", "previous_wrapping_keys").appending(index: i)
            if !Self.isWrappingKeyID(prev.id) {
                add([path.appending("id"), path], "\(path).id must be 1-64 printable ASCII characters without spaces")
            } else if !ids.insert(prev.id).inserted {
                add([path.appending("id"), path], "\(path).id \"\(prev.id)\" is already used by another wrapping key")
            }
            if (prev.file == nil) == (prev.env == nil) {
                add([path], "\(path) needs exactly one of file or env")
            }
        }
        for (key, d) in [
            ("connect_timeout", r.connectTimeout), ("command_timeout", r.commandTimeout),
            ("poll_interval", r.pollInterval),
        ] where d.milliseconds <= 0 {
            add([["redis", key]], "redis.\(key) must be greater than 0")
        }
        if r.keyPrefix.isEmpty || r.keyPrefix.utf8.contains(where: { $0 <= 0x20 || $0 >= 0x7f }) {
            add([["redis", "key_prefix"]], "redis.key_prefix must be non-empty printable ASCII without spaces")
        }
        if tickets.source == .redis, tickets.rotation >= .seconds(1), tickets.lifetime >= tickets.rotation,
            let plan = fleetPlan(r)
        {
            if plan.ringSize > 64 {
                add(
                    [["redis", "max_clock_skew"], ["tickets", "rotation"]],
                    "tickets.lifetime + 2 × redis.max_clock_skew and the look-ahead need \(plan.ringSize) keys per "
                        + "rotation period (at most 64): lengthen tickets.rotation or reduce the skew/lifetime"
                )
            }
        }
    }

    /// The fleet plan for this configuration's tickets and `[redis]`, or nil when the schedule is invalid.
    public func fleetPlan(_ r: Redis) -> FleetKeyPlan? {
        guard
            let schedule = try? TicketKeySchedule(
                rotationNanoseconds: tickets.rotation.milliseconds * 1_000_000,
                lifetimeNanoseconds: tickets.lifetime.milliseconds * 1_000_000
            )
        else { return nil }
        return FleetKeyPlan(
            schedule: schedule,
            maxClockSkewNanoseconds: r.maxClockSkew.milliseconds * 1_000_000,
            graceNanoseconds: r.fallbackGrace.milliseconds * 1_000_000,
            pollNanoseconds: max(1, r.pollInterval.milliseconds) * 1_000_000,
            prefix: r.keyPrefix
        )
    }

    static func isWrappingKeyID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64 && id.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f }
    }

    /// RFC 9110 `tchar`.
    static func isTokenScalar(_ c: Unicode.Scalar) -> Bool {
        switch c {
        case "A"..."Z", "a"..."z", "0"..."9", "!", "#", "$", "%", "&", "'", "*", "+", "-", ".", "^", "_", "`", "|", "~":
            true
        default: false
        }
    }

    /// Characters of OpenSSL cipher, cipher suite and group lists (`ECDHE+AESGCM:!aNULL:@SECLEVEL=2`).
    static func isCipherListScalar(_ c: Unicode.Scalar) -> Bool {
        switch c {
        case "A"..."Z", "a"..."z", "0"..."9", ":", "+", "-", "!", "@", "=", "_", ",", ".", " ": true
        default: false
        }
    }
}
