internal import COpenSSL
import CProxyShims
import Glibc
import Synchronization

/// Where a certificate's OCSP staple comes from (`[[certificates]] ocsp`).
public enum OCSPSource: Sendable, Equatable {
    /// Never stapled.
    case off
    /// Fetched over HTTP from the responder in the certificate's Authority Information Access extension.
    case auto
    /// A DER response read from this file (at start and on every reload).
    case file(String)

    var label: String {
        switch self {
        case .off: return "off"
        case .auto: return "auto"
        case .file(let p): return "file:\(p)"
        }
    }
}

/// One validated OCSP response, immutable: the DER bytes the status callback copies into the handshake.
final class OCSPStaple: Sendable {
    let der: [UInt8]
    let thisUpdate: Int64
    let expiry: Int64

    init(der: [UInt8], thisUpdate: Int64, expiry: Int64) {
        self.der = der
        self.thisUpdate = thisUpdate
        self.expiry = expiry
    }
}

/// The current staple of one certificate, read by the status callback on worker threads without a lock: an
/// atomically swapped pointer to an immutable ``OCSPStaple``.
///
/// Reclamation: a replaced staple is not released at once but handed to the stapler's retire list and released
/// ``OCSPStapler/retireGraceSeconds`` later. A reader loads the pointer and copies the bytes within one callback
/// (microseconds), so the grace period (a minute) is what makes the unretained load safe without a reader count on
/// the handshake path.
final class OCSPStapleSlot: Sendable {
    private let current = Atomic<UInt>(0)

    /// The staple now (nil: none). Worker threads, inside the status callback.
    @inline(__always)
    func load() -> OCSPStaple? {
        let raw = current.load(ordering: .acquiring)
        guard raw != 0, let p = UnsafeRawPointer(bitPattern: raw) else { return nil }
        // SAFETY: published with passRetained; a replaced staple stays alive for the grace period (see above).
        return Unmanaged<OCSPStaple>.fromOpaque(p).takeUnretainedValue()
    }

    /// Swaps in `staple`; returns the replaced one (to retire, never to release at once).
    func exchange(_ staple: OCSPStaple?) -> OCSPStaple? {
        let new = staple.map { UInt(bitPattern: Unmanaged.passRetained($0).toOpaque()) } ?? 0
        let old = current.exchange(new, ordering: .acquiringAndReleasing)
        guard old != 0, let p = UnsafeRawPointer(bitPattern: old) else { return nil }
        return Unmanaged<OCSPStaple>.fromOpaque(p).takeRetainedValue()
    }

    deinit {
        // No reader can hold this slot any more (readers reach it through a context set that is gone).
        let raw = current.load(ordering: .acquiring)
        if raw != 0, let p = UnsafeRawPointer(bitPattern: raw) { Unmanaged<OCSPStaple>.fromOpaque(p).release() }
    }
}

/// The state of one certificate's staple, for `/certificates`, logs and metrics.
public enum OCSPStapleStatus: String, Sendable {
    /// `ocsp = "off"` (or the generated self-signed certificate).
    case off
    /// No fetch has finished yet.
    case pending
    /// A valid, unexpired `good` response is stapled.
    case good
    /// The responder says the certificate is revoked: nothing is stapled.
    case revoked
    /// The last good response expired and no newer one could be obtained: nothing is stapled.
    case expired
    /// The response file is unreadable or invalid: nothing is stapled.
    case invalid
    /// No good response is held and the last fetch failed (unreachable responder, bad or `unknown` answer): nothing
    /// is stapled; retried with backoff.
    case fetchFailed = "fetch_failed"
    /// `ocsp = "auto"` but the certificate names no OCSP responder (no AIA OCSP URL): nothing is stapled.
    case noResponder = "no_responder"
    /// The issuer certificate is not in the chain file, so no request can be built: nothing is stapled.
    case noIssuer = "no_issuer"
}

/// Events the stapler reports (on its thread) for the server to log.
public enum OCSPEvent: Sendable {
    case stapled(certificate: String, thisUpdate: Int64, nextUpdate: Int64?, source: String)
    case revoked(certificate: String, revokedAt: Int64?, source: String)
    /// A fetch or file failed; `keeping` is the expiry of the good staple still served, if any.
    case failed(certificate: String, error: String, keeping: Int64?, retryAt: Int64?)
    case expired(certificate: String)
    case unavailable(certificate: String, status: OCSPStapleStatus, reason: String)
}

/// One certificate as the stapler sees it: its identity, the issuer chain needed to validate responses, its slot,
/// and its mutable status (guarded by `state`).
public final class OCSPCertificate: @unchecked Sendable {
    // SAFETY: the X509 pointers are owned references (X509_up_ref) only read after init; mutable fields are in the
    // Mutex.
    public let fingerprint: String
    /// Leaf, chain and source: an entry is reused by a reload only when all three are unchanged (a chain file that
    /// gained its issuer must give the certificate a new chance).
    let identity: String
    public let names: [String]
    public let keyType: String
    public let notAfter: Int64?
    public let source: OCSPSource
    public let responderURL: String?
    let slot = OCSPStapleSlot()
    let leaf: OpaquePointer
    let issuer: OpaquePointer?
    let chain: [OpaquePointer]

    struct State {
        var status: OCSPStapleStatus = .pending
        var thisUpdate: Int64?
        var nextUpdate: Int64?
        var expiry: Int64?
        var nextRefresh: Int64?
        var consecutiveFailures = 0
        var totalFailures = 0
        var lastError: String?
        var lastAttempt: Int64?
    }
    let state = Mutex(State())

    /// A point-in-time copy of the status.
    public struct Report: Sendable {
        public var status: OCSPStapleStatus
        public var thisUpdate: Int64?
        public var nextUpdate: Int64?
        public var expiry: Int64?
        public var nextRefresh: Int64?
        public var totalFailures: Int
        public var lastError: String?
    }

    public var report: Report {
        state.withLock {
            Report(
                status: $0.status,
                thisUpdate: $0.thisUpdate,
                nextUpdate: $0.nextUpdate,
                expiry: $0.expiry,
                nextRefresh: $0.nextRefresh,
                totalFailures: $0.totalFailures,
                lastError: $0.lastError
            )
        }
    }

    public var displayName: String { "\(names.first ?? "(unnamed)") (\(keyType))" }

    init(_ cert: LoadedCertificate, source: OCSPSource) {
        leaf = cert.leaf
        X509_up_ref(leaf)
        chain = cert.chain
        for c in chain { X509_up_ref(c) }
        issuer = cert.chain.first { X509_check_issued($0, cert.leaf) == X509_V_OK }
        names = cert.names
        keyType = cert.keyType
        fingerprint = Self.sha256Hex(cert.leaf)
        identity = ([fingerprint] + cert.chain.map(Self.sha256Hex) + [source.label]).joined(separator: "|")
        notAfter = asn1Seconds(X509_get0_notAfter(cert.leaf))
        responderURL = Self.ocspURL(cert.leaf)
        self.source = source
        if source == .off { state.withLock { $0.status = .off } }
    }

    deinit {
        X509_free(leaf)
        for c in chain { X509_free(c) }
    }

    private static func sha256Hex(_ x: OpaquePointer) -> String {
        var d = [UInt8](repeating: 0, count: 32)
        var n: UInt32 = 0
        guard X509_digest(x, EVP_sha256(), &d, &n) == 1 else { return "" }
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in d.prefix(Int(n)) { out += [hex[Int(b >> 4)], hex[Int(b & 15)]] }
        return String(decoding: out, as: UTF8.self)
    }

    /// The first OCSP URL of the Authority Information Access extension.
    private static func ocspURL(_ x: OpaquePointer) -> String? {
        guard let sk = X509_get1_ocsp(x) else { return nil }
        defer { X509_email_free(sk) }
        guard OPENSSL_sk_num(sk) > 0, let p = OPENSSL_sk_value(sk, 0) else { return nil }
        return String(cString: p.assumingMemoryBound(to: CChar.self))
    }
}

/// Seconds since the epoch of an ASN1_TIME (nil if unparsable).
func asn1Seconds(_ t: UnsafeMutablePointer<ASN1_TIME>?) -> Int64? { asn1Seconds(UnsafePointer(t)) }

/// Seconds since the epoch of an ASN1_TIME (nil if unparsable).
func asn1Seconds(_ t: UnsafePointer<ASN1_TIME>?) -> Int64? {
    guard let t else { return nil }
    var tmv = tm()
    guard ASN1_TIME_to_tm(t, &tmv) == 1 else { return nil }
    return Int64(timegm(&tmv))
}

/// OCSP stapling for the whole process (`[[certificates]] ocsp`): one ``OCSPCertificate`` per served certificate,
/// shared by the context sets of successive reloads (an unchanged certificate keeps its staple across a reload),
/// and the fetch/validate work a background thread drives through ``runDue(now:)``.
///
/// The handshake path only reads a slot (see ``OCSPStapleSlot``); everything here runs on the stapler's thread
/// (fetches, which block on the network) or on the control thread (registration at reload).
public final class OCSPStapler: Sendable {
    /// How long a replaced staple stays allocated after it was swapped out (see ``OCSPStapleSlot``).
    static let retireGraceSeconds: Int64 = 60
    /// HTTP timeout of one fetch (connect + request + response), seconds.
    public let fetchTimeoutSeconds: Int32
    /// Largest response body accepted.
    static let maxResponseBytes = 64 * 1024

    private struct Registry {
        /// Every certificate known, by identity (context sets being built or alive).
        var known: [String: OCSPCertificate] = [:]
        /// The certificates of the context set in service (what is fetched and reported).
        var active: [OCSPCertificate] = []
        /// Staples swapped out, with the monotonic second they were, released after the grace period.
        var retired: [(OCSPStaple, Int64)] = []
        /// File-mode certificates to (re)read at the next pass (activation = start or reload).
        var filesToRead: [OCSPCertificate] = []
    }
    private let registry = Mutex(Registry())
    private let onEvent: @Sendable (OCSPEvent) -> Void

    public init(fetchTimeoutSeconds: Int32 = 10, onEvent: @escaping @Sendable (OCSPEvent) -> Void) {
        self.fetchTimeoutSeconds = fetchTimeoutSeconds
        self.onEvent = onEvent
    }

    /// The entry for a certificate being loaded into a context set (an existing one when the same certificate was
    /// already served with the same source).
    func entry(for cert: LoadedCertificate, source: OCSPSource) -> OCSPCertificate {
        let candidate = OCSPCertificate(cert, source: source)
        return registry.withLock { r in
            if let e = r.known[candidate.identity] { return e }
            r.known[candidate.identity] = candidate
            return candidate
        }
    }

    /// Puts a context set's certificates in service (at start and after a reload was published): they are fetched
    /// and reported from now on; file sources are re-read; certificates no longer served are forgotten.
    public func activate(_ set: TLSContextSet) {
        let entries = set.ocspCertificates
        registry.withLock { r in
            r.active = entries
            var keep: [String: OCSPCertificate] = [:]
            for e in entries { keep[e.identity] = e }
            r.known = keep
            r.filesToRead = entries.filter { if case .file = $0.source { return true } else { return false } }
        }
    }

    /// The certificates in service, for `/certificates` and metrics.
    public var certificates: [OCSPCertificate] { registry.withLock { $0.active } }

    /// One pass of the stapler's thread: reads files after an activation, fetches what is due, expires staples
    /// whose time is up, releases retired staples. Blocks on the network for due fetches (never on a worker).
    public func runDue(now: Int64) {
        let (active, files) = registry.withLock { r -> ([OCSPCertificate], [OCSPCertificate]) in
            let f = r.filesToRead
            r.filesToRead = []
            let mono = Self.monotonicSeconds()
            r.retired.removeAll { $0.1 + Self.retireGraceSeconds <= mono }
            return (r.active, f)
        }
        for e in files { readFile(e, now: now) }
        for e in active {
            let (due, expired) = e.state.withLock { s -> (Bool, Bool) in
                let expired =
                    s.status == .good
                    && s.expiry.map { !OCSPSchedule.isStapleable(expiry: $0, now: now) }
                        ?? false
                if expired { s.status = .expired }
                guard case .auto = e.source, s.status != .noResponder, s.status != .noIssuer else {
                    return (false, expired)
                }
                return (s.nextRefresh.map { $0 <= now } ?? true, expired)
            }
            if expired {
                publish(e, nil, now: now)
                onEvent(.expired(certificate: e.displayName))
            }
            if due { fetch(e, now: now) }
        }
    }

    private func publish(_ e: OCSPCertificate, _ staple: OCSPStaple?, now: Int64) {
        if let old = e.slot.exchange(staple) {
            let mono = Self.monotonicSeconds()
            registry.withLock { $0.retired.append((old, mono)) }
        }
    }

    /// Retirement is timed on the monotonic clock: a wall-clock step must not release a staple early.
    private static func monotonicSeconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec)
    }

    // MARK: sources

    private func readFile(_ e: OCSPCertificate, now: Int64) {
        guard case .file(let path) = e.source else { return }
        guard let der = Self.readAll(path) else {
            fail(e, "cannot read \(path): \(String(cString: strerror(errno)))", now: now, retry: false)
            return
        }
        accept(e, der: der, now: now, source: path, scheduleRefresh: false)
    }

    private func fetch(_ e: OCSPCertificate, now: Int64) {
        guard let url = e.responderURL else {
            e.state.withLock {
                $0.status = .noResponder
                $0.nextRefresh = nil
            }
            onEvent(
                .unavailable(
                    certificate: e.displayName,
                    status: .noResponder,
                    reason: "no OCSP responder URL in the certificate (Authority Information Access)"
                )
            )
            return
        }
        guard let issuer = e.issuer else {
            e.state.withLock {
                $0.status = .noIssuer
                $0.nextRefresh = nil
            }
            onEvent(
                .unavailable(
                    certificate: e.displayName,
                    status: .noIssuer,
                    reason: "the issuer certificate is not in the chain file: cannot build an OCSP request"
                )
            )
            return
        }
        e.state.withLock { $0.lastAttempt = now }
        switch Self.post(url: url, leaf: e.leaf, issuer: issuer, timeout: fetchTimeoutSeconds) {
        case .failure(let why): fail(e, "\(url): \(why)", now: now, retry: true)
        case .success(let der): accept(e, der: der, now: now, source: url, scheduleRefresh: true)
        }
    }

    /// Validates `der` for `e` and publishes it (good), withdraws the staple (revoked), or records a failure.
    private func accept(_ e: OCSPCertificate, der: [UInt8], now: Int64, source: String, scheduleRefresh: Bool) {
        guard let issuer = e.issuer else {
            fail(
                e,
                "the issuer certificate is not in the chain file: cannot check the response",
                now: now,
                retry: false
            )
            return
        }
        switch OCSPValidation.validate(der: der, leaf: e.leaf, issuer: issuer, chain: e.chain, now: now) {
        case .invalid(let why):
            fail(e, "\(source): \(why)", now: now, retry: scheduleRefresh)
        case .good(let thisUpdate, let nextUpdate):
            let expiry = OCSPSchedule.expiry(thisUpdate: thisUpdate, nextUpdate: nextUpdate)
            guard OCSPSchedule.isStapleable(expiry: expiry, now: now) else {
                fail(e, "\(source): the response expired (nextUpdate in the past)", now: now, retry: scheduleRefresh)
                return
            }
            publish(e, OCSPStaple(der: der, thisUpdate: thisUpdate, expiry: expiry), now: now)
            e.state.withLock {
                $0.status = .good
                $0.thisUpdate = thisUpdate
                $0.nextUpdate = nextUpdate
                $0.expiry = expiry
                $0.consecutiveFailures = 0
                $0.lastError = nil
                $0.nextRefresh =
                    scheduleRefresh
                    ? OCSPSchedule.refreshAfterSuccess(now: now, thisUpdate: thisUpdate, nextUpdate: nextUpdate) : nil
            }
            onEvent(
                .stapled(certificate: e.displayName, thisUpdate: thisUpdate, nextUpdate: nextUpdate, source: source)
            )
        case .revoked(let thisUpdate, let nextUpdate, let revokedAt):
            publish(e, nil, now: now)
            e.state.withLock {
                $0.status = .revoked
                $0.thisUpdate = thisUpdate
                $0.nextUpdate = nextUpdate
                $0.expiry = nil
                $0.consecutiveFailures = 0
                $0.lastError = "revoked"
                $0.nextRefresh =
                    scheduleRefresh
                    ? OCSPSchedule.refreshAfterSuccess(now: now, thisUpdate: thisUpdate, nextUpdate: nextUpdate) : nil
            }
            onEvent(.revoked(certificate: e.displayName, revokedAt: revokedAt, source: source))
        case .unknown:
            // The responder does not know the certificate: treat as a failure (keep a good staple while it lasts).
            fail(
                e,
                "\(source): the responder answered \"unknown\" for this certificate",
                now: now,
                retry: scheduleRefresh
            )
        }
    }

    /// A failed fetch or file: the good staple held (if any) stays until it expires; retry with backoff.
    private func fail(_ e: OCSPCertificate, _ why: String, now: Int64, retry: Bool) {
        let (keeping, next) = e.state.withLock { s -> (Int64?, Int64?) in
            s.consecutiveFailures += 1
            s.totalFailures += 1
            s.lastError = why
            let held = s.status == .good ? s.expiry : nil
            // Without a good staple: a file that fails is "invalid" whatever came before; a failed fetch keeps saying
            // "expired"/"revoked" if that is what the last known state was.
            if held == nil && (!retry || (s.status != .expired && s.status != .revoked)) {
                s.status = retry ? .fetchFailed : .invalid
            }
            s.nextRefresh =
                retry
                ? OCSPSchedule.retryAfterFailure(now: now, failures: s.consecutiveFailures, heldExpiry: held) : nil
            return (held, s.nextRefresh)
        }
        if keeping == nil, case .file = e.source { publish(e, nil, now: now) }
        onEvent(.failed(certificate: e.displayName, error: why, keeping: keeping, retryAt: next))
    }

    private static func readAll(_ path: String) -> [UInt8]? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = buf.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, f) }
            if n <= 0 { break }
            out += buf[0..<n]
            if out.count > maxResponseBytes { return nil }
        }
        return out
    }

    enum FetchResult {
        case success([UInt8])
        case failure(String)
    }

    /// POSTs an OCSP request for `leaf` to `url` (plain HTTP, RFC 6960 appendix A) with OpenSSL's HTTP client and
    /// returns the response body. Blocking, bounded by `timeout` seconds: stapler thread only.
    static func post(url: String, leaf: OpaquePointer, issuer: OpaquePointer, timeout: Int32) -> FetchResult {
        var useTLS: Int32 = 0
        var host: UnsafeMutablePointer<CChar>?
        var port: UnsafeMutablePointer<CChar>?
        var path: UnsafeMutablePointer<CChar>?
        guard OSSL_HTTP_parse_url(url, &useTLS, nil, &host, &port, nil, &path, nil, nil) == 1 else {
            ERR_clear_error()
            return .failure("cannot parse the responder URL")
        }
        defer {
            cps_OPENSSL_free(host)
            cps_OPENSSL_free(port)
            cps_OPENSSL_free(path)
        }
        guard useTLS == 0 else { return .failure("https OCSP responders are not supported (RFC 6960 uses http)") }
        guard let id = OCSP_cert_to_id(EVP_sha1(), leaf, issuer), let req = OCSP_REQUEST_new() else {
            return .failure("cannot build the OCSP request")
        }
        defer { OCSP_REQUEST_free(req) }
        guard OCSP_request_add0_id(req, id) != nil else {
            OCSP_CERTID_free(id)
            return .failure("cannot build the OCSP request")
        }
        var derPtr: UnsafeMutablePointer<UInt8>? = nil
        let n = i2d_OCSP_REQUEST(req, &derPtr)
        guard n > 0, let derPtr else { return .failure("cannot encode the OCSP request") }
        defer { cps_OPENSSL_free(derPtr) }
        guard let reqBio = BIO_new_mem_buf(derPtr, n) else { return .failure("out of memory") }
        defer { BIO_free(reqBio) }
        // proxy "" = no proxy (not the environment's http_proxy): the responder is reached directly.
        guard
            let rbio = OSSL_HTTP_transfer(
                nil,
                host,
                port,
                path,
                0,
                "",
                nil,
                nil,
                nil,
                nil,
                nil,
                0,
                nil,
                "application/ocsp-request",
                reqBio,
                "application/ocsp-response",
                1,
                maxResponseBytes,
                timeout,
                0
            )
        else {
            return .failure(TLSError("no response").message)
        }
        defer { BIO_free_all(rbio) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 8192)
        while true {
            let r = buf.withUnsafeMutableBytes { BIO_read(rbio, $0.baseAddress, Int32($0.count)) }
            if r <= 0 { break }
            out += buf[0..<Int(r)]
            if out.count > maxResponseBytes { return .failure("response larger than \(maxResponseBytes) bytes") }
        }
        ERR_clear_error()
        return out.isEmpty ? .failure("empty response") : .success(out)
    }
}

/// Checks an OCSP response for one certificate with OpenSSL's OCSP API.
enum OCSPValidation {
    enum Verdict: Equatable {
        case good(thisUpdate: Int64, nextUpdate: Int64?)
        case revoked(thisUpdate: Int64, nextUpdate: Int64?, revokedAt: Int64?)
        case unknown
        case invalid(String)
    }

    /// Accepted clock skew for `thisUpdate` in the future (a responder's clock a little ahead).
    static let skewSeconds = 300

    /// `der` must be a successful basic response, signed by the issuer (or a responder it delegated to, with the
    /// OCSP-signing EKU), whose single response matches `leaf`'s certificate ID (SHA-1, as in the request) and
    /// whose thisUpdate/nextUpdate are valid now (`OCSP_check_validity`).
    static func validate(
        der: [UInt8],
        leaf: OpaquePointer,
        issuer: OpaquePointer,
        chain: [OpaquePointer],
        now: Int64
    ) -> Verdict {
        defer { ERR_clear_error() }
        let resp: OpaquePointer? = der.withUnsafeBufferPointer { b in
            var p: UnsafePointer<UInt8>? = b.baseAddress
            return d2i_OCSP_RESPONSE(nil, &p, b.count)
        }
        guard let resp else { return .invalid("not a DER OCSP response") }
        defer { OCSP_RESPONSE_free(resp) }
        let rs = OCSP_response_status(resp)
        guard rs == OCSP_RESPONSE_STATUS_SUCCESSFUL else {
            return .invalid("responder status \(String(cString: OCSP_response_status_str(Int(rs))))")
        }
        guard let basic = OCSP_response_get1_basic(resp) else { return .invalid("not a basic OCSP response") }
        defer { OCSP_BASICRESP_free(basic) }
        // Trust anchors: the configured chain (the issuer and any intermediates), partial chains allowed, so a
        // delegated responder certificate must chain to the issuer; OCSP_TRUSTOTHER trusts a signer found among them.
        guard let store = X509_STORE_new(), let certs = cps_sk_X509_new_null() else { return .invalid("out of memory") }
        defer {
            X509_STORE_free(store)
            OPENSSL_sk_free(certs)
        }
        for c in chain {
            X509_STORE_add_cert(store, c)
            _ = cps_sk_X509_push(certs, c)
        }
        X509_STORE_set_flags(store, UInt(X509_V_FLAG_PARTIAL_CHAIN))
        guard OCSP_basic_verify(basic, certs, store, UInt(OCSP_TRUSTOTHER)) == 1 else {
            return .invalid(TLSError("signature does not verify against the issuer chain").message)
        }
        guard let id = OCSP_cert_to_id(EVP_sha1(), leaf, issuer) else { return .invalid("cannot compute the cert ID") }
        defer { OCSP_CERTID_free(id) }
        var status: Int32 = -1
        var reason: Int32 = -1
        var revtime: UnsafeMutablePointer<ASN1_GENERALIZEDTIME>? = nil
        var thisupd: UnsafeMutablePointer<ASN1_GENERALIZEDTIME>? = nil
        var nextupd: UnsafeMutablePointer<ASN1_GENERALIZEDTIME>? = nil
        guard OCSP_resp_find_status(basic, id, &status, &reason, &revtime, &thisupd, &nextupd) == 1 else {
            return .invalid("the response does not cover this certificate (no matching OCSP_CERTID)")
        }
        guard OCSP_check_validity(thisupd, nextupd, skewSeconds, -1) == 1 else {
            return .invalid("thisUpdate/nextUpdate not valid now (OCSP_check_validity)")
        }
        guard let thisUpdate = asn1Seconds(thisupd) else { return .invalid("unreadable thisUpdate") }
        let nextUpdate = asn1Seconds(nextupd)
        switch status {
        case V_OCSP_CERTSTATUS_GOOD: return .good(thisUpdate: thisUpdate, nextUpdate: nextUpdate)
        case V_OCSP_CERTSTATUS_REVOKED:
            return .revoked(thisUpdate: thisUpdate, nextUpdate: nextUpdate, revokedAt: asn1Seconds(revtime))
        default: return .unknown
        }
    }
}
