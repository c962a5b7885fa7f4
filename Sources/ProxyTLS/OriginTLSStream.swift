internal import COpenSSL
import CProxyShims

/// Why a handshake with an origin failed: the `reason` label of
/// `edgeproxy_upstream_tls_handshake_failures_total` (bounded), with the text for the log line.
public struct OriginTLSFailure: Error, Sendable {
    public enum Reason: String, Sendable, CaseIterable {
        /// The origin's certificate did not verify (chain, dates, host name).
        case verify
        /// The origin sent a fatal alert (e.g. it requires a client certificate).
        case alert
        /// The origin closed or reset the connection during the handshake.
        case closed
        /// Anything else (no shared version or cipher, malformed messages, ...).
        case protocolError = "protocol"
    }
    public let reason: Reason
    /// OpenSSL's words: the verify result (`X509_verify_cert_error_string`) or the first error-queue reason.
    public let message: String
}

/// The client side of TLS on one non-blocking origin socket (`SSL_set_fd`), driven by readiness on the owner's loop.
/// Owned by one connection on one loop thread; `free()` must be called once.
public struct OriginTLSStream {
    public enum HandshakeStep {
        case done(resumed: Bool)
        case wantRead
        case wantWrite
        case failed(OriginTLSFailure)
    }

    public enum ReadResult {
        case bytes(Int)
        case wantRead
        /// OpenSSL must write first (e.g. the answer to a TLS 1.3 KeyUpdate) and the socket is full.
        case wantWrite
        /// close_notify: a clean end.
        case closed
        /// EOF without close_notify: the stream may have been truncated.
        case truncated
        /// A fatal alert (in TLS 1.3 an origin that rejects the client certificate says so after the client's
        /// handshake completed, at the first read) or another error.
        case failed(OriginTLSFailure)
    }

    public enum WriteResult {
        case written(Int)
        case wantWrite
        /// OpenSSL must read first (post-handshake messages).
        case wantRead
        case failed(String)
    }

    // SAFETY: used only on the owning loop thread; freed once by `free()`.
    let ssl: OpaquePointer

    /// A client `SSL` on `fd`: SNI `serverName` (nil: none), host-name check against `verifyHost` or address check
    /// against `verifyIP` (when the context verifies), resuming `session` if given. `sink` receives the sessions the
    /// origin issues and must outlive the stream. Nil when OpenSSL refuses (out of memory, bad name).
    public static func make(
        context: OriginTLSContext,
        fd: Int32,
        serverName: String?,
        verifyHost: String?,
        verifyIP: String?,
        session: OriginTLSSession?,
        sink: OriginSessionSink
    ) -> OriginTLSStream? {
        guard let ssl = SSL_new(context.ctx) else {
            ERR_clear_error()
            return nil
        }
        // A socket BIO that notes whether its last read emptied the socket (`socketEmptied`).
        guard let bio = cps_BIO_new_socket(fd) else {
            ERR_clear_error()
            SSL_free(ssl)
            return nil
        }
        SSL_set_bio(ssl, bio, bio)
        var ok = true
        if let name = serverName { ok = cps_SSL_set_tlsext_host_name(ssl, name) == 1 }
        if ok && context.settings.verify {
            if let host = verifyHost {
                ok = SSL_set1_host(ssl, host) == 1
            } else if let ip = verifyIP {
                ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip) == 1
            }
        }
        if ok, let s = session { ok = SSL_set_session(ssl, s.session) == 1 }
        guard ok else {
            ERR_clear_error()
            SSL_free(ssl)
            return nil
        }
        SSL_set_connect_state(ssl)
        // SAFETY: the sink owns this stream and calls free() before it goes away (see originSinkIndex).
        SSL_set_ex_data(ssl, originSinkIndex, Unmanaged.passUnretained(sink as AnyObject).toOpaque())
        return OriginTLSStream(ssl: ssl)
    }

    /// One handshake step (`SSL_connect`).
    public func handshake() -> HandshakeStep {
        ERR_clear_error()
        let r = SSL_connect(ssl)
        if r == 1 { return .done(resumed: SSL_session_reused(ssl) == 1) }
        let e = SSL_get_error(ssl, r)
        switch e {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        default: return .failed(failure(error: e))
        }
    }

    /// Classifies a failed handshake; the verify result wins (OpenSSL reports it as a generic SSL error).
    private func failure(error e: Int32) -> OriginTLSFailure {
        let verify = SSL_get_verify_result(ssl)
        if verify != Int(X509_V_OK) {
            ERR_clear_error()
            let text = X509_verify_cert_error_string(verify).map { String(cString: $0) } ?? "error \(verify)"
            return OriginTLSFailure(reason: .verify, message: "certificate verify failed: \(text)")
        }
        let code = ERR_peek_error()
        let reason = ERR_GET_REASON(code)
        let text = Self.drainErrors()
        switch e {
        case SSL_ERROR_SYSCALL, SSL_ERROR_ZERO_RETURN:
            return OriginTLSFailure(reason: .closed, message: text ?? "connection closed during the handshake")
        default:
            if reason == SSL_R_UNEXPECTED_EOF_WHILE_READING {
                return OriginTLSFailure(reason: .closed, message: "connection closed during the handshake")
            }
            // Received alerts are reported as SSL_AD_REASON_OFFSET (1000) + the alert number.
            if reason >= 1000 && reason < 1256 {
                return OriginTLSFailure(reason: .alert, message: text ?? "alert \(reason - 1000)")
            }
            return OriginTLSFailure(reason: .protocolError, message: text ?? "handshake failed")
        }
    }

    public func read(into buf: UnsafeMutableRawBufferPointer) -> ReadResult {
        var n = 0
        if SSL_read_ex(ssl, buf.baseAddress, buf.count, &n) == 1 { return .bytes(n) }
        let e = SSL_get_error(ssl, 0)
        switch e {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN: return .closed
        case SSL_ERROR_SSL where ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING:
            ERR_clear_error()
            return .truncated
        default:
            return .failed(failure(error: e))
        }
    }

    /// True when OpenSSL holds no unread bytes and its last socket read left the socket empty (see
    /// `TLSStream.socketEmptied`): after a read, the next bytes bring an edge of their own.
    public var socketEmptied: Bool { cps_SSL_socket_emptied(ssl) != 0 }

    public func write(_ buf: UnsafeRawBufferPointer) -> WriteResult {
        var n = 0
        if SSL_write_ex(ssl, buf.baseAddress, buf.count, &n) == 1 { return .written(n) }
        let e = SSL_get_error(ssl, 0)
        switch e {
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_WANT_READ: return .wantRead
        default: return .failed(Self.drainErrors() ?? "write failed (error \(e))")
        }
    }

    /// Bytes already decrypted and buffered inside OpenSSL.
    public var hasPending: Bool { SSL_pending(ssl) > 0 }

    /// Sends close_notify (best effort, non-blocking), as nginx does when it closes an origin connection.
    public func shutdown() {
        if SSL_is_init_finished(ssl) == 1 { _ = SSL_shutdown(ssl) }
        ERR_clear_error()
    }

    public func free() {
        SSL_set_ex_data(ssl, originSinkIndex, nil)
        // SSL_free marks the current session not resumable when no close_notify was sent (ssl_clear_bad_session),
        // and that session is the one the sink kept: an origin that closes after its response (keep-alive off)
        // would never be resumed. An unclean close does not make a session unresumable (RFC 4346 §7.2.1); after a
        // fatal alert OpenSSL already dropped it. Same as TLSStream.free on the server side.
        if SSL_is_init_finished(ssl) == 1 { SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN) }
        SSL_free(ssl)
    }

    /// The negotiated version name ("TLSv1.3") for logs.
    public var versionName: String { String(cString: SSL_get_version(ssl)) }

    private static func drainErrors() -> String? {
        var first: String?
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            if first == nil, let r = ERR_reason_error_string(code) { first = String(cString: r) }
        }
        return first
    }
}
