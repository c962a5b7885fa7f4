import Glibc
import Logging
import Metrics
import ProxyConfig
import ProxyCore
import ProxyDetector
import ProxyEventLoop
import ProxyTicketStore
import ProxyTickets

/// What workers read from the detector: the mode and the quarantined fingerprint keys (immutable; swapped whole).
final class DetectorPublished: Sendable {
    let mode: DetectorMode
    let quarantined: Set<UInt64>
    init(mode: DetectorMode, quarantined: Set<UInt64>) {
        self.mode = mode
        self.quarantined = quarantined
    }
}

/// The control thread's side of the detector (issue #14): drains every worker's observation queue into the one
/// `Detector`, logs new flags once, publishes the quarantine set to the workers, keeps the metrics and answers
/// `GET /detector`. Control thread only, except `published` (a SnapshotBox) and the queues (SPSC rings).
final class DetectorRuntime: @unchecked Sendable {
    // SAFETY: everything but `published` and the queues' producer side is used only on the control thread.
    let published: SnapshotBox<DetectorPublished>
    private(set) var detector: Detector
    private var queues: [ObservationQueue] = []
    private var messengers: [LoopMessenger] = []
    private let logger: Logger
    private var publishedGeneration: UInt64 = 0
    private var mode: DetectorMode
    // Metrics: totals (bounded labels), plus one gauge per flagged fingerprint.
    private var handshakeCounters: [[Counter]] = []
    private var reportedTotals: [[Int]] = []
    private let fallbacks = Counter(label: "edgeproxy_detector_fallbacks_total")
    private var reportedFallbacks = 0
    private let dropped = Counter(label: "edgeproxy_detector_dropped_observations_total")
    private var reportedDropped = 0
    private let tracked = Gauge(label: "edgeproxy_detector_fingerprints")
    private let flaggedGauge = Gauge(label: "edgeproxy_detector_flagged")
    private let quarantinedGauge = Gauge(label: "edgeproxy_detector_quarantined")
    private var perFlagged: [UInt64: Gauge] = [:]
    /// `[detector] state_file` (nil: flags are not kept across restarts).
    private var stateFile: String?
    private var savedGeneration: UInt64 = 0
    /// The fleet store (`[redis]` configured, detector not off): own flags out, other instances' flags in.
    private var fleet: RedisFlagSync?
    /// What was last handed to the fleet: own flag key → expiry (a change is handed over again).
    private var sharedExpiry: [UInt64: Double] = [:]
    private var fleetImported = 0
    private let fleetUp = Gauge(label: "edgeproxy_detector_fleet_up")
    private let fleetImportedCounter = Counter(label: "edgeproxy_detector_fleet_imported_total")

    init(config: ProxyConfiguration.Detector, logger: Logger) {
        let s = Self.settings(config)
        detector = Detector(settings: s)
        mode = s.mode
        self.logger = logger
        published = SnapshotBox(DetectorPublished(mode: s.mode, quarantined: []))
        stateFile = config.stateFile
        restore()
        for k in HandshakeObservation.Kind.allCases {
            var row: [Counter] = []
            for r in HandshakeObservation.Result.allCases {
                row.append(
                    Counter(
                        label: "edgeproxy_detector_handshakes_total",
                        dimensions: [("kind", "\(k)"), ("result", "\(r)")]
                    )
                )
            }
            handshakeCounters.append(row)
            reportedTotals.append(Array(repeating: 0, count: row.count))
        }
    }

    static func settings(_ c: ProxyConfiguration.Detector) -> DetectorSettings {
        var s = DetectorSettings()
        s.mode = DetectorMode(rawValue: c.mode.rawValue) ?? .observe
        s.capacity = c.fingerprints
        s.halfLife = Double(c.window.milliseconds) / 1000
        s.minAborts = Double(c.minAborts)
        s.minAbortRatio = Double(c.minAbortPercent) / 100
        s.baselineFactor = Double(c.baselineFactor)
        s.minPrefixes = c.minPrefixes
        s.fallbackWindow = Double(c.fallbackWindow.milliseconds) / 1000
        s.quarantineTTL = Double(c.quarantineTTL.milliseconds) / 1000
        s.maxFlagged = c.maxQuarantined
        return s
    }

    /// A new worker's queue (called on the main thread before the workers start); `messenger` wakes the worker
    /// when the quarantine set changes.
    func makeQueue(messenger: LoopMessenger) -> ObservationQueue {
        let q = ObservationQueue(capacity: 8192)
        queues.append(q)
        messengers.append(messenger)
        return q
    }

    /// Reload: new thresholds and mode apply to the evidence gathered so far (the caller wakes the workers).
    func update(config: ProxyConfiguration.Detector) {
        let s = Self.settings(config)
        detector.update(settings: s)
        mode = s.mode
        _ = publishIfChanged(force: true)
    }

    /// Once a second (and before answering the admin API): drain, expire, publish (waking the workers so idle
    /// ones apply a new quarantine set at once), metrics.
    func tick() {
        let wall = Double(Timestamp.wallClockNow().nanosecondsSinceEpoch) / 1e9
        for q in queues {
            q.drain { o in
                if let f = detector.record(o, wall: wall) { announce(f) }
            }
        }
        for k in detector.expire(wall: wall) {
            perFlagged[k]?.record(0)
            perFlagged[k] = nil
        }
        syncFleet(wall: wall)
        if publishIfChanged(force: false) {
            for m in messengers { m.send {} }
        }
        save()
        reportMetrics()
    }

    // MARK: fleet

    /// Starts sharing flags through `[redis]` (when configured and the detector is on). `wake` runs on the sync
    /// thread when other instances' flags changed: it must get `tick()` called on the control thread soon.
    func startFleet(config: ProxyConfiguration, wake: @escaping @Sendable () -> Void) throws {
        guard mode != .off, let r = config.redis, let url = r.url else { return }
        let sealer = try FleetFlagSealer(wrapping: ConfigMapping.ticketKeyWrapper(r))
        let logger = self.logger
        let rejected = RejectedCounters()
        let onEvent: @Sendable (RedisFlagSync.Event) -> Void = { event in
            switch event {
            case .up: logger.notice("detector fleet store reachable", metadata: ["redis": "\(url)"])
            case .down(let why):
                logger.warning(
                    "detector fleet store unreachable: keeping this instance's flags, retrying with backoff",
                    metadata: ["redis": "\(url)", "error": "\(why)"]
                )
            case .rejected(let slot, let reason):
                rejected.counter(reason.kind).increment()
                logger.warning(
                    "detector fleet entry rejected (not authenticated by the wrapping key): ignored",
                    metadata: ["key": "\(slot)", "reason": "\(reason)"]
                )
            }
        }
        let sync = RedisFlagSync(
            endpoint: ConfigMapping.endpoint(url),
            connectTimeoutNanoseconds: r.connectTimeout.milliseconds * 1_000_000,
            commandTimeoutNanoseconds: r.commandTimeout.milliseconds * 1_000_000,
            pollNanoseconds: max(1, r.pollInterval.milliseconds) * 1_000_000,
            prefix: r.keyPrefix + "detector:",
            sealer: sealer,
            maxEntries: max(detector.settings.maxFlagged, 1000),
            onEvent: onEvent,
            onImported: wake
        )
        fleet = sync
        sync.start()
        logger.info(
            "detector: sharing flags through redis",
            metadata: ["redis": "\(url)", "prefix": "\(sync.prefix)", "poll_interval": "\(r.pollInterval)"]
        )
    }

    func stopFleet() { fleet?.stop() }

    /// Control thread: adopt other instances' flags (caps, expiry and local precedence as `Detector.adopt`), and
    /// hand this instance's own flags to the sync thread when they changed.
    private func syncFleet(wall: Double) {
        guard let fleet else { return }
        if let entries = fleet.takeImported() {
            for e in entries {
                var f = FlaggedFingerprint(
                    key: DetectorKey.of(ja4: e.ja4),
                    labels: FingerprintLabels(ja4: e.ja4, ja3Hash: e.ja3Hash, tag: e.tag),
                    flaggedAt: Double(e.flaggedAt.nanosecondsSinceEpoch) / 1e9,
                    expiresAt: Double(e.expiresAt.nanosecondsSinceEpoch) / 1e9,
                    aborts: e.aborts,
                    abortRate: e.abortRate,
                    baselineAbortRate: e.baselineAbortRate,
                    prefixes: e.prefixes,
                    fallbacks: e.fallbacks,
                    local: false
                )
                f.fleetInstance = e.instance
                if detector.adopt(f, wall: wall) {
                    fleetImported += 1
                    fleetImportedCounter.increment()
                    let effect = mode == .quarantine ? "quarantined" : "observe mode: nothing changes"
                    logger.notice(
                        "detector applied a flag raised by another instance (\(effect))",
                        metadata: ["ja4": "\(e.ja4)", "flagged_by": "\(e.instance)"]
                    )
                }
            }
        }
        var mine: [UInt64: Double] = [:]
        for f in detector.flagged.values where f.local { mine[f.key] = f.expiresAt }
        guard mine != sharedExpiry else { return }
        sharedExpiry = mine
        let instance = Self.instanceName
        fleet.share(
            detector.flagged.values.filter(\.local).map { f in
                FleetFlagEntry(
                    ja4: f.labels.ja4,
                    ja3Hash: f.labels.ja3Hash,
                    tag: f.labels.tag,
                    flaggedAt: Timestamp(nanosecondsSinceEpoch: Int64(f.flaggedAt * 1e9)),
                    expiresAt: Timestamp(nanosecondsSinceEpoch: Int64(f.expiresAt * 1e9)),
                    aborts: f.aborts,
                    abortRate: f.abortRate,
                    baselineAbortRate: f.baselineAbortRate,
                    prefixes: f.prefixes,
                    fallbacks: f.fallbacks,
                    instance: instance
                )
            }
        )
    }

    /// `host:pid`, shown beside flags other instances learn from this one.
    static let instanceName: String = {
        var buf = [CChar](repeating: 0, count: 256)
        let host = gethostname(&buf, 255) == 0 ? buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } : "?"
        return "\(host):\(getpid())"
    }()

    /// One rejected-entries counter per reason (bounded: malformed, foreign, tampered).
    private final class RejectedCounters: Sendable {
        private let byKind: [String: Counter] = Dictionary(
            uniqueKeysWithValues: ["malformed", "foreign", "tampered"].map {
                ($0, Counter(label: "edgeproxy_detector_fleet_rejected_entries_total", dimensions: [("reason", $0)]))
            }
        )
        func counter(_ kind: String) -> Counter { byKind[kind] ?? byKind["malformed"]! }
    }

    /// Flags kept by a previous run (expired ones dropped); published before the workers start.
    private func restore() {
        guard let path = stateFile, let text = DetectorStateFile.read(path) else { return }
        let wall = Double(Timestamp.wallClockNow().nanosecondsSinceEpoch) / 1e9
        let (flags, skipped) = DetectorStateFile.parse(text)
        var restored = 0
        for f in flags where detector.adopt(f, wall: wall) { restored += 1 }
        if skipped > 0 { logger.warning("detector state file \(path): \(skipped) unreadable line(s) skipped") }
        if restored > 0 {
            logger.notice("detector: \(restored) flagged fingerprint(s) restored from \(path)")
        }
        savedGeneration = detector.flaggedGeneration
        _ = publishIfChanged(force: true)
    }

    /// Rewrites the state file when the flags changed.
    private func save() {
        guard let path = stateFile, detector.flaggedGeneration != savedGeneration else { return }
        if let e = DetectorStateFile.write(DetectorStateFile.render(Array(detector.flagged.values)), to: path) {
            logger.error("detector state file: \(e)")
            return
        }
        savedGeneration = detector.flaggedGeneration
    }

    private func announce(_ f: FlaggedFingerprint) {
        let action =
            mode == .quarantine
            ? "quarantined: stale tickets get a full handshake until the flag expires"
            : "observe mode: nothing changes"
        logger.warning(
            "detector flagged a renewal-intolerant client fingerprint (\(action))",
            metadata: [
                "ja4": "\(f.labels.ja4)", "ja3": "\(f.labels.ja3Hash)",
                "aborts_after_inline_renewal": "\(Self.fmt(f.aborts))",
                "abort_rate": "\(Self.fmt(f.abortRate))", "baseline_abort_rate": "\(Self.fmt(f.baselineAbortRate))",
                "client_prefixes": "\(f.prefixes)", "fallbacks": "\(Self.fmt(f.fallbacks))",
            ]
        )
    }

    private func publishIfChanged(force: Bool) -> Bool {
        guard force || detector.flaggedGeneration != publishedGeneration else { return false }
        publishedGeneration = detector.flaggedGeneration
        published.publish(DetectorPublished(mode: mode, quarantined: detector.quarantinedKeys))
        return true
    }

    private func reportMetrics() {
        let t = detector.totals
        for k in t.indices {
            for r in t[k].indices where t[k][r] > reportedTotals[k][r] {
                handshakeCounters[k][r].increment(by: t[k][r] - reportedTotals[k][r])
                reportedTotals[k][r] = t[k][r]
            }
        }
        if detector.totalFallbacks > reportedFallbacks {
            fallbacks.increment(by: detector.totalFallbacks - reportedFallbacks)
            reportedFallbacks = detector.totalFallbacks
        }
        let d = queues.reduce(0) { $0 + $1.dropped }
        if d > reportedDropped {
            dropped.increment(by: d - reportedDropped)
            reportedDropped = d
        }
        tracked.record(detector.entries.count)
        if let fleet { fleetUp.record(fleet.isUp == true ? 1 : 0) }
        flaggedGauge.record(detector.flagged.count)
        quarantinedGauge.record(mode == .quarantine ? detector.flagged.count : 0)
        for (k, f) in detector.flagged {
            let g: Gauge
            if let existing = perFlagged[k] {
                g = existing
            } else {
                g = Gauge(label: "edgeproxy_detector_flagged_renewal_aborts", dimensions: [("ja4", f.labels.ja4)])
                perFlagged[k] = g
            }
            g.record(detector.entries[k]?.renewalAborts ?? f.aborts)
        }
    }

    // MARK: GET /detector

    /// The JSON report: settings, totals, every flagged fingerprint, and the `limit` most suspicious tracked ones.
    func reportJSON(limit: Int = 100) -> [UInt8] {
        let s = detector.settings
        var w = JSONWriter(reserving: 4096)
        w.beginObject()
        w.field("mode", mode.rawValue)
        w.beginObject("thresholds")
        w.field("min_aborts", Int(s.minAborts))
        w.number("min_abort_ratio", s.minAbortRatio)
        w.number("baseline_factor", s.baselineFactor)
        w.field("min_prefixes", s.minPrefixes)
        w.number("window_half_life_seconds", s.halfLife)
        w.number("quarantine_ttl_seconds", s.quarantineTTL)
        w.field("max_flagged", s.maxFlagged)
        w.endObject()
        w.beginObject("totals")
        for k in HandshakeObservation.Kind.allCases {
            for r in HandshakeObservation.Result.allCases {
                w.key("\(k)_\(r)")
                w.appendInt(detector.totals[Int(k.rawValue)][Int(r.rawValue)])
                w.markValueWritten()
            }
        }
        w.field("fallbacks", detector.totalFallbacks)
        w.field("tracked_fingerprints", detector.entries.count)
        w.field("evictions", detector.evictions)
        w.field("flags_refused_by_cap", detector.flagsRefusedByCap)
        w.field("dropped_observations", queues.reduce(0) { $0 + $1.dropped })
        w.endObject()
        w.beginObject("fleet")
        w.field("enabled", fleet != nil)
        if let fleet {
            w.field("up", fleet.isUp == true)
            w.field("redis", "\(fleet.endpoint)")
            w.field("prefix", fleet.prefix)
            w.field("imported_flags", fleetImported)
            w.field("written_entries", fleet.writtenEntries)
            w.field("rejected_entries", fleet.rejectedEntries)
            w.field("cycles", fleet.completedCycles)
        }
        w.endObject()
        w.beginArray("flagged")
        for f in detector.flagged.values.sorted(by: { $0.flaggedAt < $1.flaggedAt }) {
            w.beginObject()
            w.field("ja4", f.labels.ja4)
            w.field("ja3_hash", f.labels.ja3Hash)
            w.field("tag", f.labels.tag)
            w.field("state", mode == .quarantine ? "quarantined" : "flagged")
            w.field("flagged_at", Self.iso(f.flaggedAt))
            w.field("expires_at", Self.iso(f.expiresAt))
            w.number("aborts_after_inline_renewal", f.aborts)
            w.number("abort_rate", f.abortRate)
            w.number("baseline_abort_rate", f.baselineAbortRate)
            w.field("distinct_client_prefixes", f.prefixes)
            w.number("fallbacks", f.fallbacks)
            w.field("source", f.local ? "local" : (f.fleetInstance != nil ? "fleet" : "restored"))
            if let by = f.fleetInstance { w.field("flagged_by", by) }
            w.endObject()
        }
        w.endArray()
        w.beginArray("fingerprints")
        let top = detector.entries.values.sorted {
            ($0.renewalAborts, $0.renewal + $0.baseline) > ($1.renewalAborts, $1.renewal + $1.baseline)
        }
        for e in top.prefix(limit) {
            w.beginObject()
            w.field("ja4", e.labels.ja4)
            w.field("ja3_hash", e.labels.ja3Hash)
            w.field("tag", e.labels.tag)
            w.field(
                "state",
                detector.flagged[e.key] == nil ? "observed" : (mode == .quarantine ? "quarantined" : "flagged")
            )
            w.number("renewal_handshakes", e.renewal)
            w.number("aborts_after_inline_renewal", e.renewalAborts)
            w.number("baseline_handshakes", e.baseline)
            w.number("baseline_aborts", e.baselineAborts)
            w.number("fallbacks", e.fallbacks)
            w.number("abort_rate", e.renewalAbortRate)
            w.number("baseline_abort_rate", e.baselineAbortRate)
            w.field("distinct_client_prefixes", e.distinctAbortPrefixes)
            w.field("total_handshakes", e.totalHandshakes)
            w.field("total_aborts_after_inline_renewal", e.totalRenewalAborts)
            w.field("total_fallbacks", e.totalFallbacks)
            w.field("first_seen", Self.iso(e.firstSeen))
            w.field("last_seen", Self.iso(e.lastSeen))
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return w.bytes + [10]
    }

    static func fmt(_ v: Double) -> String { "\((v * 1000).rounded() / 1000)" }

    static func iso(_ seconds: Double) -> String {
        var secs = time_t(seconds)
        var tmv = tm()
        gmtime_r(&secs, &tmv)
        var buf = [CChar](repeating: 0, count: 32)
        strftime(&buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tmv)
        return buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}

extension JSONWriter {
    /// A number rounded to three decimals.
    mutating func number(_ k: StaticString, _ v: Double) {
        raw(k, json: Array(DetectorRuntime.fmt(v.isFinite ? v : 0).utf8))
    }
}

extension EdgeProxyServer {
    /// `GET /detector`: drained first, so the answer includes every handshake finished so far.
    func detectorJSON() -> [UInt8] {
        guard let d = detector else { return Array("{\"mode\":\"off\"}\n".utf8) }
        d.tick()
        return d.reportJSON()
    }
}
