/// A non-negative span of time written in the configuration: `"500ms"`, `"2s"`, `"1m"`, `"1h30m"`, `"18h"`, or a bare
/// integer meaning seconds (`30`, `"30"`).
///
/// Units are `ms`, `s`, `m` and `h`; several may be combined largest first, each at most once (`"1h30m"`,
/// `"1m30s"`, `"2s500ms"`). Fractions (`"1.5s"`), negative values, unknown units and values above ~292 million
/// years are rejected with a message saying why. The precision is one millisecond.
public struct ConfigDuration: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The length in milliseconds, never negative.
    public let milliseconds: Int64

    /// A duration of `milliseconds`; traps if negative (the parser never produces one).
    public init(milliseconds: Int64) {
        precondition(milliseconds >= 0, "durations are never negative")
        self.milliseconds = milliseconds
    }

    public static func milliseconds(_ n: Int64) -> ConfigDuration { .init(milliseconds: n) }
    public static func seconds(_ n: Int64) -> ConfigDuration { .init(milliseconds: n * 1000) }
    public static func minutes(_ n: Int64) -> ConfigDuration { .init(milliseconds: n * 60_000) }
    public static func hours(_ n: Int64) -> ConfigDuration { .init(milliseconds: n * 3_600_000) }

    /// The same span as a standard library `Duration`.
    public var duration: Duration { .milliseconds(milliseconds) }

    /// The span in (possibly fractional) seconds.
    public var seconds: Double { Double(milliseconds) / 1000 }

    /// Parses the configuration syntax described on the type.
    /// - Throws: ``ConfigDuration/ParseError`` with a human-readable `message`.
    public init(parsing text: String) throws(ParseError) {
        let trimmed = text.trimmingASCIIWhitespace()
        guard !trimmed.isEmpty else { throw ParseError("empty duration; write e.g. \"30s\"") }
        if trimmed.hasPrefix("-") { throw ParseError("durations cannot be negative (got \"\(text)\")") }
        let bytes = Array(trimmed.utf8)
        // Bare integers are seconds.
        if bytes.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
            guard let n = Int64(trimmed) else { throw ParseError("duration \"\(text)\" is too large") }
            try self.init(count: n, unitMilliseconds: 1000, text: text)
            return
        }
        // Units in decreasing size; each may appear once, largest first.
        let units: [(name: String, ms: Int64)] = [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)]
        var total: Int64 = 0
        var index = 0
        var lastUnit = -1
        let hint = "use a whole number followed by ms, s, m or h, e.g. \"500ms\", \"30s\", \"1h30m\""
        while index < bytes.count {
            let digitsStart = index
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                index += 1
            }
            guard index > digitsStart else { throw ParseError("invalid duration \"\(text)\": \(hint)") }
            let unitStart = index
            while index < bytes.count, bytes[index] >= UInt8(ascii: "a") && bytes[index] <= UInt8(ascii: "z") {
                index += 1
            }
            let number = String(decoding: bytes[digitsStart..<unitStart], as: UTF8.self)
            let unitName = String(decoding: bytes[unitStart..<index], as: UTF8.self)
            if unitName.isEmpty {
                let next = index < bytes.count ? String(UnicodeScalar(bytes[index])) : ""
                if next == "." {
                    throw ParseError("invalid duration \"\(text)\": fractions are not supported; \(hint)")
                }
                throw ParseError("invalid duration \"\(text)\": missing unit after \(number); \(hint)")
            }
            guard let unitIndex = units.firstIndex(where: { $0.name == unitName }) else {
                throw ParseError("invalid duration \"\(text)\": unknown unit \"\(unitName)\"; \(hint)")
            }
            guard unitIndex > lastUnit else {
                throw ParseError("invalid duration \"\(text)\": units must appear once each, largest first")
            }
            lastUnit = unitIndex
            guard let n = Int64(number) else { throw ParseError("duration \"\(text)\" is too large") }
            let (part, overflow1) = n.multipliedReportingOverflow(by: units[unitIndex].ms)
            let (sum, overflow2) = total.addingReportingOverflow(part)
            if overflow1 || overflow2 { throw ParseError("duration \"\(text)\" is too large") }
            total = sum
        }
        self.init(milliseconds: total)
    }

    /// A duration of `seconds` whole seconds, as written by a TOML integer.
    /// - Throws: ``ConfigDuration/ParseError`` if negative or too large.
    public init(seconds: Int) throws(ParseError) {
        if seconds < 0 { throw ParseError("durations cannot be negative (got \(seconds))") }
        try self.init(count: Int64(seconds), unitMilliseconds: 1000, text: String(seconds))
    }

    private init(count: Int64, unitMilliseconds: Int64, text: String) throws(ParseError) {
        let (ms, overflow) = count.multipliedReportingOverflow(by: unitMilliseconds)
        if overflow { throw ParseError("duration \"\(text)\" is too large") }
        self.init(milliseconds: ms)
    }

    /// The canonical spelling, which parses back to the same value: `"1h30m"`, `"500ms"`, `"0s"`.
    public var description: String {
        if milliseconds == 0 { return "0s" }
        var rest = milliseconds
        var out = ""
        for (name, ms) in [("h", Int64(3_600_000)), ("m", 60_000), ("s", 1000), ("ms", 1)] where rest >= ms {
            out += "\(rest / ms)\(name)"
            rest %= ms
        }
        return out
    }

    public static func < (lhs: ConfigDuration, rhs: ConfigDuration) -> Bool { lhs.milliseconds < rhs.milliseconds }

    /// Why a duration did not parse.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public let message: String
        init(_ message: String) { self.message = message }
        public var description: String { message }
    }
}

extension String {
    /// `self` without leading and trailing spaces, tabs and line breaks.
    func trimmingASCIIWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" }
        guard let start = firstIndex(where: { !isSpace($0) }) else { return "" }
        let end = lastIndex(where: { !isSpace($0) })!
        return String(self[start...end])
    }
}
