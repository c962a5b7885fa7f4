internal import COpenSSL
import CProxyShims
import ProxyCore
import ProxyTickets

// OpenSSL's external session cache (SSL_CTX_sess_set_new_cb/get_cb/remove_cb) wired to the process-wide
// `SessionCache`. The internal cache stays off (`SSL_SESS_CACHE_NO_INTERNAL`): it lives in one SSL_CTX behind that
// context's lock, and a reload replaces the contexts; the external cache is shared by every worker and outlives
// reloads, so a client whose next connection lands on another worker (SO_REUSEPORT) or after a reload resumes.
//
// Session IDs only exist where tickets do not: OpenSSL sends an empty session ID when it will issue a ticket, so
// the cache holds exactly the clients without ticket support (SChannel on Windows 7/8) or with tickets turned off by
// a policy. The session-ID context is the one `TLSContextSet.makeContext` sets (nginx's), checked by OpenSSL after
// the lookup, the same check tickets pass.

extension TLSContextSet {
    /// Switches `ctx` to the external cache when `settings.sessionCache` is set, else turns caching off.
    static func installSessionCache(_ ctx: OpaquePointer, settings: TLSSettings) {
        guard let cache = settings.sessionCache else {
            _ = cps_SSL_CTX_set_session_cache_mode(ctx, Int(SSL_SESS_CACHE_OFF))
            return
        }
        // NO_AUTO_CLEAR: the auto flush every 255 handshakes walks the (empty) internal cache under the context's
        // write lock; the cache expires its own entries.
        let mode =
            SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL_LOOKUP | SSL_SESS_CACHE_NO_INTERNAL_STORE
            | SSL_SESS_CACHE_NO_AUTO_CLEAR
        _ = cps_SSL_CTX_set_session_cache_mode(ctx, Int(mode))
        // SAFETY: unretained — `settings` (held by the TLSContextSet that frees this SSL_CTX in deinit) keeps the
        // cache alive for as long as the context can call back; connections keep their context set alive.
        SSL_CTX_set_ex_data(ctx, 0, Unmanaged.passUnretained(cache).toOpaque())
        SSL_CTX_sess_set_new_cb(ctx, newSessionCallback)
        SSL_CTX_sess_set_get_cb(ctx, getSessionCallback)
        SSL_CTX_sess_set_remove_cb(ctx, removeSessionCallback)
    }
}

/// After a full handshake: serializes the session into the cache (returns 0: OpenSSL keeps its reference).
private let newSessionCallback: @convention(c) (OpaquePointer?, OpaquePointer?) -> Int32 = { ssl, session in
    guard let ssl, let session, let state = connectionState(ssl), state.sessionCacheEnabled,
        let cache = state.contextSet.settings.sessionCache
    else { return 0 }
    // TLS 1.3 calls this for every stateless ticket too (with a dummy ID nobody will look up): nothing to keep.
    if SSL_version(ssl) == TLS1_3_VERSION && (SSL_get_options(ssl) & cps_SSL_OP_NO_TICKET()) == 0 { return 0 }
    state.storeSession(session, in: cache)
    return 0
}

/// A ClientHello with a session ID (and no usable ticket): the cached session, decoded, or nil for a full handshake.
private let getSessionCallback:
    @convention(c) (OpaquePointer?, UnsafePointer<UInt8>?, Int32, UnsafeMutablePointer<Int32>?) -> OpaquePointer? = {
        ssl,
        id,
        idLength,
        copy in
        copy?.pointee = 0
        guard let ssl, let id, idLength > 0, let state = connectionState(ssl), state.sessionCacheEnabled,
            let cache = state.contextSet.settings.sessionCache,
            let (session, kept) = state.fetchSession(
                UnsafeRawBufferPointer(start: id, count: Int(idLength)),
                from: cache
            )
        else { return nil }
        // 1: the worker's table keeps its reference and OpenSSL takes one of its own; 0: the session was decoded for
        // this connection alone and its only reference passes to OpenSSL.
        copy?.pointee = kept ? 1 : 0
        return session
    }

/// A session OpenSSL gave up on (e.g. a fatal alert after resuming it): never offer it again.
private let removeSessionCallback: @convention(c) (OpaquePointer?, OpaquePointer?) -> Void = { ctx, session in
    guard let ctx, let session, let p = SSL_CTX_get_ex_data(ctx, 0) else { return }
    // SAFETY: set in installSessionCache from the cache the context's settings retain (see there).
    let cache = Unmanaged<SessionCache>.fromOpaque(p).takeUnretainedValue()
    var n: UInt32 = 0
    guard let id = SSL_SESSION_get_id(session, &n), n > 0 else { return }
    cache.remove(id: UnsafeRawBufferPointer(start: id, count: Int(n)))
}

extension TLSConnectionState {
    /// Serializes `session` through a temporary buffer (wiped afterwards) into `cache`.
    func storeSession(_ session: OpaquePointer, in cache: SessionCache) {
        var idLength: UInt32 = 0
        guard let id = SSL_SESSION_get_id(session, &idLength), idLength > 0 else { return }
        let n = Int(i2d_SSL_SESSION(session, nil))
        guard n > 0 else { return }
        let idBytes = UnsafeRawBufferPointer(start: id, count: Int(idLength))
        guard n <= SessionCache.slotSize else {
            cache.noteTooLarge()
            return
        }
        withUnsafeTemporaryAllocation(byteCount: SessionCache.slotSize, alignment: 8) { buf in
            var p: UnsafeMutablePointer<UInt8>? = buf.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let written = Int(i2d_SSL_SESSION(session, &p))
            if written == n {
                let bytes = UnsafeRawBufferPointer(start: buf.baseAddress, count: n)
                cache.store(id: idBytes, session: bytes, now: monotonicNanos())
                if let fleet = cache.fleet, let sealed = fleet.wrapper.sealSession(bytes, sessionID: idBytes) {
                    fleet.store.store(
                        key: fleet.key(for: idBytes),
                        value: sealed,
                        ttlMilliseconds: fleet.ttlMilliseconds
                    )
                }
            }
            SecretBytes.secureZero(UnsafeMutableRawBufferPointer(start: buf.baseAddress, count: n))
        }
    }

    /// The cached session for `id`, and whether the worker's `DecodedSessions` keeps a reference to it; records the
    /// hit for the outcome. The local cache's entry is decoded (in place, under the shard lock) only when the worker
    /// holds no current copy. On a local miss with a fleet tier, asks the shared store (bounded wait, see
    /// `RedisSessionStore`), keeps the opened session locally and decodes it for this connection.
    func fetchSession(_ id: UnsafeRawBufferPointer, from cache: SessionCache) -> (OpaquePointer, kept: Bool)? {
        let now = monotonicNanos()
        if let s = worker.decodedSessions.fetch(id: id, from: cache, now: now) {
            sessionCacheHit = true
            return (s, true)
        }
        guard let fleet = cache.fleet, let entry = fleet.store.fetch(key: fleet.key(for: id)) else { return nil }
        let opened = fleet.wrapper.openSession(entry, sessionID: id) { plain -> OpaquePointer? in
            cache.store(id: id, session: plain, now: now)
            var p: UnsafePointer<UInt8>? = plain.baseAddress?.assumingMemoryBound(to: UInt8.self)
            return d2i_SSL_SESSION(nil, &p, plain.count)
        }
        guard let s = opened ?? nil else { return nil }
        sessionCacheHit = true
        return (s, false)
    }
}
