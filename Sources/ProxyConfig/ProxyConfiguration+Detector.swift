/// `[detector]`: the renewal-intolerance detector and auto-quarantine (issue #14; README "Finding the next
/// SChannel"). Ratios are whole per cents (the TOML reader has integers and durations, no floats).
extension ProxyConfiguration {
    public struct Detector: Sendable, Equatable {
        /// What the listener does with each ClientHello's evidence.
        public enum Mode: String, Sendable, CaseIterable {
            case off, observe, quarantine
        }

        public var mode = Mode.observe
        /// Fingerprints tracked at once (top-K by decayed activity), 100..1000000.
        public var fingerprints = 10_000
        /// Half-life of the evidence counts (the evidence window), 1m..720h.
        public var window = ConfigDuration.hours(1)
        /// Aborts after an inline renewal needed to flag, 2..1000000.
        public var minAborts = 10
        /// Share of a fingerprint's renewal handshakes that must abort, per cent, 1..100.
        public var minAbortPercent = 50
        /// The renewal abort rate must be at least this many times the fingerprint's other handshakes' rate, 1..1000.
        public var baselineFactor = 5
        /// Distinct client /24 (IPv4) or /64 (IPv6) prefixes among those aborts, 2..1000.
        public var minPrefixes = 3
        /// A reconnection within this time after an abort offering a lower version is a fallback, 1s..1m.
        public var fallbackWindow = ConfigDuration.seconds(5)
        /// How long a flag (and its quarantine) lasts after the last evidence, 1m..8760h.
        public var quarantineTTL = ConfigDuration.hours(7 * 24)
        /// Fingerprints flagged at once, at most, 1..100000.
        public var maxQuarantined = 1000
        /// Where flags are kept across restarts (relative to the configuration file's directory); nil: not kept.
        public var stateFile: String? = nil

        public init() {}
    }

    mutating func readDetector(_ t: inout TableReader) {
        if let v: Detector.Mode = t.choice("mode") { detector.mode = v }
        if let v = t.int("fingerprints") { detector.fingerprints = v }
        if let v = t.duration("window") { detector.window = v }
        if let v = t.int("min_aborts") { detector.minAborts = v }
        if let v = t.int("min_abort_percent") { detector.minAbortPercent = v }
        if let v = t.int("baseline_factor") { detector.baselineFactor = v }
        if let v = t.int("min_prefixes") { detector.minPrefixes = v }
        if let v = t.duration("fallback_window") { detector.fallbackWindow = v }
        if let v = t.duration("quarantine_ttl") { detector.quarantineTTL = v }
        if let v = t.int("max_quarantined") { detector.maxQuarantined = v }
        if let v = t.string("state_file") { detector.stateFile = v }
    }

    func detectorProblems() -> [Problem] {
        var out: [Problem] = []
        func range(_ key: String, _ value: Int, _ allowed: ClosedRange<Int>) {
            if !allowed.contains(value) {
                let path: TOMLPath = ["detector", key]
                out.append(
                    Problem(
                        paths: [path],
                        message:
                            "\(path) must be between \(allowed.lowerBound) and \(allowed.upperBound) (got \(value))"
                    )
                )
            }
        }
        func range(_ key: String, _ value: ConfigDuration, _ lo: ConfigDuration, _ hi: ConfigDuration) {
            if value < lo || hi < value {
                let path: TOMLPath = ["detector", key]
                out.append(Problem(paths: [path], message: "\(path) must be between \(lo) and \(hi) (got \(value))"))
            }
        }
        let d = detector
        range("fingerprints", d.fingerprints, 100...1_000_000)
        range("min_aborts", d.minAborts, 2...1_000_000)
        range("min_abort_percent", d.minAbortPercent, 1...100)
        range("baseline_factor", d.baselineFactor, 1...1000)
        range("min_prefixes", d.minPrefixes, 2...1000)
        range("max_quarantined", d.maxQuarantined, 1...100_000)
        range("window", d.window, .minutes(1), .hours(30 * 24))
        range("fallback_window", d.fallbackWindow, .seconds(1), .minutes(1))
        range("quarantine_ttl", d.quarantineTTL, .minutes(1), .hours(365 * 24))
        if d.stateFile?.isEmpty == true {
            out.append(Problem(paths: [["detector", "state_file"]], message: "detector.state_file must not be empty"))
        }
        return out
    }
}
