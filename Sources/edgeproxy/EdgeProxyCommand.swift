// edgeproxy: command-line entry point (swift-argument-parser), logging and metrics bootstrap.
import ArgumentParser
import Foundation
import Glibc
import Logging
import Metrics
import Prometheus
import ProxyConfig
import ProxyCore
import ProxyPolicy
import ProxyServer
import ProxyTicketStore
import ProxyTickets

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

    @Option(name: .long, help: "File with the admin API's bearer token (required for a non-loopback --admin).")
    var adminTokenFile: String?

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

@main
struct EdgeProxyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edgeproxy",
        abstract: "A TLS-terminating reverse proxy that decides session-ticket renewal per client.",
        subcommands: [Run.self, Check.self, Classify.self, Keys.self],
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
            config: cfg,
            configPath: options.config,
            overrides: try options.overrides(),
            logger: logger,
            registry: registry
        )
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

struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Fleet ticket keys: show an instance's ring, import nginx key files into Redis, create the next epoch.",
        subcommands: [Status.self, Import.self, Rotate.self]
    )

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the ticket key ring as one instance sees it (GET /keys on its admin API)."
        )

        @Option(name: .long, help: "The instance's admin address HOST:PORT.")
        var admin: String = "127.0.0.1:9443"

        @Flag(name: .long, help: "Print the admin API's JSON unchanged.")
        var json = false

        func run() throws {
            let body: String
            do { body = try AdminClient.get(admin, "/keys") } catch {
                FileHandleStderr.write("edgeproxy keys status: \(error)\n")
                throw ExitCode(1)
            }
            if json {
                print(body, terminator: "")
                return
            }
            print(KeysReport.render(json: body))
        }
    }

    /// Loads the configuration's `[redis]` section and connects to the primary (CLI operations write there).
    struct RedisOptions: ParsableArguments {
        @Option(name: .long, help: "The EdgeProxy configuration with the [redis] section (and the wrapping key).")
        var config: String

        func admin() throws -> RedisKeyAdmin {
            let cfg: ProxyConfiguration
            do { cfg = try ProxyConfiguration.load(path: config) } catch {
                FileHandleStderr.write("\(error)\n")
                throw ExitCode(1)
            }
            guard let r = cfg.redis, let url = r.url, let plan = cfg.fleetPlan(r) else {
                FileHandleStderr.write("\(config): no usable [redis] section (tickets.source = \"redis\" needs one)\n")
                throw ExitCode(1)
            }
            let wrapper: TicketKeyWrapper
            do { wrapper = try EdgeProxyServer.ticketKeyWrapper(r) } catch {
                FileHandleStderr.write("edgeproxy keys: \(error)\n")
                throw ExitCode(1)
            }
            let conn = RedisConnection(
                endpoint: EdgeProxyServer.endpoint(url),
                connectTimeoutNanoseconds: r.connectTimeout.milliseconds * 1_000_000,
                commandTimeoutNanoseconds: max(r.commandTimeout.milliseconds, 2000) * 1_000_000
            )
            return RedisKeyAdmin(plan: plan, wrapper: wrapper, connection: conn)
        }
    }

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Seal nginx-format ticket key files (48/80 bytes) into Redis under the wrapping key.",
            discussion: """
                Without --epoch each key is decrypt-only on every instance for tickets.lifetime (+ 2 x max_clock_skew) \
                from now: tickets issued by an nginx fleet keep resuming during a migration. With --epoch N the key \
                becomes epoch N's shared key if that epoch has none yet.
                """
        )

        @OptionGroup var redis: RedisOptions

        @Option(name: .long, help: "Make the (single) key the shared key of this epoch instead of decrypt-only.")
        var epoch: Int64?

        @Argument(help: "nginx ssl_session_ticket_key files.")
        var files: [String]

        func run() throws {
            guard !files.isEmpty else { throw ValidationError("give at least one key file") }
            if epoch != nil && files.count != 1 { throw ValidationError("--epoch takes exactly one key file") }
            let admin = try redis.admin()
            do {
                for i in try admin.importKeys(paths: files, epoch: epoch, now: Timestamp.wallClockNow()) {
                    print(
                        "\(i.path): key \(i.nameHex) -> \(i.slot)\(i.written ? "" : " (epoch already has a key: not written)")"
                    )
                }
            } catch {
                FileHandleStderr.write("edgeproxy keys import: \(error)\n")
                throw ExitCode(1)
            }
        }
    }

    struct Rotate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the next epoch's shared key in Redis now (if it does not exist yet)."
        )

        @OptionGroup var redis: RedisOptions

        func run() throws {
            let admin = try redis.admin()
            do {
                let r = try admin.rotate(now: Timestamp.wallClockNow())
                print(
                    "epoch \(r.epoch): key \(r.nameHex) at \(r.slot)\(r.created ? " (created)" : " (already present)")"
                )
            } catch {
                FileHandleStderr.write("edgeproxy keys rotate: \(error)\n")
                throw ExitCode(1)
            }
        }
    }
}

enum FileHandleStderr {
    static func write(_ s: String) {
        var s = s
        s.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

/// A minimal blocking HTTP/1.1 GET against an instance's admin listener (loopback, tiny responses).
enum AdminClient {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func get(_ hostPort: String, _ path: String, timeoutSeconds: Int = 5) throws -> String {
        guard let colon = hostPort.lastIndex(of: ":"), let port = UInt16(hostPort[hostPort.index(after: colon)...])
        else {
            throw Failure(description: "admin address must be HOST:PORT (got \(hostPort))")
        }
        let host = String(hostPort[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, "\(port)", &hints, &res) == 0, let ai = res else {
            throw Failure(description: "cannot resolve \(host)")
        }
        defer { freeaddrinfo(res) }
        let fd = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 else {
            throw Failure(
                description: "cannot connect to admin API at \(hostPort): \(String(cString: strerror(errno)))"
            )
        }
        // An instance with an admin token (issue 16 §2) needs it: taken from the same environment variable.
        let auth = getenv(ConfigOverrides.Flag.adminTokenEnvironment).map {
            "Authorization: Bearer \(String(cString: $0))\r\n"
        }
        let req = Array("GET \(path) HTTP/1.1\r\nHost: \(hostPort)\r\n\(auth ?? "")Connection: close\r\n\r\n".utf8)
        _ = req.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        let text = String(decoding: out, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else {
            throw Failure(description: "no HTTP response from \(hostPort)")
        }
        let status = text.prefix(while: { $0 != "\r" })
        guard status.contains(" 200") else { throw Failure(description: "admin API answered \(status)") }
        return String(text[split.upperBound...])
    }
}

/// Renders GET /keys as a table for `edgeproxy keys status`.
enum KeysReport {
    static func render(json: String) -> String {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else { return json }
        var lines: [String] = ["source: \(obj["source"] ?? "?")"]
        if let store = obj["store"] as? [String: Any] {
            let up = (store["up"] as? Bool) == true ? "up" : "DOWN"
            lines.append(
                "store: \(up)  primary \(store["primary"] ?? "?")  replica \(store["replica"] ?? "none")  epoch "
                    + "\(store["epoch"] ?? "?")  rejected entries \(store["rejected_entries"] ?? 0)  local keys "
                    + "\(store["local_keys"] ?? 0)"
            )
        }
        lines.append(
            "name                              state    origin    encrypt from → until                        decrypt until"
        )
        for case let k as [String: Any] in (obj["keys"] as? [Any]) ?? [] {
            let name = k["name"] as? String ?? "?"
            let state = ((k["state"] as? String ?? "?") + ((k["encrypting"] as? Bool) == true ? "*" : ""))
            let origin = k["origin"] as? String ?? "-"
            let from = k["encrypt_from"] as? String ?? "-"
            let until = k["encrypt_until"] as? String ?? "-"
            let dec = k["decrypt_until"] as? String ?? "-"
            lines.append(
                "\(name)  \(state.padding(toLength: 8, withPad: " ", startingAt: 0)) "
                    + "\(origin.padding(toLength: 9, withPad: " ", startingAt: 0)) \(from) → \(until)  \(dec)"
            )
        }
        return lines.joined(separator: "\n")
    }
}
