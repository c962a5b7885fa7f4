internal import COpenSSL
import CProxyShims

/// What the client side of TLS toward one pool's origins needs (the server fills it from `[upstreams.NAME.tls]`).
public struct OriginTLSSettings: Sendable, Equatable {
    public var verify = true
    /// PEM CA file; nil: the system store (`SSL_CTX_set_default_verify_paths`).
    public var caFile: String? = nil
    public var clientCert: String? = nil
    public var clientKey: String? = nil
    /// Lowest version offered (TLS1_2_VERSION or TLS1_3_VERSION); the highest is always TLS 1.3.
    public var minVersion: Int32 = 0x0303
    public init() {}
}

/// One client `SSL_CTX` for the `https://` servers of one pool, built at load or reload (never per connection)
/// and shared by every worker (creating an `SSL` from a shared context is thread-safe in OpenSSL).
///
/// Verification is on unless `verify` is false: the chain against the configured CA file or the system store,
/// and the host name per connection (``OriginTLSStream/make(context:fd:serverName:verifyHost:verifyIP:session:sink:)``).
/// ALPN offers `http/1.1` only (HTTP/2 toward origins is not implemented). Sessions are not cached by OpenSSL:
/// the new-session callback hands each one to the connection's ``OriginSessionSink``, which keeps the latest per
/// server for resumption.
public final class OriginTLSContext: @unchecked Sendable {
    // SAFETY: the SSL_CTX is configured completely in init and only read afterwards (SSL_new), which OpenSSL allows
    // from any thread; freed in deinit when no connection holds the context any more (connections retain it).
    let ctx: OpaquePointer
    public let settings: OriginTLSSettings

    public init(_ settings: OriginTLSSettings) throws(TLSError) {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw TLSError("SSL_CTX_new") }
        self.ctx = ctx
        self.settings = settings
        _ = cps_SSL_CTX_set_min_proto_version(ctx, settings.minVersion)
        _ = cps_SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)
        _ = SSL_CTX_set_options(ctx, cps_SSL_OP_NO_COMPRESSION() | cps_SSL_OP_NO_RENEGOTIATION())
        _ = cps_SSL_CTX_set_mode(
            ctx,
            Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS)
        )
        // Read whole socket buffers instead of a 5-byte record header and then the record (as the server side).
        cps_SSL_CTX_set_read_ahead(ctx, 1)
        // http/1.1 only: wire format is length-prefixed. SSL_CTX_set_alpn_protos returns 0 on success.
        let alpn: [UInt8] = [8] + Array("http/1.1".utf8)
        guard SSL_CTX_set_alpn_protos(ctx, alpn, UInt32(alpn.count)) == 0 else { throw TLSError("ALPN") }
        if settings.verify {
            if let ca = settings.caFile {
                guard SSL_CTX_load_verify_locations(ctx, ca, nil) == 1 else {
                    throw TLSError("cannot load CA file \"\(ca)\"")
                }
            } else {
                guard SSL_CTX_set_default_verify_paths(ctx) == 1 else {
                    throw TLSError("cannot load the system CA store")
                }
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        } else {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        }
        if let cert = settings.clientCert, let key = settings.clientKey {
            guard SSL_CTX_use_certificate_chain_file(ctx, cert) == 1 else {
                throw TLSError("cannot load client certificate \"\(cert)\"")
            }
            guard SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1 else {
                throw TLSError("cannot load client key \"\(key)\"")
            }
            guard SSL_CTX_check_private_key(ctx) == 1 else {
                throw TLSError("client key \"\(key)\" does not match client certificate \"\(cert)\"")
            }
        }
        // Client-side caching through the callback only: OpenSSL's internal store is a locked hash shared by every
        // worker; the workers keep their own latest session per server instead (no lock per connection).
        _ = cps_SSL_CTX_set_session_cache_mode(
            ctx,
            Int(SSL_SESS_CACHE_CLIENT) | Int(SSL_SESS_CACHE_NO_INTERNAL_STORE)
        )
        SSL_CTX_sess_set_new_cb(ctx, originNewSessionTrampoline)
    }

    deinit { SSL_CTX_free(ctx) }
}

/// A client session an origin issued (TLS 1.2 session or TLS 1.3 ticket), kept for resuming the next connection
/// to the same server. Owns one reference to the `SSL_SESSION`.
public final class OriginTLSSession {
    // SAFETY: owned reference (handed over by the new-session callback), freed once in deinit; loop thread only.
    let session: OpaquePointer
    init(_ session: OpaquePointer) { self.session = session }
    deinit { SSL_SESSION_free(session) }
}

/// Receives the sessions an origin issues on a connection (the new-session callback runs inside a handshake or
/// read step, on the connection's loop thread).
public protocol OriginSessionSink: AnyObject {
    func originIssuedSession(_ session: OriginTLSSession)
}

/// The ex_data slot holding each origin `SSL`'s ``OriginSessionSink`` (unretained: the sink owns the stream and
/// frees the `SSL` before it goes away).
let originSinkIndex: Int32 = cps_SSL_get_ex_new_index()

/// `SSL_CTX_sess_set_new_cb`: a trampoline to the connection's sink. Returning 1 keeps the reference OpenSSL
/// handed over (the `OriginTLSSession` frees it).
private let originNewSessionTrampoline: @convention(c) (OpaquePointer?, OpaquePointer?) -> Int32 = { ssl, session in
    guard let ssl, let session, let p = SSL_get_ex_data(ssl, originSinkIndex) else { return 0 }
    guard SSL_SESSION_is_resumable(session) == 1 else { return 0 }
    // SAFETY: set in OriginTLSStream.make to an object that outlives the SSL (it frees the SSL first); unretained.
    let sink = Unmanaged<AnyObject>.fromOpaque(p).takeUnretainedValue() as! OriginSessionSink
    sink.originIssuedSession(OriginTLSSession(session))
    return 1
}
