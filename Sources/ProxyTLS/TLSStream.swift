internal import COpenSSL
import CProxyShims

/// One server-side TLS session running directly on a non-blocking socket (`SSL_set_fd`).
///
/// Owned by exactly one connection on one loop thread. `free()` must be called once.
public struct TLSStream {
    /// Outcome of a handshake step.
    public enum HandshakeResult {
        case done
        case wantRead
        case wantWrite
        case failed(String)
    }

    /// Outcome of a read.
    public enum ReadResult {
        case bytes(Int)
        case wantRead
        case wantWrite
        /// The peer closed (close_notify or EOF).
        case closed
        case failed(String)
    }

    /// Outcome of a write.
    public enum WriteResult {
        case written(Int)
        case wantWrite
        case wantRead
        case failed(String)
    }

    // SAFETY: an SSL* used only on the owning loop thread; freed once by `free()`.
    let ssl: OpaquePointer

    init(ssl: OpaquePointer) { self.ssl = ssl }

    /// One handshake step. The end of the handshake (done or failed, once the ClientHello was answered) is
    /// reported to the connection's `TLSHandshakeDelegate`.
    public func handshake() -> HandshakeResult {
        let r = SSL_do_handshake(ssl)
        if r == 1 {
            if let state = connectionState(ssl), state.decided {
                state.worker.delegate.handshakeCompleted(
                    state,
                    version: SSL_version(ssl),
                    outcome: state.finalOutcome(resumed: SSL_session_reused(ssl) == 1)
                )
            }
            return .done
        }
        let e = SSL_get_error(ssl, r)
        switch e {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_WANT_CLIENT_HELLO_CB, SSL_ERROR_WANT_X509_LOOKUP: return .wantRead
        default:
            let failure = Self.classifyFailure(error: e, firstCode: ERR_peek_error())
            if let state = connectionState(ssl), state.decided {
                state.worker.delegate.handshakeFailed(state, version: SSL_version(ssl), failure: failure)
            }
            return .failed(Self.drainErrors("handshake"))
        }
    }

    /// Whether the peer sent an alert, closed/reset without one, or something else failed.
    static func classifyFailure(error: Int32, firstCode: UInt) -> TLSHandshakeFailure {
        switch error {
        case SSL_ERROR_SYSCALL, SSL_ERROR_ZERO_RETURN:
            // EOF or ECONNRESET (errno), or (IGNORE_UNEXPECTED_EOF) an EOF taken as a close.
            return .peerClosed
        case SSL_ERROR_SSL:
            let reason = ERR_GET_REASON(firstCode)
            if reason == SSL_R_UNEXPECTED_EOF_WHILE_READING { return .peerClosed }
            // Received alerts are reported as SSL_AD_REASON_OFFSET (1000) + the alert number.
            if reason >= 1000 && reason < 1256 { return .peerAlert }
            return .other
        default:
            return .other
        }
    }

    public func read(into buf: UnsafeMutableRawBufferPointer) -> ReadResult {
        var n = 0
        let r = SSL_read_ex(ssl, buf.baseAddress, buf.count, &n)
        if r == 1 { return .bytes(n) }
        switch SSL_get_error(ssl, 0) {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN: return .closed
        case SSL_ERROR_SYSCALL:
            // With SSL_OP_IGNORE_UNEXPECTED_EOF a bare EOF is ZERO_RETURN; anything here is a socket error.
            ERR_clear_error()
            return .closed
        default: return .failed(Self.drainErrors("read"))
        }
    }

    /// True when OpenSSL holds no unread bytes and its last socket read left the socket empty (it returned fewer
    /// bytes than asked for, or EAGAIN). On an edge-triggered socket, anything that arrives later brings a new edge,
    /// so after a read a caller may wait for that edge instead of reading again only to get `.wantRead`. Not after
    /// a hang-up edge: the EOF then sits behind the bytes already read and no further edge announces it.
    public var socketEmptied: Bool { cps_SSL_socket_emptied(ssl) != 0 }

    public func write(_ buf: UnsafeRawBufferPointer) -> WriteResult {
        var n = 0
        let r = SSL_write_ex(ssl, buf.baseAddress, buf.count, &n)
        if r == 1 { return .written(n) }
        switch SSL_get_error(ssl, 0) {
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_WANT_READ: return .wantRead
        default: return .failed(Self.drainErrors("write"))
        }
    }

    /// Queues `count` more TLS 1.3 NewSessionTickets and tries to send them now. OpenSSL 3.0 sends at most one
    /// ticket on a resumption by itself; this tops it up to the configured count.
    public func issueExtraTickets(_ count: Int) {
        guard count > 0 else { return }
        for _ in 0..<count { _ = SSL_new_session_ticket(ssl) }
        if SSL_do_handshake(ssl) != 1 { ERR_clear_error() }
    }

    /// Frees OpenSSL's record buffers when nothing is pending. SSL_MODE_RELEASE_BUFFERS does this after
    /// application data, but not after the handshake, so an idle connection would keep a 16 KiB read buffer.
    public func releaseBuffers() {
        _ = SSL_free_buffers(ssl)
    }

    /// Sends close_notify (best effort, non-blocking).
    public func shutdown() {
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    public func free() {
        // SSL_free drops the session from the session cache when no close_notify was sent (OpenSSL's
        // ssl_clear_bad_session), i.e. for every client that just closes its socket. Since TLS 1.1 (RFC 4346 §7.2.1)
        // an unclean close does not make a session unresumable; nginx marks the shutdown done the same way
        // (ngx_ssl_shutdown). A connection that ended in a fatal alert had its session removed when the alert went.
        if SSL_is_init_finished(ssl) == 1 { SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN) }
        connectionState(ssl)?.worker.keepSocketBIO(of: ssl)
        SSL_free(ssl)
    }

    /// True when the session was resumed from a ticket.
    public var resumed: Bool { SSL_session_reused(ssl) == 1 }

    /// Negotiated protocol version name ("TLSv1.3").
    public var versionName: StaticString {
        switch SSL_version(ssl) {
        case TLS1_3_VERSION: return "TLSv1.3"
        case TLS1_2_VERSION: return "TLSv1.2"
        case TLS1_1_VERSION: return "TLSv1.1"
        case TLS1_VERSION: return "TLSv1"
        default: return "unknown"
        }
    }

    public var version: Int32 { SSL_version(ssl) }

    /// The negotiated cipher's OpenSSL name (static storage inside OpenSSL).
    public var cipherName: UnsafePointer<CChar>? { SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)) }

    /// The negotiated ALPN protocol, if any.
    public var alpn: String? {
        var p: UnsafePointer<UInt8>?
        var len: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &p, &len)
        guard let p, len > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: p, count: Int(len)), as: UTF8.self)
    }

    /// The SNI host name as OpenSSL's C string (valid while the SSL lives), if any.
    public var serverNamePointer: UnsafePointer<CChar>? { SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) }

    /// The SNI host name the client sent, if any.
    public var serverName: String? {
        guard let p = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else { return nil }
        return String(cString: p)
    }

    static func drainErrors(_ what: String) -> String {
        var first: String?
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            if first == nil, let r = ERR_reason_error_string(code) { first = String(cString: r) }
        }
        return first.map { "\(what): \($0)" } ?? what
    }
}
