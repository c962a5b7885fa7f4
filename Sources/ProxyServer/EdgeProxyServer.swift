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
    private var config: ProxyConfiguration
    private let configPath: String?
    private let overrides: ConfigOverrides
    private let logger: Logger
    private let registry: PrometheusCollectorRegistry
    private var snapshots: SnapshotBox<RuntimeSnapshot>!
    /// Pools and routes: resolver and health-check threads, snapshots the workers route and balance with.
    private var upstreamRuntime: UpstreamRuntime!
    private var workers: [Worker] = []
    private var ticketStore: TicketKeyStore?
    private var memorySource: MemoryKeySource?
    private var fileSource: FileKeySource?
    private var fleetSource: FleetKeySource?
    private var redisSync: RedisKeySync?
    private var localKeysReported = 0
    private var accessLog: AccessLogSink?
    private var loop: EventLoop!
    private var controlMessenger: LoopMessenger!
    private var admin: AdminServer?
    private var signalHandler: SignalHandler?
    private var ticker: Ticker?
    /// The renewal-intolerance detector (DetectorRuntime.swift); control thread.
    var detector: DetectorRuntime?
    private let exitedWorkers = Mutex<Int>(0)
    private var draining = false
    private var policyGeneration: UInt64 = 0
    /// The session cache (`[sessions]`), kept across reloads.
    private let sessionCaches = SessionCacheHolder()
    /// OCSP stapling (`[[certificates]] ocsp`): its thread, metrics and `/certificates` (OCSPService.swift).
    private(set) lazy var ocsp = OCSPService(logger: logger)
    /// Policies were loaded from an existing directory at least once (a later missing directory is an error).
    private var policyDirWasLoaded = false
    private let reloadFailures: Metrics.Counter
    private let reloads: Metrics.Counter
    private let keyAge: Metrics.Gauge
    private let ticketStoreUp: Metrics.Gauge
    private let ticketStoreRejected: Metrics.Counter
    private let ticketLocalKeys: Metrics.Counter
    /// The addresses actually bound (port 0 resolved), for logs and tests.
    public private(set) var boundAddress: SocketAddress?
    public private(set) var adminAddress: SocketAddress?
    /// Called on the control thread once the listeners are bound and the workers run (readiness notification).
    public var onReady: (() -> Void)?
    private var upgrade: UpgradeCoordinator?
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
        reloadFailures = Counter(label: "edgeproxy_reload_failures_total")
        reloads = Counter(label: "edgeproxy_reloads_total")
        keyAge = Gauge(label: "edgeproxy_ticket_key_age_seconds")
        ticketStoreUp = Gauge(label: "edgeproxy_ticket_store_up")
        ticketStoreRejected = Counter(label: "edgeproxy_ticket_store_rejected_entries_total")
        ticketLocalKeys = Counter(label: "edgeproxy_ticket_local_fallback_keys_total")
    }

    /// Builds everything, serves until SIGTERM/SIGINT, drains, and returns the exit status.
    public func run() throws -> Int32 {
        // Signals are handled through signalfd on the control loop; block them in every thread (workers inherit
        // the mask), and never die from a peer closing a socket.
        signal(SIGPIPE, SIG_IGN)
        let sigs: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2]
        inherited = try InheritedListeners.fromEnvironment()
        upgrade = UpgradeCoordinator(logger: logger)
        _ = sigs.withUnsafeBufferPointer { cps_sigmask_block($0.baseAddress, Int32($0.count)) }
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
        try setUpTickets()
        let snapshot = try buildSnapshot(config, previousPolicies: nil, strictPolicies: true)
        snapshots = SnapshotBox(snapshot)
        ocsp.activate(snapshot.tls)
        defer { ocsp.stop() }
        upstreamRuntime = UpstreamRuntime(
            pools: config.upstreamPools,
            routes: config.routes,
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

        guard let listen = resolveListen(config) else {
            throw SyscallErrorLike("cannot resolve listen address \(config.listen)")
        }
        var listenAddr = try inherited?.check(against: listen) ?? listen
        // After an upgrade, every inherited listener gets a worker (its queue must be served).
        let n = max(config.effectiveWorkers, inherited?.fds.count ?? 0)
        detector = DetectorRuntime(config: config.detector, logger: logger)
        for i in 0..<n {
            let w = try Worker(
                index: i,
                listenAddress: listenAddr,
                inheritedListenFd: i < (inherited?.fds.count ?? 0) ? inherited?.fds[i] : nil,
                snapshots: snapshots,
                upstreams: upstreamRuntime.box,
                ticketStore: ticketStore,
                accessLog: accessLog,
                detector: detector!,
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

        signalHandler = try SignalHandler(loop: loop, signals: sigs) { [unowned self] sig in self.onSignal(sig) }
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
        redisSync?.stop()
        sessionCaches.stop()
        accessLog?.stop()
        logger.notice("edgeproxy stopped")
        return 0
    }

    // MARK: snapshots

    private func resolveListen(_ c: ProxyConfiguration) -> SocketAddress? {
        SocketAddress.resolve(host: c.listen.host.unbracketed, port: Int(c.listen.port)).first
    }

    /// Builds a runtime snapshot from a configuration. With `strictPolicies` a policy error fails the build;
    /// on reload a policy error keeps `previousPolicies` (the caller reports it).
    func buildSnapshot(
        _ c: ProxyConfiguration,
        previousPolicies: CompiledPolicySet?,
        strictPolicies: Bool
    ) throws
        -> RuntimeSnapshot
    {
        var tls = TLSSettings()
        tls.certificates = c.certificates.map {
            .init(chainPath: $0.cert, keyPath: $0.key, ocsp: OCSPService.source($0.ocsp))
        }
        tls.stapler = ocsp.stapler
        tls.minVersion = Self.openSSLVersion(c.tls.minVersion)
        tls.maxVersion = Self.openSSLVersion(c.tls.maxVersion)
        tls.ciphers = c.tls.ciphers
        tls.ciphersuites = c.tls.ciphersuites
        tls.groups = c.tls.groups
        tls.alpn = c.tls.alpn
        tls.alpnStrict = c.tls.alpnStrict
        tls.ticketsEnabled = c.tickets.enabled
        tls.ticketLifetimeSeconds = Int(c.tickets.lifetime.milliseconds / 1000)
        tls.tls13TicketCount = c.tickets.tls13Count
        tls.defaultStaleAction = c.tickets.staleAction
        tls.sessionCache = try sessionCaches.cache(for: c)
        let contexts = try TLSContextSet(settings: tls)

        var policies: CompiledPolicySet? = previousPolicies
        if c.policies.enabled {
            do {
                policies = try loadPolicies(dir: c.policies.dir, missingIsError: !strictPolicies && policyDirWasLoaded)
            } catch {
                if strictPolicies { throw error }
                throw PolicyReloadError(underlying: error, kept: previousPolicies)
            }
        } else {
            policies = nil
        }
        var origins: [RuntimeSnapshot.Origin] = []
        for u in c.upstreams {
            let addrs = SocketAddress.resolve(host: u.host.unbracketed, port: Int(u.port))
            if addrs.isEmpty { logger.warning("upstream \(u) does not resolve (it will be skipped)") }
            origins.append(.init(display: u.description, hostHeader: u.hostHeader, addresses: addrs))
        }
        var t = RuntimeSnapshot.Timeouts()
        t.handshake = Self.nanos(c.timeouts.handshake)
        t.headerRead = Self.nanos(c.timeouts.headerRead)
        t.idle = Self.nanos(c.timeouts.idle)
        t.upstreamConnect = Self.nanos(c.timeouts.upstreamConnect)
        t.upstreamRead = Self.nanos(c.timeouts.upstreamRead)
        t.upstreamSend = Self.nanos(c.timeouts.upstreamSend)
        t.drain = Self.nanos(c.timeouts.drain)
        var limits = HTTP1Limits()
        limits.maxRequestLineBytes = c.limits.maxRequestLine
        limits.maxHeaderBytes = c.limits.maxHeaderBytes
        limits.maxHeaderCount = c.limits.maxHeaders
        let fh = c.policies.headers
        return RuntimeSnapshot(
            tls: contexts,
            policies: policies,
            origins: origins,
            timeouts: t,
            limits: limits,
            fingerprintHeaders: fh,
            maxConnectionsPerWorker: c.limits.maxConnectionsPerWorker,
            http2: HTTP2Options(c.http2, limits: c.limits),
            proxyProtocolFrom: c.listenProxyProtocol ? c.proxyProtocolFrom.compactMap(CIDRBlock.init) : nil
        )
    }

    /// Loads the policy directory. A missing directory is tolerated at start (a warning; no policies), but on a
    /// reload after policies were loaded from it, it is an error: a moved or unmounted directory must not silently
    /// switch the running packs off.
    private func loadPolicies(dir: String, missingIsError: Bool) throws -> CompiledPolicySet {
        policyGeneration += 1
        var isDir = false
        if !directoryExists(dir, isDir: &isDir) {
            if missingIsError {
                throw SyscallErrorLike("\(dir): policy directory not found (the previous policies stay in force)")
            }
            logger.warning("policy directory \(dir) does not exist: no policies loaded")
            return CompiledPolicySet(generation: policyGeneration, policies: [])
        }
        let result = try PolicyLoader.load(directory: dir, generation: policyGeneration)
        for d in result.warnings { logger.warning("\(d)") }
        policyDirWasLoaded = true
        logger.info(
            "loaded \(result.set.policies.count) polic\(result.set.policies.count == 1 ? "y" : "ies") from \(dir)"
        )
        return result.set
    }

    private func directoryExists(_ path: String, isDir: inout Bool) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        isDir = (st.st_mode & S_IFMT) == S_IFDIR
        return isDir
    }

    static func openSSLVersion(_ v: TLSVersion) -> Int32 {
        switch v {
        case .v1_0: return 0x0301
        case .v1_1: return 0x0302
        case .v1_2: return 0x0303
        case .v1_3: return 0x0304
        }
    }

    static func nanos(_ d: ConfigDuration) -> UInt64 { UInt64(max(0, d.milliseconds)) * 1_000_000 }

    // MARK: tickets

    private func setUpTickets() throws {
        guard config.tickets.enabled else { return }
        let now = Timestamp.wallClockNow()
        switch config.tickets.source {
        case .memory:
            let schedule = try TicketKeySchedule(
                rotationNanoseconds: config.tickets.rotation.milliseconds * 1_000_000,
                lifetimeNanoseconds: config.tickets.lifetime.milliseconds * 1_000_000
            )
            let src = try MemoryKeySource(schedule: schedule, now: now)
            memorySource = src
            ticketStore = src.store
            logger.info(
                "session tickets: in-memory keys, rotation \(config.tickets.rotation), lifetime \(config.tickets.lifetime)"
            )
        case .files:
            let src = try FileKeySource(paths: config.tickets.files)
            fileSource = src
            ticketStore = src.store
            logger.info("session tickets: \(config.tickets.files.count) key file(s), first encrypts")
        case .redis:
            try setUpRedisTickets(now: now)
            return
        }
        ticketStoreUp.record(1)
    }

    /// `tickets.source = "redis"`: one synchronous sync at start (bounded by the timeouts, before any worker
    /// exists), then the sync thread. Unreachable at start: local keys, or refuse when `redis.required`.
    private func setUpRedisTickets(now: Timestamp) throws {
        guard let r = config.redis, let url = r.url, let plan = config.fleetPlan(r) else {
            throw SyscallErrorLike("tickets.source = redis needs a valid [redis] section")
        }
        let wrapper = try Self.ticketKeyWrapper(r)
        let settings = RedisKeySync.Settings(
            primary: Self.endpoint(url),
            replica: r.replica.map(Self.endpoint),
            connectTimeoutNanoseconds: r.connectTimeout.milliseconds * 1_000_000,
            commandTimeoutNanoseconds: r.commandTimeout.milliseconds * 1_000_000
        )
        let logger = self.logger
        let rejected = ticketStoreRejected
        let sync = RedisKeySync(plan: plan, wrapper: wrapper, settings: settings) { event in
            switch event {
            case .up: logger.notice("ticket key store reachable", metadata: ["redis": "\(url)"])
            case .down(let why):
                logger.warning(
                    "ticket key store unreachable: serving with cached keys, retrying with backoff",
                    metadata: ["redis": "\(url)", "error": "\(why)"]
                )
            case .replicaDown(let why):
                logger.warning(
                    "ticket key store replica unreachable: reading from the primary",
                    metadata: ["error": "\(why)"]
                )
            case .replicaUp: logger.notice("ticket key store replica reachable")
            case .rejected(let slot, let reason):
                rejected.increment()
                logger.warning("ticket key store entry rejected", metadata: ["key": "\(slot)", "reason": "\(reason)"])
            case .created(let epoch, let name):
                logger.info("ticket key created", metadata: ["epoch": "\(epoch)", "name": "\(name)"])
            case .restored(let epoch, let name):
                logger.notice(
                    "ticket key store had lost a key: wrote the cached one back",
                    metadata: ["epoch": "\(epoch)", "name": "\(name)"]
                )
            case .replaced(let epochs):
                logger.notice("ticket key store holds different keys: adopted them", metadata: ["epochs": "\(epochs)"])
            }
        }
        var initial: [Int64: TicketKey] = [:]
        var imported: [(key: TicketKey, notAfter: Timestamp)] = []
        do {
            let snap = try sync.cycle(held: [:], now: now)
            initial = snap.shared
            imported = snap.imported
        } catch {
            if r.required {
                throw SyscallErrorLike(
                    "redis.required = true and the ticket key store \(url) is unreachable: \(error); refusing to start"
                )
            }
            logger.warning("ticket key store unreachable at start: serving with local keys until it answers")
        }
        let src = try FleetKeySource(plan: plan, now: now, initialShared: initial)
        if !imported.isEmpty { try src.adopt(shared: [:], imported: imported, now: now) }
        fleetSource = src
        ticketStore = src.store
        redisSync = sync
        ticketStoreUp.record(sync.isUp == true ? 1 : 0)
        sync.start(source: src)
        logger.info(
            "session tickets: fleet keys from redis, rotation \(config.tickets.rotation), lifetime \(config.tickets.lifetime)",
            metadata: [
                "redis": "\(url)", "replica": "\(r.replica.map { "\($0)" } ?? "none")",
                "wrapping_key_id": "\(r.wrappingKeyID)", "lookahead": "\(plan.lookahead)",
            ]
        )
    }

    /// The wrapping keys named by `[redis]` (current + previous), loaded from their files or environment variables.
    public static func ticketKeyWrapper(_ r: ProxyConfiguration.Redis) throws -> TicketKeyWrapper {
        func load(id: String, file: String?, env: String?) throws -> WrappingKey {
            if let file { return try WrappingKey.load(id: id, file: file) }
            return try WrappingKey.load(id: id, env: env ?? "")
        }
        let current = try load(id: r.wrappingKeyID, file: r.wrappingKeyFile, env: r.wrappingKeyEnv)
        let previous = try r.previousWrappingKeys.map { try load(id: $0.id, file: $0.file, env: $0.env) }
        return TicketKeyWrapper(current: current, previous: previous)
    }

    /// A `RedisURL` from the configuration as a hiredis endpoint.
    public static func endpoint(_ u: RedisURL) -> RedisEndpoint {
        RedisEndpoint(
            host: u.host.unbracketed,
            port: Int(u.port),
            username: u.username,
            password: u.password,
            database: u.database
        )
    }

    /// Once a second on the control loop: advance the key schedule, watch key files.
    fileprivate func tick() {
        let now = Timestamp.wallClockNow()
        sessionCaches.tick(now: monotonicNanos())
        detector?.tick()
        do {
            if let m = memorySource { try m.tick(now: now) }
            if let f = fileSource, try f.tick(now: now) { logger.notice("ticket key files changed: reloaded") }
            if let f = fleetSource {
                try f.tick(now: now)
                let made = f.localKeysMade
                if made > localKeysReported {
                    ticketLocalKeys.increment(by: made - localKeysReported)
                    logger.warning(
                        "no shared ticket key for this period: encrypting with a local key (only this instance resumes it)"
                    )
                    localKeysReported = made
                }
            }
            if let s = redisSync { ticketStoreUp.record(s.isUp == true ? 1 : 0) }
        } catch {
            logger.error("ticket keys: \(error) (keeping the previous keys)")
        }
        if let ring = ticketStore?.current() {
            // Key files and fleet imports have no start time (distantPast): their age is reported as 0. Compute the
            // difference only for a real start time (now minus distantPast overflowed: a crash a second after start
            // in key-file mode, seen under load in the nginx interop tests).
            let from = ring.encryptionKey(at: now).encryptFrom
            let age =
                from == .distantPast
                ? 0 : Double(now.nanosecondsSinceEpoch &- from.nanosecondsSinceEpoch) / 1e9
            keyAge.record(age)
        }
    }

    // MARK: signals, reload, drain

    private func onSignal(_ sig: Int32) {
        switch sig {
        case SIGHUP:
            logger.notice("SIGHUP: reloading")
            _ = reload()
        case SIGUSR1:
            accessLog?.reopen()
        case SIGUSR2:
            upgrade?.start(listenFds: workers.map(\.listeningFd), draining: draining, loop: loop) { [unowned self] in
                self.beginDrain(closeIdle: false)
            }
        default:
            beginDrain()
        }
    }

    /// `closeIdle: false` (upgrade): idle keep-alive connections stay until their next response (sent with
    /// `Connection: close`), their idle timeout or the deadline, so no request crosses a close.
    private func beginDrain(closeIdle: Bool = true) {
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
            let s = try buildSnapshot(newConfig, previousPolicies: previous.policies, strictPolicies: false)
            snapshots.publish(s)
            ocsp.activate(s.tls)
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
        if let f = fileSource {
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

    // MARK: admin

    /// `GET /upstreams`: every pool, server and address with its state (ProxyUpstreams.UpstreamsReport).
    func upstreamsJSON() -> [UInt8] { Array(upstreamRuntime.reportJSON().utf8) }

    func keysJSON() -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.field("source", config.tickets.enabled ? config.tickets.source.rawValue : "off")
        let now = Timestamp.wallClockNow()
        let origins = fleetSource?.origins() ?? [:]
        if let sync = redisSync, let f = fleetSource {
            w.beginObject("store")
            w.field("up", sync.isUp == true)
            w.field("primary", "\(sync.settings.primary)")
            w.field("replica", sync.settings.replica.map { "\($0)" })
            w.field("epoch", Int(f.plan.epoch(at: now)))
            w.field("lookahead", Int(f.plan.lookahead))
            w.field("rejected_entries", sync.rejectedEntries)
            w.field("created_keys", sync.createdKeys)
            w.field("local_keys", f.localKeysMade)
            w.field("cycles", sync.completedCycles)
            w.endObject()
        }
        w.beginArray("keys")
        if let ring = ticketStore?.current() {
            for k in ring.info(at: now) {
                w.beginObject()
                w.field("name", k.nameHex)
                if let o = origins[k.nameHex] { w.field("origin", o.rawValue) }
                w.field("state", k.state.rawValue)
                w.field("cipher", k.cipher.rawValue)
                w.field("encrypt_from", Self.time(k.encryptFrom))
                w.field("encrypt_until", Self.time(k.encryptUntil))
                w.field("decrypt_until", Self.time(k.decryptUntil))
                w.field("encrypting", k.isEncryptionKey)
                w.endObject()
            }
        }
        w.endArray()
        w.endObject()
        return w.bytes + [10]
    }

    /// Test hook (``TicketKeyMaterialTestHook``): the secrets of every key in the ring; nil when the hook is off.
    func keyMaterialJSON() -> [UInt8]? {
        guard TicketKeyMaterialTestHook.isEnabled, let ring = ticketStore?.current() else { return nil }
        var w = JSONWriter()
        w.beginObject()
        w.beginArray("keys")
        for k in ring.keys {
            guard let m = TicketKeyMaterialTestHook.material(of: k) else { continue }
            w.beginObject()
            w.field("name", m.name)
            w.field("aes", m.aes)
            w.field("hmac", m.hmac)
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return w.bytes + [10]
    }

    func rotateKeys() -> (ok: Bool, message: String) {
        if redisSync != nil {
            return (false, "tickets.source = redis rotates fleet-wide: use `edgeproxy keys rotate --config FILE`")
        }
        guard let m = memorySource else { return (false, "rotation is only available with tickets.source = memory") }
        do {
            let k = try m.rotateNow(now: Timestamp.wallClockNow())
            logger.notice("ticket keys rotated by admin request; new encryption key \(k.nameHex)")
            for w in workers { w.messenger.send {} }
            return (true, "rotated")
        } catch {
            return (false, "\(error)")
        }
    }

    func metricsText() -> [UInt8] {
        var buf: [UInt8] = []
        registry.emit(into: &buf)
        return buf
    }

    private static func time(_ t: Timestamp) -> String? {
        if t == .distantPast || t == .distantFuture { return nil }
        var secs = time_t(t.secondsSinceEpoch)
        var tmv = tm()
        gmtime_r(&secs, &tmv)
        var buf = [CChar](repeating: 0, count: 32)
        strftime(&buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tmv)
        return buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}

struct PolicyReloadError: Error {
    let underlying: Error
    let kept: CompiledPolicySet?
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

/// SIGTERM/SIGINT/SIGHUP through a signalfd on the control loop.
final class SignalHandler: EventHandler {
    private let fd: Int32
    private let onSignal: (Int32) -> Void

    init(loop: EventLoop, signals: [Int32], onSignal: @escaping (Int32) -> Void) throws {
        fd = signals.withUnsafeBufferPointer { cps_signalfd($0.baseAddress, Int32($0.count)) }
        guard fd >= 0 else { throw SyscallError("signalfd", errno) }
        self.onSignal = onSignal
        try loop.register(fd: fd, interest: EventLoop.readable, handler: self)
    }

    func handleEvent(_ events: UInt32) {
        while true {
            let s = cps_signalfd_read_signo(fd)
            if s < 0 { return }
            onSignal(s)
        }
    }
}
