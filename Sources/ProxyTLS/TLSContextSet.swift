internal import COpenSSL
import CProxyShims
import Glibc
import ProxyCore

/// An immutable set of server `SSL_CTX`s built from one `TLSSettings`: one context per group of certificates
/// that serve the same names (an ECDSA and an RSA certificate for the same names share a context, and OpenSSL
/// picks by the client's signature algorithms); SNI switches between them.
///
/// Swapped as a whole on reload: connections keep the set they started with (their state holds a reference).
public final class TLSContextSet: @unchecked Sendable {
    // SAFETY: after init the SSL_CTXs are only read (SSL_new takes its own reference); OpenSSL documents
    // SSL_CTX as safe to share across threads for creating SSL objects.
    let contexts: [OpaquePointer]
    let defaultContext: OpaquePointer
    let byName: [String: OpaquePointer]
    let byWildcardSuffix: [String: OpaquePointer]
    public let settings: TLSSettings
    /// `settings.alpn` as bytes, and `settings.alpnStrict`: what the ALPN callback reads on every handshake (copying
    /// `settings` there retained and released each of its strings).
    let alpnPreferences: [[UInt8]]
    let alpnStrict: Bool
    /// Human-readable summary of the loaded certificates ("ECDSA localhost (self-signed)").
    public let certificateSummary: [String]
    public let isSelfSigned: Bool
    /// Every certificate of this set as the OCSP stapler sees it (empty without a stapler), configuration order.
    public let ocspCertificates: [OCSPCertificate]
    /// The staple slot of each stapled leaf, by its X509 pointer (what `SSL_get_certificate` returns in the status
    /// callback). Immutable after init.
    let staples: [UInt: OCSPStapleSlot]

    /// Loads certificates and builds the contexts. Throws with the file name and OpenSSL's reason.
    public init(settings: TLSSettings) throws(TLSError) {
        self.settings = settings
        alpnPreferences = settings.alpn.map { Array($0.utf8) }
        alpnStrict = settings.alpnStrict
        var loaded: [LoadedCertificate] = []
        if settings.certificates.isEmpty {
            loaded = [try LoadedCertificate.selfSigned()]
            isSelfSigned = true
        } else {
            for c in settings.certificates {
                loaded.append(try LoadedCertificate.load(chainPath: c.chainPath, keyPath: c.keyPath))
            }
            isSelfSigned = false
        }
        var ocspCertificates: [OCSPCertificate] = []
        var staples: [UInt: OCSPStapleSlot] = [:]
        if let stapler = settings.stapler {
            for (i, cert) in loaded.enumerated() {
                let source: OCSPSource = isSelfSigned ? .off : settings.certificates[i].ocsp
                let entry = stapler.entry(for: cert, source: source)
                ocspCertificates.append(entry)
                if source != .off { staples[UInt(bitPattern: cert.leaf)] = entry.slot }
            }
        }
        self.ocspCertificates = ocspCertificates
        self.staples = staples
        // Group certificates serving the same name set, in configuration order; the first group is the default.
        var groups: [[LoadedCertificate]] = []
        for cert in loaded {
            if let i = groups.firstIndex(where: {
                Set($0[0].names) == Set(cert.names) && !$0.contains { $0.keyType == cert.keyType }
            }) {
                groups[i].append(cert)
            } else {
                groups.append([cert])
            }
        }
        var contexts: [OpaquePointer] = []
        var byName: [String: OpaquePointer] = [:]
        var byWildcard: [String: OpaquePointer] = [:]
        for group in groups {
            let ctx = try Self.makeContext(settings: settings, certificates: group, stapling: !staples.isEmpty)
            contexts.append(ctx)
            for name in group[0].names {
                if name.hasPrefix("*.") {
                    let suffix = String(name.dropFirst(2))
                    if byWildcard[suffix] == nil { byWildcard[suffix] = ctx }
                } else if byName[name] == nil {
                    byName[name] = ctx
                }
            }
        }
        self.contexts = contexts
        self.defaultContext = contexts[0]
        self.byName = byName
        self.byWildcardSuffix = byWildcard
        self.certificateSummary = loaded.map {
            "\($0.keyType) \($0.names.joined(separator: ","))\(settings.certificates.isEmpty ? " (self-signed)" : "")"
        }
    }

    deinit {
        for c in contexts { SSL_CTX_free(c) }
    }

    /// Creates the SSL for an accepted socket. The state must stay alive until `TLSStream.free()`.
    public func accept(fd: Int32, state: TLSConnectionState) -> TLSStream? {
        guard let ssl = SSL_new(defaultContext) else { return nil }
        // A socket BIO that notes whether its last read emptied the socket (`TLSStream.socketEmptied`).
        guard let bio = state.worker.takeSocketBIO(fd: fd) ?? cps_BIO_new_socket(fd) else {
            SSL_free(ssl)
            return nil
        }
        SSL_set_bio(ssl, bio, bio)
        // SAFETY: unretained — the connection owns `state` and frees the SSL (ending all callbacks) before it.
        SSL_set_ex_data(ssl, connectionStateIndex, Unmanaged.passUnretained(state).toOpaque())
        SSL_set_accept_state(ssl)
        return TLSStream(ssl: ssl)
    }

    /// Context for an SNI name: exact match, then wildcard one label deep, else nil (keep the default).
    func context(forServerName name: String) -> OpaquePointer? {
        let lower = name.lowercased()
        if let c = byName[lower] { return c }
        if let dot = lower.firstIndex(of: ".") {
            return byWildcardSuffix[String(lower[lower.index(after: dot)...])]
        }
        return nil
    }

    private static func makeContext(
        settings: TLSSettings,
        certificates: [LoadedCertificate],
        stapling: Bool
    ) throws(TLSError)
        -> OpaquePointer
    {
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw TLSError("SSL_CTX_new") }
        var ok = true
        ok = ok && cps_SSL_CTX_set_min_proto_version(ctx, settings.minVersion) == 1
        ok = ok && cps_SSL_CTX_set_max_proto_version(ctx, settings.maxVersion) == 1
        if !ok {
            SSL_CTX_free(ctx)
            throw TLSError("setting protocol versions")
        }
        // OpenSSL 3's default security level 1 refuses TLS 1.0/1.1 (SHA-1 signatures); enabling them for legacy
        // clients needs level 0, which is only lowered when the operator asked for an old minimum version.
        if settings.minVersion < TLS1_2_VERSION { SSL_CTX_set_security_level(ctx, 0) }
        SSL_CTX_set_options(
            ctx,
            cps_SSL_OP_NO_COMPRESSION() | cps_SSL_OP_NO_RENEGOTIATION() | cps_SSL_OP_CIPHER_SERVER_PREFERENCE()
                | cps_SSL_OP_IGNORE_UNEXPECTED_EOF() | (settings.ticketsEnabled ? 0 : cps_SSL_OP_NO_TICKET())
        )
        _ = cps_SSL_CTX_set_mode(
            ctx,
            Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS)
        )
        // Read whole socket buffers instead of a 5-byte record header and then the record: half the read() calls.
        cps_SSL_CTX_set_read_ahead(ctx, 1)
        // Session IDs go to the process-wide external cache (or nowhere when it is off): see SessionCacheCallbacks.
        installSessionCache(ctx, settings: settings)
        SSL_CTX_set_timeout(ctx, settings.ticketLifetimeSeconds)
        SSL_CTX_set_num_tickets(ctx, settings.ticketsEnabled ? settings.tls13TicketCount : 0)
        if SSL_CTX_set_cipher_list(ctx, settings.ciphers) != 1 {
            SSL_CTX_free(ctx)
            throw TLSError("tls.ciphers \"\(settings.ciphers)\" selects no usable cipher")
        }
        // DHE suites (Mozilla intermediate/old): the RFC 7919 ffdhe2048 group, no hand-made parameters.
        // (SSL_CTX_set_dh_auto would pick the RFC 3526 MODP primes in OpenSSL 3.0, not an FFDHE group.)
        if !installFFDHE2048(ctx) {
            SSL_CTX_free(ctx)
            throw TLSError("setting the ffdhe2048 group for DHE")
        }
        if SSL_CTX_set_ciphersuites(ctx, settings.ciphersuites) != 1 {
            SSL_CTX_free(ctx)
            throw TLSError("tls.ciphersuites \"\(settings.ciphersuites)\" is invalid")
        }
        if cps_SSL_CTX_set1_groups_list(ctx, settings.groups) != 1 {
            SSL_CTX_free(ctx)
            throw TLSError("tls.groups \"\(settings.groups)\" is invalid")
        }
        for cert in certificates {
            guard SSL_CTX_use_certificate(ctx, cert.leaf) == 1, SSL_CTX_use_PrivateKey(ctx, cert.key) == 1 else {
                SSL_CTX_free(ctx)
                throw TLSError("installing certificate \(cert.displayName)")
            }
            // Chain certificates attach to the certificate installed last (per key type).
            for c in cert.chain where cps_SSL_CTX_add1_chain_cert(ctx, c) != 1 {
                SSL_CTX_free(ctx)
                throw TLSError("installing chain of \(cert.displayName)")
            }
        }
        // Session ID context = SHA-1("HTTP" || SHA-1(DER of each certificate)), as nginx computes it: OpenSSL only
        // resumes sessions whose context matches, so this is what lets nginx and EdgeProxy sharing a key file
        // resume each other's tickets (and instances of a fleet with the same certificates do anyway).
        var sidCtx = [UInt8](repeating: 0, count: 20)
        if let md = EVP_MD_CTX_new() {
            EVP_DigestInit_ex(md, EVP_sha1(), nil)
            EVP_DigestUpdate(md, "HTTP", 4)
            for cert in certificates {
                var d = [UInt8](repeating: 0, count: 64)
                var n: UInt32 = 0
                if X509_digest(cert.leaf, EVP_sha1(), &d, &n) == 1 { EVP_DigestUpdate(md, d, Int(n)) }
            }
            var n: UInt32 = 0
            EVP_DigestFinal_ex(md, &sidCtx, &n)
            EVP_MD_CTX_free(md)
            SSL_CTX_set_session_id_context(ctx, sidCtx, n)
        }
        SSL_CTX_set_msg_callback(ctx, messageCallback)
        SSL_CTX_set_client_hello_cb(ctx, clientHelloCallback, nil)
        _ = cps_SSL_CTX_set_tlsext_servername_callback(ctx, serverNameCallback)
        SSL_CTX_set_alpn_select_cb(ctx, alpnCallback, nil)
        if settings.ticketsEnabled {
            SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticketKeyCallback)
        }
        if stapling { _ = cps_SSL_CTX_set_tlsext_status_cb(ctx, ocspStatusCallback) }
        return ctx
    }
}

/// The ex_data slot holding each SSL's `TLSConnectionState`.
let connectionStateIndex: Int32 = cps_SSL_get_ex_new_index()

@inline(__always)
func connectionState(_ ssl: OpaquePointer?) -> TLSConnectionState? {
    guard let ssl, let p = SSL_get_ex_data(ssl, connectionStateIndex) else { return nil }
    // SAFETY: set in `accept` from a live state that outlives the SSL (see there).
    return Unmanaged<TLSConnectionState>.fromOpaque(p).takeUnretainedValue()
}

/// Captures the raw ClientHello (inbound handshake message type 1). OpenSSL 3.0's extension API drops unknown
/// extensions (TLS-NOTES), so fingerprinting needs the bytes as sent. Switched off once captured.
private let messageCallback:
    @convention(c) (
        Int32, Int32, Int32, UnsafeRawPointer?, Int, OpaquePointer?, UnsafeMutableRawPointer?
    ) -> Void = { writeP, _, contentType, buf, len, ssl, _ in
        guard writeP == 0, contentType == SSL3_RT_HANDSHAKE, let buf, len > 0,
            buf.load(as: UInt8.self) == 1, let state = connectionState(ssl), !state.helloCaptured
        else { return }
        state.helloCaptured = true
        state.helloBytes = Array(UnsafeRawBufferPointer(start: buf, count: len))
        SSL_set_msg_callback(ssl, nil)
    }

/// Runs once per connection (twice after a HelloRetryRequest; the second call is ignored): a trampoline that hands
/// the captured hello to the delegate and applies its answer, stored in the connection state for the ticket callback.
private let clientHelloCallback:
    @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int32>?, UnsafeMutableRawPointer?) -> Int32 = {
        ssl,
        alert,
        _ in
        guard let ssl, let state = connectionState(ssl) else { return 1 }
        if state.decided { return 1 }
        state.decided = true
        if !state.apply(state.worker.delegate.clientHello(state), ssl: ssl) {
            alert?.pointee = SSL_AD_DECODE_ERROR
            return 0
        }
        return 1
    }

/// Selects the context for the SNI name (certificate choice).
private let serverNameCallback:
    @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int32>?, UnsafeMutableRawPointer?)
        -> Int32 = { ssl, _, _ in
            guard let ssl, let state = connectionState(ssl),
                let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)
            else { return SSL_TLSEXT_ERR_OK }
            if let ctx = state.contextSet.context(forServerName: String(cString: name)),
                ctx != state.contextSet.defaultContext
            {
                SSL_set_SSL_CTX(ssl, ctx)
            }
            return SSL_TLSEXT_ERR_OK
        }

/// ALPN: `ALPNSelection.choose` decides (server preference order; no match → alert or no ALPN, per
/// `TLSSettings.alpnStrict`); this maps its answer to OpenSSL's return codes.
private let alpnCallback:
    @convention(c) (
        OpaquePointer?, UnsafeMutablePointer<UnsafePointer<UInt8>?>?, UnsafeMutablePointer<UInt8>?,
        UnsafePointer<UInt8>?, UInt32, UnsafeMutableRawPointer?
    ) -> Int32 = { ssl, out, outLen, input, inLen, _ in
        guard let state = connectionState(ssl), let input, let out, let outLen else { return SSL_TLSEXT_ERR_NOACK }
        let set = state.contextSet
        // SAFETY: OpenSSL passes the client's validated ProtocolNameList (inLen bytes), valid during the callback;
        // the selected pointer points into it, which OpenSSL copies before the buffer goes away.
        let offered = UnsafeRawBufferPointer(start: input, count: Int(inLen))
        switch ALPNSelection.choose(offered: offered, preferences: set.alpnPreferences, strict: set.alpnStrict) {
        case .select(let offset, let length):
            out.pointee = input + offset
            outLen.pointee = UInt8(length)
            return SSL_TLSEXT_ERR_OK
        case .noOverlap:
            return SSL_TLSEXT_ERR_NOACK
        case .reject:
            return SSL_TLSEXT_ERR_ALERT_FATAL
        }
    }

/// OCSP stapling (client sent status_request; OpenSSL calls this after choosing the certificate): staples the
/// current response of the chosen certificate if it is still unexpired, else none. Reads an immutable staple through
/// an atomic load (`OCSPStapleSlot`): no lock, no wait; the copy goes into an OPENSSL_malloc'd buffer OpenSSL owns.
private let ocspStatusCallback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Int32 = { ssl, _ in
    guard let ssl, let state = connectionState(ssl), let leaf = SSL_get_certificate(ssl),
        let staple = state.contextSet.staples[UInt(bitPattern: leaf)]?.load(),
        OCSPSchedule.isStapleable(expiry: staple.expiry, now: Int64(time(nil)))
    else { return SSL_TLSEXT_ERR_NOACK }
    let n = staple.der.count
    guard let buf = cps_OPENSSL_malloc(n) else { return SSL_TLSEXT_ERR_NOACK }
    staple.der.withUnsafeBytes { buf.copyMemory(from: $0.baseAddress!, byteCount: n) }
    guard cps_SSL_set_tlsext_status_ocsp_resp(ssl, buf.assumingMemoryBound(to: UInt8.self), n) == 1 else {
        cps_OPENSSL_free(buf)
        return SSL_TLSEXT_ERR_NOACK
    }
    return SSL_TLSEXT_ERR_OK
}
