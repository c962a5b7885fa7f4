// `edgeproxy health`: the container HEALTHCHECK (and anyone's liveness probe). It needs no admin listener: it reads
// the state file the running proxy wrote when it became ready, checks that process is alive and that its listener
// accepts a connection, and — only when that instance has an admin listener — that GET /healthz answers 200.
import ArgumentParser
import Glibc

struct Health: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a running proxy (its state file, process, listener, and /healthz if it has an admin API).",
        discussion: """
            The proxy writes the state file when it is ready if it was started with --state-file FILE or with \
            EDGEPROXY_STATE_FILE set (the container image sets it). Exit 0 when healthy, 1 with one line on stderr \
            otherwise.
            """
    )

    @Option(
        name: .long,
        help: ArgumentHelp("State file of the instance to check (default: $EDGEPROXY_STATE_FILE).", valueName: "file")
    )
    var stateFile: String?

    @Option(name: .long, help: "Seconds to wait for each connection.")
    var timeout: Int = 3

    func run() throws {
        guard let path = stateFile ?? getenv(StateFile.environmentName).map({ String(cString: $0) }), !path.isEmpty
        else {
            FileHandleStderr.write(
                "edgeproxy health: no state file: give --state-file or set \(StateFile.environmentName)\n"
            )
            throw ExitCode(1)
        }
        do {
            let state = try StateFile.read(from: path)
            guard kill(state.pid, 0) == 0 || errno == EPERM else {
                throw AdminClient.Failure(description: "process \(state.pid) from \(path) is not running")
            }
            close(try AdminClient.connectTo(StateFile.connectable(state.listen), timeoutSeconds: timeout))
            if let admin = state.admin {
                _ = try AdminClient.get(StateFile.connectable(admin), "/healthz", timeoutSeconds: timeout)
            }
            print(
                "ok: pid \(state.pid), listening on \(state.listen)\(state.admin.map { ", admin \($0) healthy" } ?? "")"
            )
        } catch let e as AdminClient.Failure {
            FileHandleStderr.write("edgeproxy health: \(e)\n")
            throw ExitCode(1)
        }
    }
}
