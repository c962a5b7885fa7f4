import Metrics
import ProxyConfig
import ProxyCore
import ProxyTLS
import ProxyTicketStore

/// Owns the process-wide session cache across reloads (a reload with the same `[sessions]` keeps every entry; a
/// changed size/timeout/mode starts a new cache and the old one wipes its entries when the last context set using
/// it goes away) and publishes its counters. Control thread only.
final class SessionCacheHolder {
    private(set) var cache: SessionCache?
    private var store: RedisSessionStore?
    private var current: Key?
    private struct Key: Equatable {
        var sessions: ProxyConfiguration.Sessions
        var timeout: ConfigDuration
        var redis: ProxyConfiguration.Redis?
    }
    private var last = SessionCache.Statistics()
    private let entries = Gauge(label: "edgeproxy_session_cache_entries")
    private let reserved = Gauge(label: "edgeproxy_session_cache_reserved_bytes")
    private let hits = Counter(label: "edgeproxy_session_cache_hits_total")
    private let misses = Counter(label: "edgeproxy_session_cache_misses_total")
    private let stores = Counter(label: "edgeproxy_session_cache_stores_total")
    private let evictions = Counter(label: "edgeproxy_session_cache_evictions_total")
    private let expirations = Counter(label: "edgeproxy_session_cache_expirations_total")
    private let tooLarge = Counter(label: "edgeproxy_session_cache_too_large_total")
    private let storeUp = Gauge(label: "edgeproxy_session_store_up")
    private let storeTimeouts = Counter(label: "edgeproxy_session_store_fetch_timeouts_total")
    private let storeErrors = Counter(label: "edgeproxy_session_store_errors_total")
    private var lastTimedOut = 0
    private var lastErrors = 0

    /// The cache for `c.sessions` (the current one when nothing it depends on changed; nil when `cache = "off"`).
    /// With `cache = "redis"` the local cache keeps entries at most ``localTTLInFrontOfRedis`` and a
    /// `RedisSessionStore` thread (its own connection to `[redis] url`) holds them for the fleet.
    func cache(for c: ProxyConfiguration) throws -> SessionCache? {
        let key = Key(
            sessions: c.sessions,
            timeout: c.effectiveSessionTimeout,
            redis: c.sessions.cache == .redis ? c.redis : nil
        )
        if key == current { return cache }
        let ttl = UInt64(c.effectiveSessionTimeout.milliseconds) * 1_000_000
        var newStore: RedisSessionStore? = nil
        let newCache: SessionCache?
        switch c.sessions.cache {
        case .off:
            newCache = nil
        case .local:
            newCache = SessionCache(capacity: c.sessions.size, ttlNanoseconds: ttl)
        case .redis:
            guard let r = c.redis, let url = r.url else {
                throw SyscallErrorLike("sessions.cache = redis needs a valid [redis] section")
            }
            let wrapper = try ConfigMapping.ticketKeyWrapper(r)
            let store = RedisSessionStore(
                endpoint: ConfigMapping.endpoint(url),
                connectTimeoutNanoseconds: r.connectTimeout.milliseconds * 1_000_000,
                commandTimeoutNanoseconds: r.commandTimeout.milliseconds * 1_000_000
            )
            let fleet = FleetSessions(
                store: store,
                wrapper: wrapper,
                keyPrefix: r.keyPrefix + "session:",
                ttlMilliseconds: Int(c.effectiveSessionTimeout.milliseconds)
            )
            newCache = SessionCache(
                capacity: c.sessions.size,
                ttlNanoseconds: min(ttl, Self.localTTLInFrontOfRedis),
                fleet: fleet
            )
            newStore = store
        }
        // Only now that nothing can fail: retire the old store's thread (its cache may still serve connections of the
        // previous snapshot; a stopped store answers every fetch with a miss at once).
        store?.stop()
        store = newStore
        store?.start()
        current = key
        cache = newCache
        last = SessionCache.Statistics()
        lastTimedOut = 0
        lastErrors = 0
        reserved.record(cache?.reservedBytes ?? 0)
        return cache
    }

    /// How long the local cache keeps a session in front of Redis.
    static let localTTLInFrontOfRedis: UInt64 = 30 * 1_000_000_000

    /// Stops the Redis store's thread (shutdown).
    func stop() {
        store?.stop()
        store = nil
    }

    /// Once a second: wipe expired entries, publish the counters' increase since the last call.
    func tick(now: UInt64) {
        guard let cache else { return }
        cache.sweep(now: now)
        let s = cache.statistics
        entries.record(s.entries)
        hits.increment(by: max(0, s.hits - last.hits))
        misses.increment(by: max(0, s.misses - last.misses))
        stores.increment(by: max(0, s.stores - last.stores))
        evictions.increment(by: max(0, s.evictions - last.evictions))
        expirations.increment(by: max(0, s.expirations - last.expirations))
        tooLarge.increment(by: max(0, s.tooLarge - last.tooLarge))
        last = s
        if let store {
            storeUp.record(store.isUp ? 1 : 0)
            storeTimeouts.increment(by: max(0, store.timedOut - lastTimedOut))
            storeErrors.increment(by: max(0, store.errors - lastErrors))
            lastTimedOut = store.timedOut
            lastErrors = store.errors
        }
    }
}
