import ProxyTOMLSupport
import TOMLKit

// The shared locator under the names this module (and its `@testable` tests) have always used, so the many
// `TOMLPath` sites across ProxyConfig need no import of their own.
typealias TOMLKeyLocator = ProxyTOMLSupport.TOMLKeyLocator
typealias TOMLPath = ProxyTOMLSupport.TOMLPath

/// Collects diagnostics for one document and turns key paths into file positions.
final class ConfigDecoder {
    let fileName: String
    let locator: TOMLKeyLocator
    private(set) var diagnostics: [ConfigError.Diagnostic] = []

    init(fileName: String, text: String) {
        self.fileName = fileName
        self.locator = TOMLKeyLocator(text: text)
    }

    /// Reports `message` at the first of `paths` written in the file, else at the nearest written ancestor of the
    /// first path.
    func report(_ paths: [TOMLPath], _ message: String) {
        precondition(!paths.isEmpty)
        let position =
            paths.lazy.compactMap { self.locator.position(of: $0) }.first
            ?? locator.nearestPosition(of: paths[0])
        diagnostics.append(.init(file: fileName, line: position.line, column: position.column, message: message))
    }

    func report(_ path: TOMLPath, _ message: String) { report([path], message) }
}

/// Reads one TOML table against the schema, reporting type errors as it goes and unknown keys in ``finish()``.
///
/// Every accessor marks its key as known, so the set of keys asked for *is* the schema of the table; a key in the
/// document that nobody asked for is unknown. Accessors return `nil` when the key is absent or its value is wrong
/// (after reporting), leaving the caller's default in place.
struct TableReader {
    let decoder: ConfigDecoder
    let table: TOMLTable
    let path: TOMLPath
    private var known: [String] = []

    init(decoder: ConfigDecoder, table: TOMLTable, path: TOMLPath) {
        self.decoder = decoder
        self.table = table
        self.path = path
    }

    mutating func raw(_ key: String) -> TOMLValueConvertible? {
        if !known.contains(key) { known.append(key) }
        return table[key]
    }

    func report(_ key: String, _ message: String) {
        decoder.report(path.appending(key), "\(path.appending(key)): \(message)")
    }

    func typeMismatch(_ key: String, expected: String, found: TOMLType) {
        report(key, "expected \(expected), found \(found.article)")
    }

    mutating func string(_ key: String) -> String? {
        guard let value = raw(key) else { return nil }
        guard let s = value.string else {
            typeMismatch(key, expected: "a string", found: value.type)
            return nil
        }
        return s
    }

    mutating func bool(_ key: String) -> Bool? {
        guard let value = raw(key) else { return nil }
        guard let b = value.bool else {
            typeMismatch(key, expected: "true or false", found: value.type)
            return nil
        }
        return b
    }

    mutating func int(_ key: String) -> Int? {
        guard let value = raw(key) else { return nil }
        guard let n = value.int else {
            typeMismatch(key, expected: "an integer", found: value.type)
            return nil
        }
        return n
    }

    /// A string converted by `convert`; conversion errors are reported at the key.
    mutating func string<T>(_ key: String, _ convert: (String) throws(ValueError) -> T) -> T? {
        guard let s = string(key) else { return nil }
        do {
            return try convert(s)
        } catch {
            report(key, error.message)
            return nil
        }
    }

    /// One of `T`'s raw values, listing the accepted ones when it is not.
    mutating func choice<T: RawRepresentable & CaseIterable>(_ key: String) -> T? where T.RawValue == String {
        string(key) { s throws(ValueError) in
            guard let v = T(rawValue: s) else {
                let accepted = T.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
                throw ValueError("\"\(s)\" is not one of \(accepted)")
            }
            return v
        }
    }

    /// A duration string (`"1h30m"`) or an integer number of seconds.
    mutating func duration(_ key: String) -> ConfigDuration? {
        guard let value = raw(key) else { return nil }
        do throws(ConfigDuration.ParseError) {
            if let n = value.int { return try ConfigDuration(seconds: n) }
            if let s = value.string { return try ConfigDuration(parsing: s) }
        } catch {
            report(key, error.message)
            return nil
        }
        typeMismatch(key, expected: "a duration such as \"30s\" or an integer number of seconds", found: value.type)
        return nil
    }

    /// An array whose elements are each converted by `element` (which reports its own errors at the element path
    /// it is given and returns `nil` to drop the element).
    mutating func array<T>(_ key: String, _ element: (TOMLValueConvertible, TOMLPath) -> T?) -> [T]? {
        guard let value = raw(key) else { return nil }
        guard let array = value.array else {
            typeMismatch(key, expected: "an array", found: value.type)
            return nil
        }
        let arrayPath = path.appending(key)
        var out: [T] = []
        for (index, item) in array.enumerated() {
            if let v = element(item, arrayPath.appending(index: index)) { out.append(v) }
        }
        return out
    }

    /// An array of strings; non-strings are reported at their element.
    mutating func stringArray(_ key: String) -> [String]? {
        let decoder = self.decoder
        return array(key) { item, itemPath in
            guard let s = item.string else {
                decoder.report(itemPath, "\(itemPath): expected a string, found \(item.type.article)")
                return nil
            }
            return s
        }
    }

    /// A nested table (`[a.b]`, `a.b.c = …` or `a = { … }`).
    mutating func table(_ key: String) -> TableReader? {
        guard let value = raw(key) else { return nil }
        guard let t = value.table else {
            typeMismatch(key, expected: "a table", found: value.type)
            return nil
        }
        return TableReader(decoder: decoder, table: t, path: path.appending(key))
    }

    /// Rejects a key that is reserved for a later version.
    mutating func reserved(_ key: String, _ message: String) {
        if raw(key) != nil { decoder.report(path.appending(key), message) }
    }

    /// Reports every key present in the table that was never asked for, with a suggestion when one is close.
    func finish() {
        for key in table.keys where !known.contains(key) {
            let keyPath = path.appending(key)
            let place = path.components.isEmpty ? "at the top level" : "in [\(path)]"
            var message = "unknown key \"\(key)\" \(place)"
            if let suggestion = known.min(by: { editDistance($0, key) < editDistance($1, key) }),
                editDistance(suggestion, key) <= max(1, key.count / 3)
            {
                message += " (did you mean \"\(suggestion)\"?)"
            }
            decoder.report(keyPath, message)
        }
    }
}

extension TOMLType {
    /// "a string", "an integer", … for messages.
    var article: String {
        switch self {
        case .table: "a table"
        case .array: "an array"
        case .string: "a string"
        case .int: "an integer"
        case .double: "a float"
        case .bool: "a boolean"
        case .date: "a date"
        case .time: "a time"
        case .dateTime: "a date-time"
        }
    }
}

/// Levenshtein distance, for "did you mean" suggestions on short keys.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a)
    let b = Array(b)
    if a.isEmpty { return b.count }
    var previous = Array(0...b.count)
    for i in 1...a.count {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in stride(from: 1, through: b.count, by: 1) {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}
