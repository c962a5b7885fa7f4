import COpenSSL
import CProxyShims
import Glibc

/// One client `SSL_CTX` for one hello shape, owned by one worker thread (OpenSSL 3.0 contends on shared contexts,
/// so every worker builds its own). Also the home of the C callbacks, which count per connection.
final class ClientTLSContext {
    let ctx: OpaquePointer
    let shape: HelloShape
    /// Index into `BenchWorker.contexts` (and into a slot's per-shape sessions).
    let index: Int
    /// The first ClientHello this context sent (for --dump-hello), recorded on the worker's thread.
    var firstHello: [UInt8]?
    var wantHello: Bool

    /// ex_data slot holding the `BenchConnection` of an `SSL` (process-wide, allocated once).
    nonisolated(unsafe) static var connectionIndex: Int32 = -1  // SAFETY: written once in main before any thread starts

    init(shape: HelloShape, index: Int, config: BenchConfig, wantHello: Bool) throws(BenchSetupError) {
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw BenchSetupError("SSL_CTX_new failed") }
        self.ctx = ctx
        self.shape = shape
        self.index = index
        self.wantHello = wantHello

        var vmin = TLS1_2_VERSION
        var vmax = TLS1_3_VERSION
        switch config.tls {
        case .v12: vmax = TLS1_2_VERSION
        case .v13: vmin = TLS1_3_VERSION
        case .any: if shape.maxVersion == .v12 { vmax = TLS1_2_VERSION }
        }
        _ = cps_SSL_CTX_set_min_proto_version(ctx, vmin)
        _ = cps_SSL_CTX_set_max_proto_version(ctx, vmax)
        if let level = shape.securityLevel { SSL_CTX_set_security_level(ctx, level) }
        if let c = shape.ciphers, SSL_CTX_set_cipher_list(ctx, c) != 1 {
            throw BenchSetupError("\(shape.name): no usable cipher in \(c)")
        }
        if let c = shape.ciphersuites, SSL_CTX_set_ciphersuites(ctx, c) != 1 {
            throw BenchSetupError("\(shape.name): bad TLS 1.3 cipher suites \(c)")
        }
        if let g = shape.groups, cps_SSL_CTX_set1_groups_list(ctx, g) != 1 {
            throw BenchSetupError("\(shape.name): bad groups \(g)")
        }
        if let s = shape.sigalgs, cps_SSL_CTX_set1_sigalgs_list(ctx, s) != 1 {
            throw BenchSetupError("\(shape.name): bad signature algorithms \(s)")
        }
        if !shape.alpn.isEmpty {
            var wire: [UInt8] = []
            for p in shape.alpn {
                wire.append(UInt8(p.utf8.count))
                wire.append(contentsOf: p.utf8)
            }
            // SSL_CTX_set_alpn_protos returns 0 on success (unlike almost everything else in libssl).
            if SSL_CTX_set_alpn_protos(ctx, wire, UInt32(wire.count)) != 0 {
                throw BenchSetupError("\(shape.name): bad ALPN list")
            }
        }
        if shape.noEncryptThenMac { _ = SSL_CTX_set_options(ctx, cps_SSL_OP_NO_ENCRYPT_THEN_MAC()) }
        if shape.noTicket { _ = SSL_CTX_set_options(ctx, cps_SSL_OP_NO_TICKET()) }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        if !config.verifyChain {
            // A load generator need not build and check the server's X.509 chain (OpenSSL does it even with
            // SSL_VERIFY_NONE); the server's handshake signature is still verified by libssl, so the client
            // still does a real client's crypto. Same shortcut as peerbench's hsbench.
            SSL_CTX_set_cert_verify_callback(ctx, { _, _ in 1 }, nil)
        }
        // Sessions are kept by the slots, not by an OpenSSL cache; the callback only counts.
        _ = cps_SSL_CTX_set_session_cache_mode(
            ctx,
            Int(SSL_SESS_CACHE_CLIENT) | Int(SSL_SESS_CACHE_NO_INTERNAL_STORE)
        )
        SSL_CTX_sess_set_new_cb(ctx, newSessionTrampoline)
        SSL_CTX_set_msg_callback(ctx, messageTrampoline)
    }

    deinit { SSL_CTX_free(ctx) }
}

/// Setup problems (bad options, OpenSSL refusing a shape): printed, exit 2.
struct BenchSetupError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Recovers the connection that owns `ssl`.
@inline(__always)
private func connection(of ssl: OpaquePointer?) -> BenchConnection? {
    guard let ssl, let p = SSL_get_ex_data(ssl, ClientTLSContext.connectionIndex) else { return nil }
    // SAFETY: unretained — the BenchConnection owns the SSL (frees it before it goes away) and callbacks run
    // synchronously inside SSL_* calls the connection makes on its own thread.
    return Unmanaged<BenchConnection>.fromOpaque(p).takeUnretainedValue()
}

/// New-session callback: one call per session OpenSSL would cache. Returns 0: OpenSSL keeps ownership (the slot
/// takes `SSL_get1_session` when the connection ends). Note: for a TLS 1.2 *resumption* OpenSSL never calls it,
/// even when the server renewed the ticket inline, so tickets are counted from the wire (`messageTrampoline`).
private let newSessionTrampoline: @convention(c) (OpaquePointer?, OpaquePointer?) -> Int32 = { ssl, _ in
    connection(of: ssl)?.sessionCallbacks += 1
    return 0
}

/// Message callback: counts NewSessionTicket messages received (TLS 1.2 in the handshake, TLS 1.3 after it) and
/// records the first ClientHello of each context.
private let messageTrampoline:
    @convention(c) (Int32, Int32, Int32, UnsafeRawPointer?, Int, OpaquePointer?, UnsafeMutableRawPointer?) -> Void = {
        writeP,
        _,
        contentType,
        buf,
        len,
        ssl,
        _ in
        guard contentType == SSL3_RT_HANDSHAKE, let buf, len > 0 else { return }
        let msgType = buf.load(as: UInt8.self)
        if writeP == 0 && msgType == UInt8(SSL3_MT_NEWSESSION_TICKET) {
            connection(of: ssl)?.tickets += 1
        } else if writeP == 1 && msgType == UInt8(SSL3_MT_CLIENT_HELLO), let c = connection(of: ssl) {
            let tls = c.context
            if tls.wantHello && tls.firstHello == nil {
                tls.firstHello = Array(UnsafeRawBufferPointer(start: buf, count: len))
            }
        }
    }
