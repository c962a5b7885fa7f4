// `edgeproxy check`: validate a configuration and its policy directory.
import ArgumentParser
import Glibc
import ProxyConfig
import ProxyPolicy

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
