// edgeproxy-bench: a TLS handshake and HTTP/1.1 load generator on ProxyEventLoop with OpenSSL on the client side.
// See bench/README.md. Load runs on worker threads (one EventLoop each); the main thread prints progress.
import ArgumentParser
import COpenSSL
import CProxyShims
import Foundation
import Glibc
import ProxyCore
import ProxyEventLoop

@main
struct EdgeProxyBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edgeproxy-bench",
        abstract: "TLS handshake / HTTP/1.1 load generator: N connections for a fixed time; full, resumed or mixed.",
        discussion: """
            Each of --connections slots loops: connect, TLS handshake, --requests GETs (keep-alive), close_notify, \
            close. Counts connections that complete inside [warmup, warmup+duration); connections still in flight \
            then get --drain seconds to finish (counted in "total" only). Prints a progress line on stderr, a \
            RESULT line and a summary on stdout, and JSON with --json.
            """
    )

    @Option(name: .long, help: "Server address (IP literal).") var host = "127.0.0.1"
    @Option(name: [.short, .long], help: "Server port.") var port: Int
    @Option(name: .long, help: "SNI server name (none by default, like peerbench's hsbench).") var sni: String?
    @Option(name: [.short, .long], help: "Concurrent connections (slots).") var connections = 32
    @Option(name: [.short, .long], help: "Load threads, each with its own event loop.") var threads = 1
    @Option(name: [.short, .long], help: "Measurement window, seconds.") var duration = 5.0
    @Option(name: [.short, .long], help: "Warm-up before the window, seconds.") var warmup = 1.0
    @Option(name: .long, help: "Grace for connections in flight after the window, seconds.") var drain = 2.0
    @Option(name: [.short, .long], help: "full | resumed | mix") var mode = "full"
    @Option(name: .long, help: "mix: share of connections that present their slot's last ticket (0...1).")
    var resumeRatio = 0.5
    @Option(name: .long, help: "TLS version: 1.2 | 1.3 | any") var tls = "1.3"
    @Option(
        name: [.customShort("k"), .customLong("requests")],
        help: "HTTP/1.1 GETs per connection (0: handshake only)."
    )
    var requests = 1
    @Option(name: .long, help: "Request path.") var path = "/64"
    @Option(name: .long, help: "TLS 1.2 cipher list, in order (OpenSSL syntax).") var ciphers: String?
    @Option(name: .long, help: "TLS 1.3 cipher suites, in order.") var ciphersuites: String?
    @Option(name: .long, help: "supported_groups, in order (key share for the first).") var groups: String?
    @Option(name: .long, help: "signature_algorithms, in order.") var sigalgs: String?
    @Option(name: .long, help: "ALPN protocols, comma-separated.") var alpn = "http/1.1"
    @Flag(name: .long, help: "Send no ALPN extension.") var noAlpn = false
    @Flag(name: .long, help: "Send no session_ticket extension: resumed mode then resumes by session ID.")
    var noTicket = false
    @Option(name: .long, help: "Share of connections sent with the SChannel-like hello (0...1).")
    var schannelShare = 0.0
    @Option(name: .long, help: "Hold mode: open --connections, keep them idle this many seconds, exit.")
    var hold: Double?
    @Option(name: .long, help: "Hold mode: handshakes in flight at once.") var maxInflight = 100
    @Option(name: .long, help: "Per-connection deadline, seconds.") var timeout = 10.0
    @Flag(name: .long, help: "Check the server's X.509 chain like a default client (off: signature still checked).")
    var verifyChain = false
    @Option(name: .long, help: "Write JSON results to this file.") var json: String?
    @Option(name: .long, help: "Write each hello shape's first ClientHello (hex) into this directory.")
    var dumpHello: String?
    @Flag(name: [.short, .long], help: "No progress line.") var quiet = false

    func validate() throws {
        guard BenchMode(rawValue: mode) != nil else { throw ValidationError("--mode must be full, resumed or mix") }
        guard TLSChoice(rawValue: tls) != nil else { throw ValidationError("--tls must be 1.2, 1.3 or any") }
        guard (0...1).contains(resumeRatio), (0...1).contains(schannelShare) else {
            throw ValidationError("--resume-ratio and --schannel-share are shares in 0...1")
        }
        guard connections >= 1, threads >= 1, duration > 0, warmup >= 0, requests >= 0 else {
            throw ValidationError("need --connections >= 1, --threads >= 1, --duration > 0, --requests >= 0")
        }
        if mode != "full" && requests == 0 {
            // TLS 1.3 tickets arrive after the handshake: without a request nothing reads them.
            throw ValidationError("resumption needs --requests >= 1")
        }
        if hold != nil && threads != 1 { throw ValidationError("--hold runs on one thread") }
    }

    func run() throws {
        guard let addr = SocketAddress(literal: host, port: port) else {
            throw ValidationError("--host must be an IP literal")
        }
        let benchMode = BenchMode(rawValue: mode)!
        var shape = HelloShape.openssl
        shape.ciphers = ciphers
        shape.ciphersuites = ciphersuites
        shape.groups = groups
        shape.sigalgs = sigalgs
        shape.alpn = noAlpn ? [] : alpn.split(separator: ",").map(String.init)
        shape.noTicket = noTicket
        let config = BenchConfig(
            address: addr,
            hostHeader: sni ?? addr.description,
            sni: sni,
            connections: connections,
            threads: min(threads, connections),
            duration: duration,
            warmup: hold == nil ? warmup : 0,
            drain: drain,
            mode: benchMode,
            resumeRatio: benchMode == .full ? 0 : benchMode == .resumed ? 1 : resumeRatio,
            tls: TLSChoice(rawValue: tls)!,
            requests: requests,
            path: path,
            shape: shape,
            schannelShare: schannelShare,
            hold: hold,
            maxInflight: maxInflight,
            timeout: timeout,
            verifyChain: verifyChain,
            dumpHelloDir: dumpHello,
            quiet: quiet
        )

        signal(SIGPIPE, SIG_IGN)
        var rl = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &rl)
        rl.rlim_cur = rl.rlim_max
        setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &rl)
        ClientTLSContext.connectionIndex = cps_SSL_get_ex_new_index()

        var workers: [BenchWorker] = []
        do {
            for i in 0..<config.threads {
                let n = config.connections / config.threads + (i < config.connections % config.threads ? 1 : 0)
                workers.append(try BenchWorker(index: i, slots: n, config: config))
            }
        } catch {
            FileHandle.standardError.write("edgeproxy-bench: \(error)\n".data(using: .utf8)!)
            throw ExitCode(2)
        }

        var ru0 = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &ru0)
        let start = monotonicNanos()
        var tids: [pthread_t] = []
        for w in workers {
            var tid = pthread_t()
            // SAFETY: retained for the thread's lifetime; the thread releases it. The main thread keeps its own
            // reference and reads the worker's stats only after pthread_join.
            let arg = Unmanaged.passRetained(Box(w, start)).toOpaque()
            let rc = pthread_create(
                &tid,
                nil,
                { p in
                    let b = Unmanaged<Box>.fromOpaque(p!).takeRetainedValue()
                    b.worker.run(start: b.start)
                    return nil
                },
                arg
            )
            precondition(rc == 0, "pthread_create failed")
            tids.append(tid)
        }

        let holdReport = monitor(workers, config: config, start: start)
        for t in tids { pthread_join(t, nil) }
        let elapsed = Double(monotonicNanos() - start) / 1e9
        var ru1 = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &ru1)
        if !quiet { FileHandle.standardError.write("\n".data(using: .utf8)!) }

        var all = WorkerStats(shapes: config.shapes.count)
        var unfinished = 0
        for w in workers {
            all.merge(w.stats)
            unfinished += w.unfinished
        }
        if let dir = dumpHello, let w0 = workers.first {
            for c in w0.contexts {
                guard let hello = c.firstHello else { continue }
                let hex = hello.map { String(format: "%02x", $0) }.joined()
                try (hex + "\n").write(toFile: "\(dir)/\(c.shape.name).hex", atomically: true, encoding: .utf8)
            }
        }
        let window = hold ?? config.duration
        func secs(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        let cpu = secs(ru1.ru_utime) - secs(ru0.ru_utime) + secs(ru1.ru_stime) - secs(ru0.ru_stime)
        var byShape: [String: BenchReport.Scope] = [:]
        for (i, s) in config.shapes.enumerated() { byShape[s.name] = BenchReport.Scope(all.byShape[i]) }
        let report = BenchReport(
            settings: .init(
                target: addr.description,
                sni: sni,
                connections: connections,
                threads: config.threads,
                durationS: duration,
                warmupS: config.warmup,
                mode: mode,
                resumeRatio: config.resumeRatio,
                tls: tls,
                requestsPerConnection: requests,
                path: path,
                schannelShare: schannelShare,
                shapes: config.shapes.map(\.name),
                holdS: hold
            ),
            windowS: window,
            elapsedS: elapsed,
            connPerS: Double(all.window.connections) / window,
            reqPerS: Double(all.window.requests) / window,
            window: .init(all.window),
            total: .init(all.total),
            byShape: byShape,
            latencyMs: .init(
                handshake: LatencySummary(all.handshakeMs),
                request: LatencySummary(all.requestMs),
                connection: LatencySummary(all.connectionMs)
            ),
            errorSamples: all.errorSamples,
            negotiated: all.negotiated,
            unfinishedAtEnd: unfinished,
            clientCPUS: cpu,
            hold: holdReport.map { _ in .init(held: all.held, failed: all.holdFailed, closedByPeer: all.holdClosed) }
        )
        print(report.resultLine)
        printSummary(report)
        if let json {
            try report.json().write(to: URL(fileURLWithPath: json))
        }
    }

    /// Main thread while the workers run: the progress line, and hold mode's READY / hold / stop sequence.
    private func monitor(_ workers: [BenchWorker], config: BenchConfig, start: UInt64) -> Bool? {
        let isHold = config.hold != nil
        var lastPrint = start
        var lastConns = 0
        var ready = false
        var stopSent = false
        var readyAt: UInt64 = 0
        while !workers.allSatisfy({ $0.progress.finished.load(ordering: .acquiring) }) {
            usleep(50_000)
            let now = monotonicNanos()
            if isHold {
                let settled = workers.reduce(0) { $0 + $1.progress.settled.load(ordering: .relaxed) }
                let overdue = now - start > 30_000_000_000
                if !ready && (settled >= config.connections || overdue) {
                    ready = true
                    readyAt = now
                    let conns = workers.reduce(0) { $0 + $1.progress.connections.load(ordering: .relaxed) }
                    let line =
                        "READY held=\(conns) failed=\(settled - conns) open_secs="
                        + String(format: "%.2f", Double(now - start) / 1e9) + "\n"
                    FileHandle.standardOutput.write(line.data(using: .utf8)!)
                }
                if ready && !stopSent && now - readyAt >= UInt64(config.hold! * 1e9) {
                    stopSent = true
                    for w in workers {
                        let ref = WorkerRef(w)
                        w.messenger.send { ref.worker.stopHold() }
                    }
                }
            }
            if !quiet && now - lastPrint >= 1_000_000_000 {
                let conns = workers.reduce(0) { $0 + $1.progress.connections.load(ordering: .relaxed) }
                let res = workers.reduce(0) { $0 + $1.progress.resumed.load(ordering: .relaxed) }
                let errs = workers.reduce(0) { $0 + $1.progress.errors.load(ordering: .relaxed) }
                let rate = Double(conns - lastConns) / (Double(now - lastPrint) / 1e9)
                let t = Double(now - start) / 1e9
                let phase =
                    isHold
                    ? "hold" : t < config.warmup ? "warm-up" : t < config.warmup + config.duration ? "measure" : "drain"
                let line = String(
                    format: "\r[%5.1fs %@] conns=%d (%.0f/s) resumed=%.1f%% errors=%d   ",
                    t,
                    phase,
                    conns,
                    rate,
                    conns > 0 ? 100 * Double(res) / Double(conns) : 0,
                    errs
                )
                FileHandle.standardError.write(line.data(using: .utf8)!)
                lastPrint = now
                lastConns = conns
            }
        }
        return isHold ? ready : nil
    }

    private func printSummary(_ r: BenchReport) {
        let w = r.window
        let l = r.latencyMs
        print(
            String(
                format: "%d connections in %.1f s window: %.1f conn/s, %.1f req/s; resumed %.1f%% (%d of %d attempts)",
                w.connections,
                r.windowS,
                r.connPerS,
                r.reqPerS,
                100 * w.resumedFraction,
                w.resumed,
                w.resumeAttempts
            )
        )
        print(
            String(
                format:
                    "tickets/conn %.3f (full %@, resumed %@); connection latency ms p50 %.2f p90 %.2f p99 %.2f max %.2f",
                w.ticketsPerConnection,
                w.ticketsPerFull.map { String(format: "%.2f", $0) } ?? "-",
                w.ticketsPerResumed.map { String(format: "%.2f", $0) } ?? "-",
                l.connection.p50,
                l.connection.p90,
                l.connection.p99,
                l.connection.max
            )
        )
        let errs = w.errors.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        print("errors: \(errs.isEmpty ? "none" : errs.joined(separator: " ")); bad status: \(w.badStatus)")
        for (k, v) in r.errorSamples.sorted(by: { $0.key < $1.key }) { print("  first \(k): \(v)") }
        for (k, v) in r.negotiated.sorted(by: { $0.key < $1.key }) { print("negotiated \(k): \(v)") }
    }
}

/// Carries a worker and the common start time into its thread.
private final class Box {
    let worker: BenchWorker
    let start: UInt64
    init(_ w: BenchWorker, _ s: UInt64) {
        worker = w
        start = s
    }
}

/// Hands a worker to a closure that runs on the worker's own loop thread.
private struct WorkerRef: @unchecked Sendable {
    // SAFETY: the closure holding this runs only on the worker's loop thread (via its LoopMessenger), the one
    // thread that touches the worker.
    let worker: BenchWorker
    init(_ w: BenchWorker) { worker = w }
}
