/// Values given on the command line; each non-nil (or non-empty) field replaces the file's value.
///
/// Relative paths given here stay relative to the working directory, as a shell user expects.
public struct ConfigOverrides: Sendable {
    /// `--listen host:port`.
    public var listen: String?
    /// `--upstream URL`, repeatable; when non-empty, replaces `upstreams` entirely.
    public var upstreams: [String]
    /// `--cert PATH --key PATH` pairs; when non-empty, replaces `certificates` entirely.
    public var certs: [(cert: String, key: String)]
    /// `--workers N`.
    public var workers: Int?
    /// `--admin host:port`.
    public var admin: String?
    /// `--admin-token-file PATH`: replaces the file's admin_token_file/admin_token_env.
    public var adminTokenFile: String?
    /// The environment variable holding the admin token (the CLI sets it to `EDGEPROXY_ADMIN_TOKEN` when that is
    /// set); replaces the file's admin_token_file/admin_token_env unless `adminTokenFile` is given.
    public var adminTokenEnv: String?
    /// `--ticket-rotation DURATION`.
    public var ticketRotation: String?
    /// `--ticket-lifetime DURATION`.
    public var ticketLifetime: String?
    /// `--policies PATH`.
    public var policiesDir: String?

    public init(
        listen: String? = nil,
        upstreams: [String] = [],
        certs: [(cert: String, key: String)] = [],
        workers: Int? = nil,
        admin: String? = nil,
        adminTokenFile: String? = nil,
        adminTokenEnv: String? = nil,
        ticketRotation: String? = nil,
        ticketLifetime: String? = nil,
        policiesDir: String? = nil
    ) {
        self.listen = listen
        self.upstreams = upstreams
        self.certs = certs
        self.workers = workers
        self.admin = admin
        self.adminTokenFile = adminTokenFile
        self.adminTokenEnv = adminTokenEnv
        self.ticketRotation = ticketRotation
        self.ticketLifetime = ticketLifetime
        self.policiesDir = policiesDir
    }

    /// The flag spellings used in diagnostics; the CLI must declare its options with these names.
    public enum Flag {
        public static let listen = "--listen"
        public static let upstream = "--upstream"
        public static let cert = "--cert"
        public static let key = "--key"
        public static let workers = "--workers"
        public static let admin = "--admin"
        public static let adminTokenFile = "--admin-token-file"
        /// Not a flag: the environment variable the CLI reads the admin token from.
        public static let adminTokenEnvironment = "EDGEPROXY_ADMIN_TOKEN"
        public static let ticketRotation = "--ticket-rotation"
        public static let ticketLifetime = "--ticket-lifetime"
        public static let policiesDir = "--policies"
    }

    /// The flag that sets `path`, if this value of overrides sets it.
    func flag(for path: TOMLPath) -> String? {
        guard case .key(let first)? = path.components.first else { return nil }
        let second: String? = path.components.dropFirst().first.flatMap { if case .key(let k) = $0 { k } else { nil } }
        switch first {
        case "listen" where listen != nil: return Flag.listen
        case "upstreams" where !upstreams.isEmpty: return Flag.upstream
        case "certificates" where !certs.isEmpty:
            if case .key("key")? = path.components.last { return Flag.key }
            return Flag.cert
        case "workers" where workers != nil: return Flag.workers
        case "admin" where admin != nil: return Flag.admin
        case "admin_token_file" where adminTokenFile != nil: return Flag.adminTokenFile
        case "admin_token_env" where adminTokenEnv != nil && adminTokenFile == nil: return Flag.adminTokenEnvironment
        case "tickets" where second == "rotation" && ticketRotation != nil: return Flag.ticketRotation
        case "tickets" where second == "lifetime" && ticketLifetime != nil: return Flag.ticketLifetime
        case "policies" where second == "dir" && policiesDir != nil: return Flag.policiesDir
        default: return nil
        }
    }
}

extension ProxyConfiguration {
    /// This configuration with `overrides` applied (flags win over the file), validated again as a whole.
    /// - Throws: ``ConfigError`` whose diagnostics name the flag, e.g. `--upstream: upstream "ftp://x": only
    ///   http:// upstreams are supported`. A rule broken by a flag together with a file value (e.g.
    ///   `--ticket-lifetime` shorter than the file's `tickets.rotation`) is reported against the flag.
    public func applying(_ overrides: ConfigOverrides) throws(ConfigError) -> ProxyConfiguration {
        typealias Flag = ConfigOverrides.Flag
        var config = self
        var diagnostics: [ConfigError.Diagnostic] = []
        func fail(_ flag: String, _ message: String) {
            diagnostics.append(.init(file: flag, line: 0, column: 0, message: message))
        }

        if let listen = overrides.listen {
            do { config.listen = try HostPort.parse(listen, allowPortZero: true) } catch {
                fail(Flag.listen, error.message)
            }
        }
        if !overrides.upstreams.isEmpty {
            config.upstreams = []
            for text in overrides.upstreams {
                do { config.upstreams.append(try Upstream.parse(text)) } catch { fail(Flag.upstream, error.message) }
            }
        }
        if !overrides.certs.isEmpty {
            config.certificates = overrides.certs.map { CertificatePair(cert: $0.cert, key: $0.key) }
        }
        if let workers = overrides.workers { config.workers = workers }
        if let admin = overrides.admin {
            do { config.admin = try HostPort.parse(admin, allowPortZero: true) } catch {
                fail(Flag.admin, error.message)
            }
        }
        if let file = overrides.adminTokenFile {
            config.adminTokenFile = file
            config.adminTokenEnv = nil
        } else if let env = overrides.adminTokenEnv {
            config.adminTokenEnv = env
            config.adminTokenFile = nil
        }
        if let rotation = overrides.ticketRotation {
            do {
                config.tickets.rotation = try ConfigDuration(parsing: rotation)
            } catch {
                fail(Flag.ticketRotation, error.message)
            }
        }
        if let lifetime = overrides.ticketLifetime {
            do {
                config.tickets.lifetime = try ConfigDuration(parsing: lifetime)
            } catch {
                fail(Flag.ticketLifetime, error.message)
            }
        }
        if let dir = overrides.policiesDir { config.policies.dir = dir }

        for problem in config.problems() {
            let flag = problem.paths.lazy.compactMap { overrides.flag(for: $0) }.first
            fail(flag ?? "configuration", problem.message)
        }
        if !diagnostics.isEmpty { throw ConfigError(diagnostics) }
        return config
    }
}
