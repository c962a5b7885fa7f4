import CProxyShims
import Glibc
import Logging
import Metrics
import Prometheus
import ProxyConfig
import ProxyCore
import ProxyEventLoop
import ProxyHTTP1
import ProxyPolicy
import ProxyTLS
import ProxyTicketStore
import ProxyTickets
import ProxyUpstreams
import Synchronization

/// The process: N workers (one epoll loop + SO_REUSEPORT listener each) and a control loop on the calling
/// thread that owns signals (signalfd), the admin listener, the ticket-key schedule and reloads.
///
/// Workers read immutable snapshots (TLS contexts + policies + origins, and the ticket ring) published here;
/// nothing is shared mutably between threads except through `SnapshotBox`/`TicketKeyStore` and messengers.
public final class EdgeProxyServer: @unchecked Sendable {
    // SAFETY: all mutable state is used only on the control thread (the one that calls `run()`), except
    // `exitedWorkers`, which is a Mutex.
    private(set) var config: ProxyConfiguration
    private let configPath: String?
    private let overrides: ConfigOverrides
    let logger: Logger
    let registry: PrometheusCollectorRegistry
    private var snapshots: SnapshotBox<RuntimeSnapshot>!
    /// Pools and routes: resolver and health-check threads, snapshots the workers route and balance with.
    private(set) var upstreamRuntime: UpstreamRuntime!
    private(set) var workers: [Worker] = []
    /// Session-ticket keys (set up first thing in `run()`).
    private(set) var tickets: TicketKeyService!
    private(set) var accessLog: AccessLogSink?
    private(set) var loop: EventLoop!
    private var controlMessenger: LoopMessenger!
    private var admin: AdminServer?
    private var signalHandler: SignalHandler?
    private var ticker: Ticker?
    /// The renewal-intolerance detector (DetectorRuntime.swift); control thread.
    var detector: DetectorRuntime?
    private let exitedWorkers = Mutex<Int>(0)
    private(set) var draining = false
    /// Config → snapshot (and the state kept across reloads: session cache, policy directory history).
    private let snapshotBuilder: SnapshotBuilder
    /// OCSP stapling (`[[certificates]] ocsp`): its thread, metrics and `/certificates` (OCSPService.swift).
    private(set) lazy var ocsp = OCSPService(logger: logger)
    /// Latency histograms: declared here, recorded by the workers, merged on `GET /metrics`.
    let latency = LatencyMetrics()
    /// Client TLS contexts for `https://` origins, per pool (UpstreamTLS.swift).
    let upstreamTLS = UpstreamTLSRegistry()
    private let reloadFailures: Metrics.Counter
    private let reloads: Metrics.Counter
    /// The addresses actually bound (port 0 resolved), for logs and tests.
    public private(set) var boundAddress: SocketAddress?
    public private(set) var adminAddress: SocketAddress?
    /// Called on the control thread once the listeners are bound and the workers run (readiness notification).
    public var onReady: (() -> Void)?
    private(set) var upgrade: UpgradeCoordinator?
    private var inherited: InheritedListeners?

    public init(
        config: ProxyConfiguration,
        configPath: String?,
        overrides: ConfigOverrides,
        logger: Logger,
        registry: PrometheusCollectorRegistry
    ) {
        self.config = config
        self.configPath = configPath
        self.overrides = overrides
        self.logger = logger
        self.registry = registry
        snapshotBuilder = SnapshotBuilder(logger: logger)
        reloadFailures = Counter(label: "edgeproxy_reload_failures_total")
        reloads = Counter(label: "edgeproxy_reloads_total")
    }

    /// Builds everything, serves until SIGTERM/SIGINT, drains, and returns the exit status.
    public func run() throws -> Int32 {
        inherited = try InheritedListeners.fromEnvironment()
        upgrade = UpgradeCoordinator(logger: logger)
        Self.blockHandledSignals()
        loop = try EventLoop()
        controlMessenger = try LoopMessenger()
        try controlMessenger.attach(to: loop)

        // Whatever the ticket source: the hook serves the ring's key material through the admin API for every
        // source, so an operator must see the warning whenever it is on (issue 15, item 15).
        if TicketKeyMaterialTestHook.isEnabled {
            logger.warning(
                "\(TicketKeyMaterialTestHook.variable) is set: the admin API exposes ticket key material (tests only)"
            )
        }
        tickets = try TicketKeyService(config: config, logger: logger)
        let snapshot = try snapshotBuilder.build(
            config,
            stapler: ocsp.stapler,
            previousPolicies: nil,
            strictPolicies: true
        )
        snapshots = SnapshotBox(snapshot)
        ocsp.activate(snapshot.tls)
        defer { ocsp.stop() }
        upstreamTLS.install(try upstreamTLS.prepare(config.upstreamPools))
        warnUnverifiedOrigins(config)
        let tlsProbe = UpstreamTLSProbe(registry: upstreamTLS)
        upstreamRuntime = UpstreamRuntime(
            pools: config.upstreamPools,
            routes: config.routes,
            probe: { tlsProbe.check($0, $1, $2) },
            logger: Logger(label: "edgeproxy.upstreams")
        )
        upstreamRuntime.start()
        defer { upstreamRuntime.stop() }
        if snapshot.tls.isSelfSigned {
            logger.notice(
                "no certificate configured: generated a self-signed ECDSA P-256 certificate for localhost in memory"
            )
        }
        if config.upstreamPools.isEmpty {
            logger.notice("no upstream configured: serving the built-in page that describes each TLS connection")
        }
        switch config.accessLog {
        case .off: accessLog = nil
        case .stdout: accessLog = try AccessLogSink(path: "stdout", fields: config.accessLogFields)
        case .file(let p): accessLog = try AccessLogSink(path: p, fields: config.accessLogFields)
        }
        accessLog?.onReopen = { [logger] e in
            if let e { logger.error("SIGUSR1: \(e)") } else { logger.notice("SIGUSR1: access log reopened") }
        }
        accessLog?.start()

        guard let listen = ConfigMapping.listenAddress(config) else {
            throw SyscallErrorLike("cannot resolve listen address \(config.listen)")
        }
        var listenAddr = try inherited?.check(against: listen) ?? listen
        // After an upgrade, every inherited listener gets a worker (its queue must be served).
        let n = max(config.effectiveWorkers, inherited?.fds.count ?? 0)
        detector = DetectorRuntime(config: config.detector, logger: logger)
        // Other instances' flags: the sync thread wakes the control loop, which adopts them on its thread.
        try detector!.startFleet(config: config) { [weak self] in
            guard let self else { return }
            self.controlMessenger.send { [weak self] in self?.detector?.tick() }
        }
        defer { detector?.stopFleet() }
        for i in 0..<n {
            let w = try Worker(
                index: i,
                listenAddress: listenAddr,
                inheritedListenFd: i < (inherited?.fds.count ?? 0) ? inherited?.fds[i] : nil,
                snapshots: snapshots,
                upstreams: upstreamRuntime.box,
                ticketStore: tickets.store,
                accessLog: accessLog,
                latency: latency,
                detector: detector!,
                upstreamTLS: upstreamTLS,
                logger: logger,
                onExit: { [weak self] _ in self?.workerExited() }
            )
            if i == 0, listenAddr.port == 0, let bound = w.boundAddress {
                // Port 0: every worker must share the port the first one got.
                listenAddr = bound
            }
            workers.append(w)
        }
        boundAddress = listenAddr
        for w in workers { w.start() }

        signalHandler = try SignalHandler(loop: loop, signals: Self.handledSignals) { [unowned self] sig in
            self.onSignal(sig)
        }
        if let a = config.admin {
            guard let addr = SocketAddress.resolve(host: a.host.unbracketed, port: Int(a.port)).first else {
                throw SyscallErrorLike("cannot resolve admin address \(a)")
            }
            let server = try AdminServer(loop: loop, address: addr, config: config, logger: logger, handler: self)
            admin = server
            adminAddress = server.boundAddress
        }
        ticker = Ticker(server: self)
        loop.schedule(at: loop.now &+ 1_000_000_000, ticker!)
        logger.notice(
            "edgeproxy listening",
            metadata: [
                "address": "\(listenAddr)", "workers": "\(n)",
                "admin": "\(adminAddress.map { "\($0)" } ?? "off")",
                "certificates": "\(snapshot.tls.certificateSummary.joined(separator: "; "))",
                "upstreams": "\(config.upstreamPools.flatMap(\.servers).map(\.url.description).joined(separator: ","))",
            ]
        )
        inherited?.signalReady()
        onReady?()
        loop.run()
        for w in workers { w.join() }
        tickets.stop()
        snapshotBuilder.sessionCaches.stop()
        accessLog?.stop()
        logger.notice("edgeproxy stopped")
        return 0
    }

    /// `verify = false` turns off what TLS to an origin is for: said loudly at every load and reload.
    private func warnUnverifiedOrigins(_ config: ProxyConfiguration) {
        for name in UpstreamTLSRegistry.unverifiedPools(config.upstreamPools) {
            logger.warning(
                "upstreams.\(name).tls.verify = false: origin certificates are NOT verified (for tests only); anyone on the path can impersonate these origins"
            )
        }
    }

    /// Once a second on the control loop: expire session-cache entries, advance the ticket-key schedule.
    fileprivate func tick() {
        snapshotBuilder.sessionCaches.tick(now: monotonicNanos())
        detector?.tick()
        tickets.tick(now: Timestamp.wallClockNow())
    }

    // MARK: signals, reload, drain

    /// `closeIdle: false` (upgrade): idle keep-alive connections stay until their next response (sent with
    /// `Connection: close`), their idle timeout or the deadline, so no request crosses a close.
    func beginDrain(closeIdle: Bool = true) {
        guard !draining else { return }
        draining = true
        let deadline = snapshots.load().timeouts.drain
        logger.notice("draining: no new connections; in-flight requests have \(Double(deadline) / 1e9)s")
        admin?.close()
        for w in workers {
            w.messenger.send { [w] in w.beginDrain(deadlineNanos: deadline, closeIdle: closeIdle) }
        }
    }

    private func workerExited() {
        let all = exitedWorkers.withLock { n -> Bool in
            n += 1
            return n == workers.count
        }
        if all { controlMessenger.send { [unowned self] in self.loop.stop() } }
    }

    /// Re-reads the configuration (file + the same flags) and swaps in new TLS contexts, policies, origins,
    /// timeouts and limits. Any error keeps everything as it was. Returns a message for the admin API.
    func reload() -> (ok: Bool, message: String) {
        var newConfig = config
        if let path = configPath {
            do {
                newConfig = try ProxyConfiguration.load(path: path).applying(overrides)
            } catch {
                reloadFailures.increment()
                logger.error("reload rejected, configuration unchanged:\n\(error)")
                return (false, "\(error)")
            }
        }
        if let why = Self.restartOnlyChanges(from: config, to: newConfig) {
            reloadFailures.increment()
            logger.error("reload rejected, configuration unchanged: \(why)")
            return (false, why)
        }
        let previous = snapshots.load()
        do {
            let s = try snapshotBuilder.build(
                newConfig,
                stapler: ocsp.stapler,
                previousPolicies: previous.policies,
                strictPolicies: false
            )
            let tlsContexts = try upstreamTLS.prepare(newConfig.upstreamPools)
            snapshots.publish(s)
            ocsp.activate(s.tls)
            upstreamTLS.install(tlsContexts)
            warnUnverifiedOrigins(newConfig)
            upstreamRuntime.reload(pools: newConfig.upstreamPools, routes: newConfig.routes)
            config = newConfig
            detector?.update(config: newConfig.detector)
        } catch let e as PolicyReloadError {
            reloadFailures.increment()
            logger.error("policy reload rejected, previous policies stay in force:\n\(e.underlying)")
            return (false, "\(e.underlying)")
        } catch {
            reloadFailures.increment()
            logger.error("reload rejected, configuration unchanged: \(error)")
            return (false, "\(error)")
        }
        if let f = tickets.fileSource {
            do { _ = try f.reload() } catch {
                reloadFailures.increment()
                logger.error("ticket key files rejected, previous keys stay in force: \(error)")
                return (false, "\(error)")
            }
        }
        reloads.increment()
        // Wake workers so idle ones pick the new snapshot up now rather than at their next event.
        for w in workers { w.messenger.send {} }
        logger.notice("reload complete")
        return (true, "reloaded")
    }
}

private final class Ticker: ProxyEventLoop.TimerHandler {
    var timerSlot = TimerSlot()
    unowned let server: EdgeProxyServer
    init(server: EdgeProxyServer) { self.server = server }
    func timerFired(now: UInt64) {
        server.tick()
        server.scheduleTick(self, now: now)
    }
}

extension EdgeProxyServer {
    fileprivate func scheduleTick(_ t: ProxyEventLoop.TimerHandler, now: UInt64) {
        loop.schedule(at: now &+ 1_000_000_000, t)
    }
}
