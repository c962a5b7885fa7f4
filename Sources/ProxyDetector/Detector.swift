// The detector's state machine (issue #14, §2–§3): pure, single-threaded (the control thread), clock passed in.
//
// Per fingerprint (JA4 key), with bounded memory: at most `capacity` fingerprints (the least active are evicted in
// batches), counts that decay exponentially with `halfLife` (the evidence window), and at most `maxPrefixes`
// distinct client prefixes remembered per fingerprint. A fingerprint is flagged when, within the window, its
// handshakes with an inline renewal were aborted without an alert
//   - at least `minAborts` times,
//   - at a rate of at least `minAbortRatio` of its renewal handshakes,
//   - at least `baselineFactor` times its abort rate on its other handshakes (networks drop connections anyway),
//   - from at least `minPrefixes` distinct /24 (IPv4) or /64 (IPv6) client prefixes (one address, or one network,
//     cannot flag a fingerprint alone).
// A flag lasts `quarantineTTL` (renewed while the evidence keeps coming); at most `maxFlagged` fingerprints are
// flagged at once (a full list flags nothing more: the cap bounds what an attacker can make the proxy do).
import Glibc
import ProxyCore

public enum DetectorMode: String, Sendable, CaseIterable {
    /// No observations are recorded.
    case off
    /// Observe and flag; nothing changes for clients.
    case observe
    /// Flagged fingerprints get `stale_ticket = full-handshake` (enforced policies still win).
    case quarantine
}

public struct DetectorSettings: Sendable, Equatable {
    public var mode: DetectorMode = .observe
    /// Fingerprints tracked at once (top-K by decayed activity).
    public var capacity = 10_000
    /// Half-life of every count, in seconds (the evidence window).
    public var halfLife: Double = 3600
    public var minAborts: Double = 10
    public var minAbortRatio: Double = 0.5
    public var baselineFactor: Double = 5
    public var minPrefixes = 3
    /// A reconnection from the same address within this many seconds of an abort, offering a lower highest version
    /// or TLS_FALLBACK_SCSV, counts as a fallback.
    public var fallbackWindow: Double = 5
    /// How long a flag lasts after the last evidence, seconds (default 7 days).
    public var quarantineTTL: Double = 7 * 86400
    /// Fingerprints flagged at once, at most.
    public var maxFlagged = 1000
    /// Distinct prefixes remembered per fingerprint.
    public var maxPrefixes = 64

    public init() {}
}

/// What the detector knows about one fingerprint.
public struct FingerprintEvidence: Sendable {
    public let key: UInt64
    public let labels: FingerprintLabels
    /// Decayed counts (as of `updated`).
    public var renewal: Double = 0
    public var renewalAborts: Double = 0
    public var baseline: Double = 0
    public var baselineAborts: Double = 0
    public var fallbacks: Double = 0
    /// Undecayed totals since the fingerprint was first tracked.
    public var totalRenewalAborts = 0
    public var totalFallbacks = 0
    public var totalHandshakes = 0
    /// Distinct client prefixes of renewal aborts, with the monotonic second each was last seen.
    var abortPrefixes: [UInt64: Double] = [:]
    /// Wall-clock seconds since the epoch.
    public var firstSeen: Double
    public var lastSeen: Double
    /// Monotonic seconds of the last decay.
    var updated: Double

    init(key: UInt64, labels: FingerprintLabels, wall: Double, mono: Double) {
        self.key = key
        self.labels = labels
        self.firstSeen = wall
        self.lastSeen = wall
        self.updated = mono
    }

    public var distinctAbortPrefixes: Int { abortPrefixes.count }
    public var renewalAbortRate: Double { renewal > 0 ? renewalAborts / renewal : 0 }
    public var baselineAbortRate: Double { baseline > 0 ? baselineAborts / baseline : 0 }
    var activity: Double { renewal + baseline }

    mutating func decay(to mono: Double, halfLife: Double) {
        let dt = mono - updated
        guard dt > 0 else { return }
        let f = exp2(-dt / halfLife)
        renewal *= f
        renewalAborts *= f
        baseline *= f
        baselineAborts *= f
        fallbacks *= f
        updated = mono
    }
}

/// A flagged fingerprint: its evidence when flagged and how long the flag lasts.
public struct FlaggedFingerprint: Sendable {
    public let key: UInt64
    public let labels: FingerprintLabels
    /// Wall-clock seconds.
    public var flaggedAt: Double
    public var expiresAt: Double
    /// The evidence as it stood when the flag was raised (or last renewed).
    public var aborts: Double
    public var abortRate: Double
    public var baselineAbortRate: Double
    public var prefixes: Int
    public var fallbacks: Double
    /// Whether the flag came from this instance's own observations (false: loaded from the fleet or a state file).
    public var local: Bool
    /// Learnt from another instance through the fleet store (`[redis]`): the instance that raised it.
    public var fleetInstance: String? = nil

    public init(
        key: UInt64,
        labels: FingerprintLabels,
        flaggedAt: Double,
        expiresAt: Double,
        aborts: Double,
        abortRate: Double,
        baselineAbortRate: Double,
        prefixes: Int,
        fallbacks: Double,
        local: Bool
    ) {
        self.key = key
        self.labels = labels
        self.flaggedAt = flaggedAt
        self.expiresAt = expiresAt
        self.aborts = aborts
        self.abortRate = abortRate
        self.baselineAbortRate = baselineAbortRate
        self.prefixes = prefixes
        self.fallbacks = fallbacks
        self.local = local
    }
}

public final class Detector {
    public private(set) var settings: DetectorSettings
    public private(set) var entries: [UInt64: FingerprintEvidence] = [:]
    public private(set) var flagged: [UInt64: FlaggedFingerprint] = [:]
    /// Recent aborts by client address: (fingerprint key, monotonic seconds, highest offered version).
    private var recentAborts: [ClientAddress: (key: UInt64, at: Double, version: UInt16)] = [:]
    static let recentAbortCapacity = 4096

    /// Undecayed totals for metrics: [kind][result].
    public private(set) var totals: [[Int]] = Array(
        repeating: Array(repeating: 0, count: HandshakeObservation.Result.allCases.count),
        count: HandshakeObservation.Kind.allCases.count
    )
    public private(set) var totalFallbacks = 0
    public private(set) var evictions = 0
    /// Flags refused because `maxFlagged` fingerprints were already flagged.
    public private(set) var flagsRefusedByCap = 0
    /// Incremented whenever the flagged set changes (publishers compare it).
    public private(set) var flaggedGeneration: UInt64 = 0

    public init(settings: DetectorSettings) {
        self.settings = settings
    }

    public func update(settings s: DetectorSettings) {
        settings = s
        if entries.count > s.capacity { evict(now: nil) }
    }

    /// Records one observation. `mono` and `wall` are seconds (monotonic clock, Unix time); `mono` should be
    /// the observation's own time (`o.time`), so fallbacks are measured between handshakes, not drains.
    /// Returns the flag raised by this observation, if any.
    @discardableResult
    public func record(_ o: HandshakeObservation, wall: Double) -> FlaggedFingerprint? {
        let mono = Double(o.time) / 1e9
        totals[Int(o.kind.rawValue)][Int(o.result.rawValue)] += 1
        // A fallback: the same address, soon after an abort, offering less (or signalling a fallback).
        if !recentAborts.isEmpty, let a = recentAborts[o.address] {
            if mono - a.at <= settings.fallbackWindow {
                if o.highestVersion < a.version || o.fallbackSCSV {
                    recentAborts[o.address] = nil
                    totalFallbacks += 1
                    if var e = entries[a.key] {
                        e.decay(to: mono, halfLife: settings.halfLife)
                        e.fallbacks += 1
                        e.totalFallbacks += 1
                        entries[a.key] = e
                    }
                }
            } else {
                recentAborts[o.address] = nil
            }
        }
        // One hash lookup for a known fingerprint (every handshake of a known client lands here).
        var slot = entries.index(forKey: o.key)
        if slot == nil {
            if entries.count >= settings.capacity { evict(now: mono) }
            entries[o.key] = FingerprintEvidence(key: o.key, labels: o.labels, wall: wall, mono: mono)
            slot = entries.index(forKey: o.key)
        }
        var raised: FlaggedFingerprint?
        entries.values[slot!].observe(o, mono: mono, wall: wall, settings: settings)
        if o.result == .aborted {
            if recentAborts.count >= Self.recentAbortCapacity { pruneRecentAborts(mono: mono) }
            recentAborts[o.address] = (o.key, mono, o.highestVersion)
            if o.kind == .renewal, let e = entries[o.key] { raised = evaluate(e, wall: wall) }
        }
        return raised
    }

    /// Flags `e` when its evidence meets every threshold; renews an existing flag. Returns a new flag only.
    private func evaluate(_ e: FingerprintEvidence, wall: Double) -> FlaggedFingerprint? {
        guard Self.meetsThreshold(e, settings) else { return nil }
        if var f = flagged[e.key] {
            f.expiresAt = max(f.expiresAt, wall + settings.quarantineTTL)
            f.aborts = e.renewalAborts
            f.abortRate = e.renewalAbortRate
            f.baselineAbortRate = e.baselineAbortRate
            f.prefixes = e.distinctAbortPrefixes
            f.fallbacks = e.fallbacks
            // This instance's own evidence now backs it (shared from here on as its own flag).
            f.local = true
            f.fleetInstance = nil
            flagged[e.key] = f
            return nil
        }
        guard flagged.count < settings.maxFlagged else {
            flagsRefusedByCap += 1
            return nil
        }
        let f = FlaggedFingerprint(
            key: e.key,
            labels: e.labels,
            flaggedAt: wall,
            expiresAt: wall + settings.quarantineTTL,
            aborts: e.renewalAborts,
            abortRate: e.renewalAbortRate,
            baselineAbortRate: e.baselineAbortRate,
            prefixes: e.distinctAbortPrefixes,
            fallbacks: e.fallbacks,
            local: true
        )
        flagged[e.key] = f
        flaggedGeneration &+= 1
        return f
    }

    /// The flag rule (see the file header). Pure. The decayed abort count is rounded: ten aborts within seconds
    /// decay to 9.999..., which is ten.
    public static func meetsThreshold(_ e: FingerprintEvidence, _ s: DetectorSettings) -> Bool {
        e.renewalAborts.rounded() >= s.minAborts && e.renewalAbortRate >= s.minAbortRatio
            && e.renewalAbortRate >= s.baselineFactor * e.baselineAbortRate
            && e.distinctAbortPrefixes >= s.minPrefixes
    }

    /// Drops flags past their TTL. Returns the keys that expired.
    @discardableResult
    public func expire(wall: Double) -> [UInt64] {
        let gone = flagged.values.filter { $0.expiresAt <= wall }.map(\.key)
        for k in gone { flagged[k] = nil }
        if !gone.isEmpty { flaggedGeneration &+= 1 }
        return gone
    }

    /// Adds a flag learnt elsewhere (fleet, state file); a local flag for the same key is kept. Respects the cap.
    @discardableResult
    public func adopt(_ f: FlaggedFingerprint, wall: Double) -> Bool {
        guard f.expiresAt > wall else { return false }
        if let existing = flagged[f.key] {
            if f.expiresAt > existing.expiresAt && !existing.local {
                flagged[f.key]?.expiresAt = f.expiresAt
            }
            return false
        }
        guard flagged.count < settings.maxFlagged else {
            flagsRefusedByCap += 1
            return false
        }
        flagged[f.key] = f
        flaggedGeneration &+= 1
        return true
    }

    /// The keys whose hellos must get a full handshake on a stale ticket (empty unless mode is quarantine).
    public var quarantinedKeys: Set<UInt64> {
        settings.mode == .quarantine ? Set(flagged.keys) : []
    }

    /// Evicts the least active tenth of the tracked fingerprints (flags are kept: they live in `flagged`).
    private func evict(now: Double?) {
        let target = max(0, min(settings.capacity - 1, settings.capacity - settings.capacity / 10))
        guard entries.count > target else { return }
        var scored: [(UInt64, Double)] = []
        scored.reserveCapacity(entries.count)
        for (k, e) in entries {
            let age = now.map { max(0, $0 - e.updated) } ?? 0
            scored.append((k, e.activity * exp2(-age / settings.halfLife)))
        }
        scored.sort { $0.1 < $1.1 }
        for (k, _) in scored.prefix(entries.count - target) { entries[k] = nil }
        evictions += scored.count - target
    }

    private func pruneRecentAborts(mono: Double) {
        recentAborts = recentAborts.filter { mono - $0.value.at <= settings.fallbackWindow }
        if recentAborts.count >= Self.recentAbortCapacity { recentAborts.removeAll(keepingCapacity: true) }
    }
}

extension FingerprintEvidence {
    mutating func observe(_ o: HandshakeObservation, mono: Double, wall: Double, settings: DetectorSettings) {
        decay(to: mono, halfLife: settings.halfLife)
        lastSeen = max(lastSeen, wall)
        totalHandshakes += 1
        let aborted: Double = o.result == .aborted ? 1 : 0
        switch o.kind {
        case .renewal:
            renewal += 1
            renewalAborts += aborted
            if o.result == .aborted {
                totalRenewalAborts += 1
                let p = o.address.prefix
                if abortPrefixes[p] == nil && abortPrefixes.count >= settings.maxPrefixes {
                    // Keep the most recent prefixes: forget the oldest.
                    if let oldest = abortPrefixes.min(by: { $0.value < $1.value }) { abortPrefixes[oldest.key] = nil }
                }
                abortPrefixes[p] = mono
            }
        case .baseline:
            baseline += 1
            baselineAborts += aborted
        }
        // Prefixes older than the window (two half-lives) no longer count.
        let horizon = mono - 2 * settings.halfLife
        if abortPrefixes.count > 0, abortPrefixes.values.contains(where: { $0 < horizon }) {
            abortPrefixes = abortPrefixes.filter { $0.value >= horizon }
        }
    }
}
