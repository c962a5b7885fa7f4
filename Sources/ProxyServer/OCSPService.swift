import Glibc
import Logging
import Metrics
import ProxyConfig
import ProxyCore
import ProxyEventLoop
import ProxyTLS
import Synchronization

/// OCSP stapling in the server (`[[certificates]] ocsp`): the stapler's background thread (fetches block on the
/// network, so never on a worker or the control loop), its log lines and metrics, and `GET /certificates`.
///
/// The stapler itself (`ProxyTLS.OCSPStapler`) fetches, validates with OpenSSL's OCSP API and publishes staples the
/// handshake reads without a lock; the refresh schedule is the pure `OCSPSchedule`.
final class OCSPService: @unchecked Sendable {
    // SAFETY: `thread` is set and joined on the control thread only; everything else is immutable or Sendable.
    let stapler: OCSPStapler
    private let stopping = Atomic<Bool>(false)
    private var thread: OSThread?
    /// The thread's wait between passes (OCSP times are whole seconds): ended early by new certificates and stop.
    private let sleeper = Sleeper()
    static let passInterval: Int64 = 500_000_000
    private let metrics = Mutex<[String: CertificateMetrics]>([:])

    private struct CertificateMetrics {
        let age: Gauge
        let valid: Gauge
        let nextRefresh: Gauge
        let failures: Counter
        var failuresReported = 0
    }

    init(logger: Logger) {
        stapler = OCSPStapler { event in Self.log(event, logger) }
    }

    /// The `TLSSettings` source for a configured certificate.
    static func source(_ s: OCSPStapling) -> OCSPSource {
        switch s {
        case .auto: return .auto
        case .off: return .off
        case .file(let p): return .file(p)
        }
    }

    /// Puts the certificates of `tls` in service and starts the thread (first call).
    func activate(_ tls: TLSContextSet) {
        stapler.activate(tls)
        guard thread == nil else {
            sleeper.wake()  // the new certificates' files and fetches are due now
            return
        }
        thread = OSThread { [self] in
            while !stopping.load(ordering: .relaxed) {
                let now = Int64(time(nil))
                stapler.runDue(now: now)
                updateMetrics(now: now)
                sleeper.sleep(nanoseconds: Self.passInterval)
            }
        }
    }

    /// Stops and joins the thread (a fetch in progress finishes first, bounded by its timeout).
    func stop() {
        stopping.store(true, ordering: .relaxed)
        sleeper.wake()
        thread?.join()
        thread = nil
    }

    private func updateMetrics(now: Int64) {
        let certs = stapler.certificates
        metrics.withLock { m in
            for c in certs where c.source != .off {
                let r = c.report
                let key = c.fingerprint + "|" + c.keyType
                var cm =
                    m[key]
                    ?? {
                        let d = [("certificate", c.names.first ?? ""), ("key_type", c.keyType)]
                        return CertificateMetrics(
                            age: Gauge(label: "edgeproxy_ocsp_staple_age_seconds", dimensions: d),
                            valid: Gauge(label: "edgeproxy_ocsp_staple_valid", dimensions: d),
                            nextRefresh: Gauge(label: "edgeproxy_ocsp_next_refresh_seconds", dimensions: d),
                            failures: Counter(label: "edgeproxy_ocsp_fetch_failures_total", dimensions: d)
                        )
                    }()
                let stapled = r.status == .good
                cm.valid.record(stapled ? 1 : 0)
                cm.age.record(stapled ? Double(max(0, now - (r.thisUpdate ?? now))) : 0)
                cm.nextRefresh.record(r.nextRefresh.map { Double(max(0, $0 - now)) } ?? -1)
                if r.totalFailures > cm.failuresReported {
                    cm.failures.increment(by: r.totalFailures - cm.failuresReported)
                    cm.failuresReported = r.totalFailures
                }
                m[key] = cm
            }
        }
    }

    private static func log(_ event: OCSPEvent, _ logger: Logger) {
        switch event {
        case .stapled(let cert, let thisUpdate, let nextUpdate, let source):
            logger.info(
                "OCSP: stapling a good response",
                metadata: [
                    "certificate": "\(cert)", "source": "\(source)", "this_update": "\(isoTime(thisUpdate) ?? "-")",
                    "next_update": "\(nextUpdate.flatMap(isoTime) ?? "none")",
                ]
            )
        case .revoked(let cert, let at, let source):
            logger.warning(
                "OCSP: certificate is REVOKED: not stapling",
                metadata: [
                    "certificate": "\(cert)", "source": "\(source)", "revoked_at": "\(at.flatMap(isoTime) ?? "-")",
                ]
            )
        case .failed(let cert, let error, let keeping, let retry):
            logger.warning(
                "OCSP: \(keeping == nil ? "no staple" : "keeping the last good staple until it expires")",
                metadata: [
                    "certificate": "\(cert)", "error": "\(error)",
                    "staple_expires": "\(keeping.flatMap(isoTime) ?? "-")",
                    "retry_at": "\(retry.flatMap(isoTime) ?? "-")",
                ]
            )
        case .expired(let cert):
            logger.warning(
                "OCSP: the stapled response expired: no longer stapling",
                metadata: ["certificate": "\(cert)"]
            )
        case .unavailable(let cert, let status, let reason):
            logger.notice(
                "OCSP: not stapling",
                metadata: ["certificate": "\(cert)", "status": "\(status.rawValue)", "reason": "\(reason)"]
            )
        }
    }

    static func isoTime(_ secs: Int64) -> String? {
        var t = time_t(secs)
        var tmv = tm()
        guard gmtime_r(&t, &tmv) != nil else { return nil }
        var buf = [CChar](repeating: 0, count: 32)
        strftime(&buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tmv)
        return buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// `GET /certificates`: each certificate in service with its names, expiry, key type and staple state.
    func certificatesJSON() -> [UInt8] {
        let now = Int64(time(nil))
        var w = JSONWriter()
        w.beginObject()
        w.beginArray("certificates")
        for c in stapler.certificates {
            let r = c.report
            w.beginObject()
            w.beginArray("names")
            for n in c.names { w.element(n) }
            w.endArray()
            w.field("key_type", c.keyType)
            w.field("not_after", c.notAfter.flatMap(Self.isoTime))
            w.field("sha256", c.fingerprint)
            w.beginObject("ocsp")
            w.field("source", Self.label(c.source))
            w.field("responder", c.responderURL)
            w.field("status", r.status.rawValue)
            w.field("stapled", r.status == .good)
            w.field("this_update", r.thisUpdate.flatMap(Self.isoTime))
            w.field("next_update", r.nextUpdate.flatMap(Self.isoTime))
            Self.optionalInt(&w, "staple_age_seconds", r.status == .good ? r.thisUpdate.map { now - $0 } : nil)
            w.field("next_refresh", r.nextRefresh.flatMap(Self.isoTime))
            Self.optionalInt(&w, "next_refresh_in_seconds", r.nextRefresh.map { max(0, $0 - now) })
            w.field("fetch_failures", r.totalFailures)
            w.field("last_error", r.lastError)
            w.endObject()
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return w.bytes + [10]
    }

    private static func optionalInt(_ w: inout JSONWriter, _ k: StaticString, _ v: Int64?) {
        if let v { w.field(k, Int(v)) } else { w.field(k, nil as String?) }
    }

    private static func label(_ s: OCSPSource) -> String {
        switch s {
        case .off: return "off"
        case .auto: return "auto"
        case .file(let p): return "file:\(p)"
        }
    }
}
