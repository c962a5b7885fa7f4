// `edgeproxy detector status|export` (issue #14): what one instance's renewal-intolerance detector has seen, read
// from its admin API (GET /detector), and the flagged fingerprints as a policy file ready to commit into policies/.
import ArgumentParser
import Foundation

struct DetectorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detector",
        abstract: "The renewal-intolerance detector of a running instance (README \"Finding the next SChannel\").",
        subcommands: [Status.self, Export.self]
    )

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show flagged and most suspicious fingerprints (GET /detector on the admin API)."
        )

        @Option(name: .long, help: "The instance's admin address HOST:PORT.")
        var admin: String = "127.0.0.1:9443"

        @Flag(name: .long, help: "Print the admin API's JSON unchanged.")
        var json = false

        func run() throws {
            let body = try DetectorCommand.fetch(admin, command: "status")
            if json {
                print(body, terminator: "")
                return
            }
            let r = try DetectorCommand.parse(body, command: "status")
            print(DetectorReport.status(r))
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the flagged fingerprints as a policy file (stale_ticket = \"full-handshake\").",
            discussion: """
                The file matches the flagged JA4s and is ready to review and commit into policies/: once it is \
                loaded, those clients are protected whatever the detector's mode or TTL. Exits 1 when nothing is \
                flagged.
                """
        )

        @Option(name: .long, help: "The instance's admin address HOST:PORT.")
        var admin: String = "127.0.0.1:9443"

        @Option(name: .long, help: "Write the policy file here (default: standard output).")
        var output: String?

        @Option(name: .long, help: "The policy's name.")
        var name: String = "detector-renewal-intolerant"

        func run() throws {
            let r = try DetectorCommand.parse(DetectorCommand.fetch(admin, command: "export"), command: "export")
            guard let text = DetectorReport.policy(r, name: name) else {
                FileHandleStderr.write("edgeproxy detector export: no fingerprint is flagged\n")
                throw ExitCode(1)
            }
            if let output {
                do { try text.write(toFile: output, atomically: true, encoding: .utf8) } catch {
                    FileHandleStderr.write("edgeproxy detector export: cannot write \(output): \(error)\n")
                    throw ExitCode(1)
                }
            } else {
                print(text, terminator: "")
            }
        }
    }

    static func fetch(_ admin: String, command: String) throws -> String {
        do { return try AdminClient.get(admin, "/detector") } catch {
            FileHandleStderr.write("edgeproxy detector \(command): \(error)\n")
            throw ExitCode(1)
        }
    }

    static func parse(_ body: String, command: String) throws -> [String: Any] {
        guard let o = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
            FileHandleStderr.write("edgeproxy detector \(command): the admin API did not answer a JSON object\n")
            throw ExitCode(1)
        }
        return o
    }
}

/// Rendering of the GET /detector report (pure; the JSON is the admin API's).
enum DetectorReport {
    static func num(_ v: Any?) -> String {
        guard let d = (v as? NSNumber)?.doubleValue else { return "-" }
        return d == d.rounded() ? String(Int(d)) : String(format: "%.3f", d)
    }

    static func status(_ r: [String: Any]) -> String {
        var out = "mode: \(r["mode"] as? String ?? "?")\n"
        if let t = r["thresholds"] as? [String: Any] {
            out +=
                "flag when: >= \(num(t["min_aborts"])) aborts after inline renewal, >= \(num(t["min_abort_ratio"])) "
                + "of renewals, >= \(num(t["baseline_factor"]))x baseline, >= \(num(t["min_prefixes"])) prefixes\n"
        }
        let flagged = r["flagged"] as? [[String: Any]] ?? []
        out += "flagged: \(flagged.count)\n"
        for f in flagged {
            out +=
                "  \(f["ja4"] as? String ?? "?")  \(f["state"] as? String ?? "?")  aborts \(num(f["aborts_after_inline_renewal"]))"
                + "  rate \(num(f["abort_rate"]))  baseline \(num(f["baseline_abort_rate"]))"
                + "  prefixes \(num(f["distinct_client_prefixes"]))  fallbacks \(num(f["fallbacks"]))"
                + "  since \(f["flagged_at"] as? String ?? "?")  until \(f["expires_at"] as? String ?? "?")\n"
        }
        let fps = r["fingerprints"] as? [[String: Any]] ?? []
        out += "tracked (most suspicious first):\n"
        for f in fps.prefix(20) {
            out +=
                "  \(f["ja4"] as? String ?? "?")  \(f["state"] as? String ?? "?")  renewals \(num(f["renewal_handshakes"]))"
                + "  aborted \(num(f["aborts_after_inline_renewal"]))  others \(num(f["baseline_handshakes"]))"
                + "  aborted \(num(f["baseline_aborts"]))  prefixes \(num(f["distinct_client_prefixes"]))"
                + "  last seen \(f["last_seen"] as? String ?? "?")\n"
        }
        return out
    }

    /// The policy file for the flagged fingerprints, or nil when none is flagged.
    static func policy(_ r: [String: Any], name: String) -> String? {
        let flagged = r["flagged"] as? [[String: Any]] ?? []
        let ja4s = flagged.compactMap { $0["ja4"] as? String }
        guard !ja4s.isEmpty else { return nil }
        var out = """
            # Exported by `edgeproxy detector export`: client fingerprints the renewal-intolerance detector flagged
            # (they aborted the handshake after an inline ticket renewal, far more often than their other handshakes,
            # from several networks). Review, then commit into policies/: a stale ticket then gets a full handshake
            # with a fresh ticket for these clients, whatever the detector's mode or TTL.
            #
            # Evidence when exported:

            """
        for f in flagged {
            out +=
                "#   \(f["ja4"] as? String ?? "?") (JA3 \(f["ja3_hash"] as? String ?? "?")): "
                + "\(num(f["aborts_after_inline_renewal"])) aborts after inline renewal, rate \(num(f["abort_rate"])) "
                + "vs \(num(f["baseline_abort_rate"])) otherwise, \(num(f["distinct_client_prefixes"])) prefixes, "
                + "\(num(f["fallbacks"])) fallbacks, flagged \(f["flagged_at"] as? String ?? "?")\n"
        }
        out += """

            [[policy]]
            name = "\(name)"
            description = "Flagged by the detector: never renew their tickets inline"
            priority = 900
            mode = "enforce"

            [policy.actions]
            stale_ticket = "full-handshake"
            tag = "renewal-intolerant"

            [policy.match]
            ja4 = [\(ja4s.map { "\"\($0)\"" }.joined(separator: ", "))]

            """
        return out
    }
}
