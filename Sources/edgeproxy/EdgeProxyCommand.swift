// edgeproxy: the command-line entry point (swift-argument-parser). One file per subcommand:
// RunCommand (start the proxy), CheckCommand, ClassifyCommand, HealthCommand, KeysCommand; ConfigOptions holds the
// flags shared by run/check; AdminClient talks to an instance's admin API.
import ArgumentParser

@main
struct EdgeProxyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edgeproxy",
        abstract: "A TLS-terminating reverse proxy that decides session-ticket renewal per client.",
        subcommands: [Run.self, Check.self, Classify.self, Health.self, Keys.self, DetectorCommand.self],
        defaultSubcommand: Run.self
    )
}
