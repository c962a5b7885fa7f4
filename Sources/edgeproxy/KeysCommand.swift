// `edgeproxy keys status|import|rotate`: fleet ticket keys.
import ArgumentParser
import Foundation
import ProxyConfig
import ProxyCore
import ProxyServer
import ProxyTicketStore
import ProxyTickets

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
            do { wrapper = try ConfigMapping.ticketKeyWrapper(r) } catch {
                FileHandleStderr.write("edgeproxy keys: \(error)\n")
                throw ExitCode(1)
            }
            let conn = RedisConnection(
                endpoint: ConfigMapping.endpoint(url),
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
