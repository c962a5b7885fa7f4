// Flags shared by `run`, `check` and `health`: the configuration file and the quick-start flags that override it.
import ArgumentParser
import Glibc
import ProxyConfig

/// Options shared by `run` and `check`: the configuration file and the quick-start flags that override it. The
/// defaults the help names are ProxyConfiguration's (the one source of defaults), not repeated here.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "TOML configuration file (see edgeproxy.example.toml).")
    var config: String?

    @Option(name: .long, help: "Listen address HOST:PORT (default \(ProxyConfiguration().listen)).")
    var listen: String?

    @Option(name: .long, help: "Origin URL http://host:port (repeatable; round-robin).")
    var upstream: [String] = []

    @Option(name: .long, help: "Certificate chain PEM (repeatable; pair each with --key).")
    var cert: [String] = []

    @Option(name: .long, help: "Private key PEM for the --cert at the same position.")
    var key: [String] = []

    @Option(name: .long, help: "Worker threads (default: number of cores).")
    var workers: Int?

    @Option(name: .long, help: "Admin listener HOST:PORT (metrics, health, keys, reload). Off by default.")
    var admin: String?

    @Option(name: .long, help: "File with the admin API's bearer token (required for a non-loopback --admin).")
    var adminTokenFile: String?

    @Option(name: .long, help: "Ticket key rotation period, e.g. 1h, 30s.")
    var ticketRotation: String?

    @Option(name: .long, help: "How long a ticket key still decrypts after it stopped encrypting, e.g. 18h.")
    var ticketLifetime: String?

    @Option(name: .long, help: "Directory of policy files (default: \(ProxyConfiguration.Policies().dir)).")
    var policies: String?

    func overrides() throws -> ConfigOverrides {
        guard cert.count == key.count else {
            throw ValidationError("--cert and --key must come in pairs (got \(cert.count) --cert, \(key.count) --key)")
        }
        return ConfigOverrides(
            listen: listen,
            upstreams: upstream,
            certs: zip(cert, key).map { (cert: $0, key: $1) },
            workers: workers,
            admin: admin,
            adminTokenFile: adminTokenFile,
            adminTokenEnv: getenv(ConfigOverrides.Flag.adminTokenEnvironment) != nil
                ? ConfigOverrides.Flag.adminTokenEnvironment : nil,
            ticketRotation: ticketRotation,
            ticketLifetime: ticketLifetime,
            policiesDir: policies
        )
    }

    /// Loads the file (if any) and applies the flags; errors print as `file:line:column: message`.
    func load() throws -> ProxyConfiguration {
        let base = try config.map { try ProxyConfiguration.load(path: $0) } ?? ProxyConfiguration()
        return try base.applying(overrides())
    }
}
