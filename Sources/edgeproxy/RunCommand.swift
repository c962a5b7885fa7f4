// `edgeproxy run` (the default subcommand): logging and metrics bootstrap, then the server until it drains.
import ArgumentParser
import Glibc
import Logging
import Metrics
import Prometheus
import ProxyConfig
import ProxyServer

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start the proxy (the default).")

    @OptionGroup var options: ConfigOptions

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Write pid and addresses here once ready, for `edgeproxy health` (default: $EDGEPROXY_STATE_FILE).",
            valueName: "file"
        )
    )
    var stateFile: String?

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
        let statePath = stateFile ?? getenv(StateFile.environmentName).map { String(cString: $0) }
        server.onReady = { [unowned server] in
            if let path = statePath, !path.isEmpty, let listen = server.boundAddress {
                let state = StateFile(pid: getpid(), listen: "\(listen)", admin: server.adminAddress.map { "\($0)" })
                do { try state.write(to: path) } catch { logger.error("state file: \(error)") }
            }
            ServiceNotifier.notify("READY=1\nMAINPID=\(getpid())")
        }
        defer {
            // Remove the state file unless a newer process (an upgrade) has replaced it.
            if let path = statePath, !path.isEmpty, (try? StateFile.read(from: path))?.pid == getpid() { unlink(path) }
        }
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
