// edgeproxy: command-line entry point (swift-argument-parser), logging and metrics bootstrap.
import ArgumentParser
import Glibc
import Logging
import Metrics
import Prometheus
import ProxyConfig
import ProxyPolicy
import ProxyServer

/// Options shared by `run` and `check`: the configuration file and the quick-start flags that override it.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "TOML configuration file (see edgeproxy.example.toml).")
    var config: String?

    @Option(name: .long, help: "Listen address HOST:PORT (default 127.0.0.1:8443).")
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

    @Option(name: .long, help: "Ticket key rotation period, e.g. 1h, 30s.")
    var ticketRotation: String?

    @Option(name: .long, help: "How long a ticket key still decrypts after it stopped encrypting, e.g. 18h.")
    var ticketLifetime: String?

    @Option(name: .long, help: "Directory of policy files (default: policies).")
    var policies: String?

    func overrides() throws -> ConfigOverrides {
        guard cert.count == key.count else {
            throw ValidationError("--cert and --key must come in pairs (got \(cert.count) --cert, \(key.count) --key)")
        }
        return ConfigOverrides(
            listen: listen, upstreams: upstream, certs: zip(cert, key).map { (cert: $0, key: $1) },
            workers: workers, admin: admin, ticketRotation: ticketRotation, ticketLifetime: ticketLifetime,
            policiesDir: policies)
    }

    /// Loads the file (if any) and applies the flags; errors print as `file:line:column: message`.
    func load() throws -> ProxyConfiguration {
        let base = try config.map { try ProxyConfiguration.load(path: $0) } ?? ProxyConfiguration()
        return try base.applying(overrides())
    }
}

@main
struct EdgeProxyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edgeproxy",
        abstract: "A TLS-terminating reverse proxy that decides session-ticket renewal per client.",
        subcommands: [Run.self, Check.self, Classify.self],
        defaultSubcommand: Run.self
    )
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start the proxy (the default).")

    @OptionGroup var options: ConfigOptions

    func run() throws {
        let cfg: ProxyConfiguration
        do {
            cfg = try options.load()
        } catch let e as ConfigError {
            FileHandleStderr.write("\(e)\n")
            throw ExitCode(2)
        }
        let level = Logger.Level(rawValue: cfg.logLevel.rawValue) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let logger = Logger(label: "edgeproxy")
        let server = EdgeProxyServer(
            config: cfg, configPath: options.config, overrides: try options.overrides(), logger: logger,
            registry: registry)
        do {
            let code = try server.run()
            throw ExitCode(code)
        } catch let e as ExitCode {
            throw e
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a configuration (and its policy directory); print file:line:column: message per problem."
    )

    @OptionGroup var options: ConfigOptions

    func run() throws {
        let cfg: ProxyConfiguration
        do {
            cfg = try options.load()
        } catch let e as ConfigError {
            FileHandleStderr.write("\(e)\n")
            throw ExitCode(1)
        }
        if cfg.policies.enabled {
            var st = stat()
            if stat(cfg.policies.dir, &st) == 0 {
                do {
                    let r = try PolicyLoader.load(directory: cfg.policies.dir, generation: 1)
                    for d in r.warnings { FileHandleStderr.write("\(d)\n") }
                } catch let e as PolicyLoadError {
                    for d in e.diagnostics { FileHandleStderr.write("\(d)\n") }
                    throw ExitCode(1)
                }
            }
        }
        print("\(options.config ?? "configuration"): ok")
    }
}

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fingerprint one ClientHello (hex, binary, TLS record or fixture JSON) and show the policy decision."
    )

    @Option(name: .long, help: "Directory of policy files (default: policies).")
    var policies: String = "policies"

    @Argument(help: "Input file, or - for standard input (default).")
    var file: String = "-"

    func run() throws {
        let input: [UInt8]
        if file == "-" {
            input = readAll(fd: 0)
        } else {
            let fd = open(file, O_RDONLY)
            guard fd >= 0 else {
                FileHandleStderr.write("edgeproxy classify: cannot read \(file): \(String(cString: strerror(errno)))\n")
                throw ExitCode(1)
            }
            defer { close(fd) }
            input = readAll(fd: fd)
        }
        let set: CompiledPolicySet
        do {
            set = try PolicyLoader.load(directory: policies, generation: 1).set
        } catch let e as PolicyLoadError {
            for d in e.diagnostics { FileHandleStderr.write("\(d)\n") }
            throw ExitCode(1)
        }
        do {
            print(try Classifier.classify(input: input, policies: set))
        } catch {
            FileHandleStderr.write("edgeproxy classify: \(error)\n")
            throw ExitCode(1)
        }
    }

    private func readAll(fd: Int32) -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
            if out.count > 1 << 20 { break }
        }
        return out
    }
}

enum FileHandleStderr {
    static func write(_ s: String) {
        var s = s
        s.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
