import Glibc
import Logging
import Metrics
import ProxyConfig
import ProxyCore
import ProxyTicketStore
import ProxyTickets

/// The session-ticket keys of the process: the configured source (in-memory schedule, key files, or fleet keys
/// synchronised through Redis), its once-a-second tick, its metrics and its admin views (`/keys`, rotation).
/// Workers only read `store`. Control thread only (the Redis sync runs its own thread).
final class TicketKeyService {
    private let config: ProxyConfiguration
    private let logger: Logger
    /// What the workers read; nil when tickets are off.
    private(set) var store: TicketKeyStore?
    private var memorySource: MemoryKeySource?
    private(set) var fileSource: FileKeySource?
    private var fleetSource: FleetKeySource?
    private var redisSync: RedisKeySync?
    private var localKeysReported = 0
    private let keyAge = Gauge(label: "edgeproxy_ticket_key_age_seconds")
    private let storeUp = Gauge(label: "edgeproxy_ticket_store_up")
    private let storeRejected = Counter(label: "edgeproxy_ticket_store_rejected_entries_total")
    private let localKeys = Counter(label: "edgeproxy_ticket_local_fallback_keys_total")

    /// Sets up the configured source (for Redis: one synchronous sync, then the sync thread).
    init(config: ProxyConfiguration, logger: Logger) throws {
        self.config = config
        self.logger = logger
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
            store = src.store
            logger.info(
                "session tickets: in-memory keys, rotation \(config.tickets.rotation), lifetime \(config.tickets.lifetime)"
            )
        case .files:
            let src = try FileKeySource(paths: config.tickets.files)
            fileSource = src
            store = src.store
            logger.info("session tickets: \(config.tickets.files.count) key file(s), first encrypts")
        case .redis:
            try setUpRedisTickets(now: now)
            return
        }
        storeUp.record(1)
    }

    /// `tickets.source = "redis"`: one synchronous sync at start (bounded by the timeouts, before any worker
    /// exists), then the sync thread. Unreachable at start: local keys, or refuse when `redis.required`.
    private func setUpRedisTickets(now: Timestamp) throws {
        guard let r = config.redis, let url = r.url, let plan = config.fleetPlan(r) else {
            throw SyscallErrorLike("tickets.source = redis needs a valid [redis] section")
        }
        let wrapper = try ConfigMapping.ticketKeyWrapper(r)
        let settings = RedisKeySync.Settings(
            primary: ConfigMapping.endpoint(url),
            replica: r.replica.map(ConfigMapping.endpoint),
            connectTimeoutNanoseconds: r.connectTimeout.milliseconds * 1_000_000,
            commandTimeoutNanoseconds: r.commandTimeout.milliseconds * 1_000_000
        )
        let logger = self.logger
        let rejected = storeRejected
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
        store = src.store
        redisSync = sync
        storeUp.record(sync.isUp == true ? 1 : 0)
        sync.start(source: src)
        logger.info(
            "session tickets: fleet keys from redis, rotation \(config.tickets.rotation), lifetime \(config.tickets.lifetime)",
            metadata: [
                "redis": "\(url)", "replica": "\(r.replica.map { "\($0)" } ?? "none")",
                "wrapping_key_id": "\(r.wrappingKeyID)", "lookahead": "\(plan.lookahead)",
            ]
        )
    }

    /// Once a second on the control loop: advance the key schedule, watch key files.
    func tick(now: Timestamp) {
        do {
            if let m = memorySource { try m.tick(now: now) }
            if let f = fileSource, try f.tick(now: now) { logger.notice("ticket key files changed: reloaded") }
            if let f = fleetSource {
                try f.tick(now: now)
                let made = f.localKeysMade
                if made > localKeysReported {
                    localKeys.increment(by: made - localKeysReported)
                    logger.warning(
                        "no shared ticket key for this period: encrypting with a local key (only this instance resumes it)"
                    )
                    localKeysReported = made
                }
            }
            if let s = redisSync { storeUp.record(s.isUp == true ? 1 : 0) }
        } catch {
            logger.error("ticket keys: \(error) (keeping the previous keys)")
        }
        if let ring = store?.current() {
            // Key files have no start time (distantPast, Int64.min): their age is 0, and the difference must not be
            // computed at all (it overflows and traps; found when the release build of this split crashed 1 s after
            // a files-source start, where the old inlined copy had the subtraction optimised away).
            let from = ring.encryptionKey(at: now).encryptFrom
            keyAge.record(
                from == .distantPast ? 0 : Double(now.nanosecondsSinceEpoch &- from.nanosecondsSinceEpoch) / 1e9
            )
        }
    }

    /// Stops the Redis sync thread (if any).
    func stop() { redisSync?.stop() }

    // MARK: admin

    /// `GET /keys`. `tickets`: the running configuration's `[tickets]` (what a reload last applied).
    func keysJSON(tickets: ProxyConfiguration.Tickets) -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.field("source", tickets.enabled ? tickets.source.rawValue : "off")
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
        if let ring = store?.current() {
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
        guard TicketKeyMaterialTestHook.isEnabled, let ring = store?.current() else { return nil }
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

    /// Rotates the in-memory keys now (admin request). On success the caller wakes the workers.
    func rotate() -> (ok: Bool, message: String) {
        if redisSync != nil {
            return (false, "tickets.source = redis rotates fleet-wide: use `edgeproxy keys rotate --config FILE`")
        }
        guard let m = memorySource else { return (false, "rotation is only available with tickets.source = memory") }
        do {
            let k = try m.rotateNow(now: Timestamp.wallClockNow())
            logger.notice("ticket keys rotated by admin request; new encryption key \(k.nameHex)")
            return (true, "rotated")
        } catch {
            return (false, "\(error)")
        }
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
