// `edgeproxy classify`: fingerprint one ClientHello and show the policy decision.
import ArgumentParser
import Glibc
import ProxyConfig
import ProxyPolicy

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fingerprint one ClientHello (hex, binary, TLS record or fixture JSON) and show the policy decision."
    )

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Directory of policy files. Without it: ./policies if it exists, otherwise no policies (said on stderr).",
            valueName: "dir"
        )
    )
    var policies: String?

    @Argument(help: "Input file, or - for standard input.")
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
        if let dir = policies ?? (Self.isDirectory(Self.defaultPolicies) ? Self.defaultPolicies : nil) {
            guard Self.isDirectory(dir) else {
                FileHandleStderr.write("edgeproxy classify: --policies \(dir): no such directory\n")
                throw ExitCode(1)
            }
            do {
                set = try PolicyLoader.load(directory: dir, generation: 1).set
            } catch let e as PolicyLoadError {
                for d in e.diagnostics { FileHandleStderr.write("\(d)\n") }
                throw ExitCode(1)
            } catch {
                FileHandleStderr.write("edgeproxy classify: cannot load policies from \(dir): \(error)\n")
                throw ExitCode(1)
            }
        } else {
            FileHandleStderr.write(
                "edgeproxy classify: no ./\(Self.defaultPolicies) directory here and no --policies: fingerprinting without policies\n"
            )
            set = .empty
        }
        do {
            print(try Classifier.classify(input: input, policies: set))
        } catch {
            FileHandleStderr.write("edgeproxy classify: \(error)\n")
            throw ExitCode(1)
        }
    }

    static let defaultPolicies = ProxyConfiguration.Policies().dir

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (UInt32(st.st_mode) & UInt32(S_IFMT)) == UInt32(S_IFDIR)
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
