// ProxyConfig: the EdgeProxy configuration model, its TOML loader and the CLI overrides.
// Foundation is used freely here: configuration is read once at start-up and on reload, never per request.

/// Every problem found while loading or overriding a configuration.
///
/// A `ConfigError` always holds at least one ``Diagnostic``; the loader collects every problem it can find in one
/// pass (syntax errors excepted: TOML parsing stops at the first one), sorted by position. `file`, `line`, `column`
/// and `message` are those of the first diagnostic; `description` renders all of them, one per line, as
/// `file:line:column: message` so that editors and `edgeproxy check` can jump to them.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// One problem at one place.
    ///
    /// `line` and `column` are 1-based. Problems that have no position in a file — a CLI flag, an unreadable file —
    /// have `line == 0` and `column == 0` and render as `file: message`, where `file` is then the flag name
    /// (e.g. `--upstream`) or the path that could not be read.
    public struct Diagnostic: Sendable, Equatable, CustomStringConvertible {
        public var file: String
        public var line: Int
        public var column: Int
        public var message: String

        public init(file: String, line: Int, column: Int, message: String) {
            self.file = file
            self.line = line
            self.column = column
            self.message = message
        }

        public var description: String {
            if line == 0 { return "\(file): \(message)" }
            return "\(file):\(line):\(column): \(message)"
        }
    }

    /// All problems, sorted by file position (stable for equal positions); never empty.
    public let diagnostics: [Diagnostic]

    /// Creates an error from at least one diagnostic; diagnostics are sorted by position.
    public init(_ diagnostics: [Diagnostic]) {
        precondition(!diagnostics.isEmpty, "a ConfigError needs at least one diagnostic")
        self.diagnostics = diagnostics.enumerated().sorted { a, b in
            let l = a.element
            let r = b.element
            if (l.line, l.column) != (r.line, r.column) { return (l.line, l.column) < (r.line, r.column) }
            return a.offset < b.offset
        }.map(\.element)
    }

    /// Creates an error holding a single diagnostic.
    public init(file: String, line: Int, column: Int, message: String) {
        self.init([Diagnostic(file: file, line: line, column: column, message: message)])
    }

    public var file: String { diagnostics[0].file }
    public var line: Int { diagnostics[0].line }
    public var column: Int { diagnostics[0].column }
    public var message: String { diagnostics[0].message }

    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// A problem with one value, before it is given a position (a file location or a flag name).
struct ValueError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}
