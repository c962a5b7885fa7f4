import Synchronization

// Latency histograms recorded by the event-loop workers and exposed as Prometheus histograms (issue 16 §3).
//
// Hand-written rather than swift-metrics `Timer`s on swift-prometheus' `Histogram`: that backend takes a lock
// (NIOLock) for every recorded value, and the hot-path rule is that a worker takes no lock and allocates nothing
// per request. Here every worker owns its own counters (``HistogramCells``, one writer: relaxed atomic loads and
// stores, which compile to plain moves), and ``LatencyRegistry`` adds the workers' counters up when /metrics is
// scraped. swift-prometheus has no way to add a pre-aggregated histogram to its registry, so the registry writes
// its own text exposition (same format), appended to the Prometheus registry's.

/// Bucket upper bounds of a histogram.
public struct LatencyBuckets: Sendable, Equatable {
    /// Upper bounds in nanoseconds, increasing.
    public let nanoseconds: [UInt64]
    /// The same bounds as printed in `le` (seconds).
    public let labels: [String]

    public init(seconds: [Double]) {
        precondition(!seconds.isEmpty && zip(seconds, seconds.dropFirst()).allSatisfy { $0 < $1 })
        nanoseconds = seconds.map { UInt64(($0 * 1e9).rounded()) }
        labels = seconds.map { "\($0)" }
    }

    /// The buckets of every EdgeProxy latency histogram: 0.5 ms to 10 s, about 2.5x apart.
    /// - 0.5 ms and 1 ms separate loopback and same-rack work (a resumed handshake, a request to a local origin)
    ///   from anything that crossed a network;
    /// - 2.5 ms … 100 ms cover a full TLS handshake and origin answers inside a region (where percentiles matter);
    /// - 250 ms … 10 s cover clients over slow links, slow origins and the default timeouts (upstream connect 5 s,
    ///   handshake 10 s): everything above 10 s is a stuck exchange and lands in +Inf.
    /// 14 buckets keep a series at 17 lines; histogram_quantile interpolates inside a bucket, so a percentile is
    /// exact to within a factor of ~2.5 at worst, which is what a latency dashboard needs.
    public static let proxy = LatencyBuckets(seconds: [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ])
}

/// One worker's counts for one histogram series: slot `i` counts observations `<= bound[i]` and `> bound[i-1]`
/// (not cumulative), the last slot those above every bound; plus the sum of all observations in nanoseconds.
///
/// One writer (the worker thread that owns it) and any number of readers (the scrape): the writer uses relaxed
/// atomic load + store, never a read-modify-write, so a recording is a few plain moves (no lock, no allocation,
/// no locked instruction). A reader sees each counter's latest value or an earlier one; since the exposed
/// cumulative counts and the total are computed from the same slot values, a scrape is always consistent.
public final class HistogramCells: @unchecked Sendable {
    // SAFETY: `bounds` is immutable after init; `slots` and `sum` are atomics; only the owning thread writes.
    private let bounds: UnsafeMutablePointer<UInt64>
    private let boundCount: Int
    private let slots: UnsafeMutablePointer<Atomic<UInt64>>
    private let sum = Atomic<UInt64>(0)

    public init(buckets: LatencyBuckets) {
        boundCount = buckets.nanoseconds.count
        bounds = .allocate(capacity: boundCount)
        bounds.initialize(from: buckets.nanoseconds, count: boundCount)
        slots = .allocate(capacity: boundCount + 1)
        for i in 0...boundCount { (slots + i).initialize(to: Atomic(0)) }
    }

    deinit {
        bounds.deallocate()
        slots.deinitialize(count: boundCount + 1)
        slots.deallocate()
    }

    /// Records one observation. Owning thread only.
    @inline(__always)
    public func record(nanoseconds v: UInt64) {
        var i = 0
        while i < boundCount && v > bounds[i] { i += 1 }
        let slot = slots + i
        slot.pointee.store(slot.pointee.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        sum.store(sum.load(ordering: .relaxed) &+ v, ordering: .relaxed)
    }

    /// Adds this series' slot counts to `counts` (`boundCount + 1` entries) and its sum to `sumNanos`. Any thread.
    public func add(into counts: inout [UInt64], sumNanos: inout UInt64) {
        for i in 0...boundCount { counts[i] &+= (slots + i).pointee.load(ordering: .relaxed) }
        sumNanos &+= sum.load(ordering: .relaxed)
    }
}

/// The histogram families of the process and every worker's cells, merged into Prometheus text at scrape time.
/// Cells are created when a worker starts or sees new pools (a lock then, never per request).
public final class LatencyRegistry: Sendable {
    /// A histogram family: its name, help text and label names.
    public struct Family: Sendable, Hashable {
        public let index: Int
    }

    private struct FamilyInfo {
        let name: String
        let help: String
        let labelNames: [String]
    }

    private struct SeriesKey: Hashable {
        let family: Int
        let labels: [String]
    }

    private struct Series {
        let key: SeriesKey
        /// Per owner (worker index): that owner's cells.
        var cells: [Int: HistogramCells]
    }

    private struct State {
        var families: [FamilyInfo] = []
        var series: [Series] = []
        var index: [SeriesKey: Int] = [:]
    }

    public let buckets: LatencyBuckets
    private let state = Mutex(State())

    public init(buckets: LatencyBuckets = .proxy) { self.buckets = buckets }

    /// Declares a family (at start, before any worker records).
    public func family(name: String, help: String, labelNames: [String]) -> Family {
        state.withLock { s in
            s.families.append(FamilyInfo(name: name, help: help, labelNames: labelNames))
            return Family(index: s.families.count - 1)
        }
    }

    /// The cells `owner` (a worker index) records into for `family` with these label values (in the family's
    /// label-name order): the same object every time for the same arguments, so reloads do not multiply them.
    public func cells(_ family: Family, labels: [String], owner: Int) -> HistogramCells {
        state.withLock { s in
            precondition(labels.count == s.families[family.index].labelNames.count)
            let key = SeriesKey(family: family.index, labels: labels)
            let i: Int
            if let existing = s.index[key] {
                i = existing
            } else {
                i = s.series.count
                s.series.append(Series(key: key, cells: [:]))
                s.index[key] = i
            }
            if let c = s.series[i].cells[owner] { return c }
            let c = HistogramCells(buckets: buckets)
            s.series[i].cells[owner] = c
            return c
        }
    }

    /// Appends every family that has series, in declaration order, in the Prometheus text format (0.0.4): one
    /// series per label set, all owners added up; `_bucket` counts are cumulative and `le="+Inf"` equals `_count`.
    public func emit(into out: inout [UInt8]) {
        let (families, series) = state.withLock { s in (s.families, s.series) }
        let n = buckets.nanoseconds.count
        var counts = [UInt64](repeating: 0, count: n + 1)
        for (f, family) in families.enumerated() {
            let members = series.filter { $0.key.family == f }
            if members.isEmpty { continue }
            out.append(contentsOf: "# HELP \(family.name) \(Self.escapeHelp(family.help))\n".utf8)
            out.append(contentsOf: "# TYPE \(family.name) histogram\n".utf8)
            for m in members {
                for i in counts.indices { counts[i] = 0 }
                var sum: UInt64 = 0
                for owner in m.cells.keys.sorted() { m.cells[owner]!.add(into: &counts, sumNanos: &sum) }
                var labels = ""
                for (name, value) in zip(family.labelNames, m.key.labels) {
                    labels += "\(name)=\"\(Self.escapeLabel(value))\","
                }
                var cumulative: UInt64 = 0
                for i in 0..<n {
                    cumulative &+= counts[i]
                    out.append(
                        contentsOf: "\(family.name)_bucket{\(labels)le=\"\(buckets.labels[i])\"} \(cumulative)\n".utf8
                    )
                }
                cumulative &+= counts[n]
                out.append(contentsOf: "\(family.name)_bucket{\(labels)le=\"+Inf\"} \(cumulative)\n".utf8)
                let plain = labels.isEmpty ? "" : "{\(labels.dropLast())}"
                out.append(contentsOf: "\(family.name)_sum\(plain) \(Double(sum) / 1e9)\n".utf8)
                out.append(contentsOf: "\(family.name)_count\(plain) \(cumulative)\n".utf8)
            }
        }
    }

    /// Label values escape `\`, `"` and newlines (text format 0.0.4).
    static func escapeLabel(_ v: String) -> String {
        var r = ""
        for ch in v {
            switch ch {
            case "\\": r += "\\\\"
            case "\"": r += "\\\""
            case "\n": r += "\\n"
            default: r.append(ch)
            }
        }
        return r
    }

    /// Help text escapes `\` and newlines.
    static func escapeHelp(_ v: String) -> String {
        v.replacingBackslashesAndNewlines()
    }
}

extension String {
    fileprivate func replacingBackslashesAndNewlines() -> String {
        var r = ""
        for ch in self {
            switch ch {
            case "\\": r += "\\\\"
            case "\n": r += "\\n"
            default: r.append(ch)
            }
        }
        return r
    }
}
