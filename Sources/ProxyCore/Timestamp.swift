// Timestamp: wall-clock time as Int64 nanoseconds since the Unix epoch. Logic takes `now` as a parameter;
// only the composition root reads the real clock (`Timestamp.wallClockNow()`), so tests inject time.
import Glibc

/// A point in wall-clock time: nanoseconds since 1970-01-01T00:00:00Z (Int64: good until the year 2262).
///
/// Used where time must agree across processes and restarts (ticket-key epochs are `floor(t / rotation)`), so it
/// is `CLOCK_REALTIME`, not a monotonic clock. Code under test never reads the clock: it is handed a `Timestamp`.
public struct Timestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Nanoseconds since the Unix epoch (negative before 1970).
    public var nanosecondsSinceEpoch: Int64

    /// A timestamp from nanoseconds since the Unix epoch.
    public init(nanosecondsSinceEpoch: Int64) { self.nanosecondsSinceEpoch = nanosecondsSinceEpoch }

    /// A timestamp from whole seconds since the Unix epoch. Traps on overflow (beyond year 2262).
    public init(secondsSinceEpoch: Int64) {
        self.nanosecondsSinceEpoch = secondsSinceEpoch * 1_000_000_000
    }

    /// Earlier than any real time; used for "valid since forever".
    public static let distantPast = Timestamp(nanosecondsSinceEpoch: .min)
    /// Later than any real time; used for "never expires".
    public static let distantFuture = Timestamp(nanosecondsSinceEpoch: .max)

    /// Whole seconds since the epoch, rounded towards negative infinity.
    public var secondsSinceEpoch: Int64 {
        let (q, r) = nanosecondsSinceEpoch.quotientAndRemainder(dividingBy: 1_000_000_000)
        return r < 0 ? q - 1 : q
    }

    /// Reads `CLOCK_REALTIME`. Call it at the composition root (event-loop tick, admin handler), never inside logic.
    public static func wallClockNow() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(nanosecondsSinceEpoch: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
    }

    /// `self + nanoseconds`, saturating at ``distantPast``/``distantFuture`` instead of trapping.
    public func adding(nanoseconds: Int64) -> Timestamp {
        let (sum, overflow) = nanosecondsSinceEpoch.addingReportingOverflow(nanoseconds)
        if overflow { return nanoseconds > 0 ? .distantFuture : .distantPast }
        return Timestamp(nanosecondsSinceEpoch: sum)
    }

    /// `self + seconds`, saturating.
    public func adding(seconds: Int64) -> Timestamp {
        let (ns, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds > 0 ? .distantFuture : .distantPast }
        return adding(nanoseconds: ns)
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        lhs.nanosecondsSinceEpoch < rhs.nanosecondsSinceEpoch
    }

    /// Seconds since the epoch with a nanosecond fraction, or `-inf`/`+inf` for the distant sentinels.
    public var description: String {
        if self == .distantPast { return "-inf" }
        if self == .distantFuture { return "+inf" }
        let s = secondsSinceEpoch
        let r = nanosecondsSinceEpoch % 1_000_000_000
        let frac = r < 0 ? r + 1_000_000_000 : r
        if frac == 0 { return "\(s)" }
        var digits = String(frac)
        digits = String(repeating: "0", count: 9 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(s).\(digits)"
    }
}
