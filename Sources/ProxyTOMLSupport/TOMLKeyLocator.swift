// TOMLKit (toml++ underneath) reports positions only for syntax errors, not for the keys and values of a document
// that parsed. Configuration and policy errors must still point at a line and column, so this file re-scans the
// (already valid) text with a deliberately small scanner that records where each key, value, table header and
// array element is written. It is not a TOML validator: it relies on toml++ having accepted the text first, and
// on malformed input it only has to terminate, not be right.
//
// Its own target rather than ProxyCore: ProxyConfig and ProxyPolicy (the two TOML readers) share it, nothing on the
// data path needs it, and ProxyCore stays the hot-path toolbox (buffers, clock, errors) that it is built as. The
// target depends on nothing, not even TOMLKit: it reads text only.

/// Maps key paths of a TOML document to the 1-based line and column where they are written.
///
/// Each path can be located at up to three anchors (see ``Anchor``): its key, its value, and the header that opens
/// it. Recorded: each segment of a `[table]` / `[[array]]` header, each segment of a (dotted) key in a key/value
/// pair, keys inside inline tables, each value, and each element of an array value (`upstreams[2]` → where the
/// element starts). An element of an array of tables, `certificates[1]`, is keyed at the name in its
/// `[[certificates]]` header. When a path is written more than once (e.g. `[a.b]` then `[a]`), the first occurrence
/// wins. Comments, all four string forms (including multi-line strings containing `#`, `=`, `[` or quotes),
/// multi-line arrays and quoted keys are skipped or decoded as TOML 1.0 defines them. Columns count Unicode
/// scalars, like toml++.
public struct TOMLKeyLocator: Sendable {
    public struct Position: Hashable, Sendable, CustomStringConvertible {
        public var line: Int
        public var column: Int
        public init(line: Int, column: Int) {
            self.line = line
            self.column = column
        }
        /// `line:column`
        public var description: String { "\(line):\(column)" }
    }

    /// Which part of a written path a position refers to.
    public enum Anchor: Sendable {
        /// The key itself: the segment naming the path in a key/value pair, a header or an inline table (in
        /// `[policy.match]` or `match.grease = 1` the key of `match` is the word `match`). For an array element,
        /// where the element starts; for an element of an array of tables, the table name in its `[[...]]` header.
        case key
        /// Where the value starts: the first character after `key =`, an array element's first character. A table
        /// opened by a `[table]` header, an array of tables and each of its elements are valued at the opening `[`
        /// of their (first) header. Tables that exist only as a prefix of a dotted key or header have no value.
        case value
        /// The opening `[` of the `[table]` / `[[array]]` header that declares the path (for an array of tables,
        /// its first header). Only tables named by a header have one.
        case header
    }

    private let keys: [TOMLPath: Position]
    private let values: [TOMLPath: Position]
    private let headers: [TOMLPath: Position]

    public init(text: String) {
        var scanner = Scanner(text: text)
        scanner.run()
        keys = scanner.keys
        values = scanner.values
        headers = scanner.headers
    }

    /// Where `path` is written at `anchor`, if it is.
    public func position(of path: TOMLPath, at anchor: Anchor = .key) -> Position? {
        switch anchor {
        case .key: keys[path]
        case .value: values[path]
        case .header: headers[path]
        }
    }

    /// Where `path` is written at the first of `anchors` it has or, failing that, the same for its nearest written
    /// ancestor (the table that should have held it); line 1 column 1 when nothing along the path is written.
    public func nearestPosition(of path: TOMLPath, preferring anchors: [Anchor] = [.key]) -> Position {
        var current: TOMLPath? = path
        while let p = current {
            for anchor in anchors {
                if let position = position(of: p, at: anchor) { return position }
            }
            current = p.parent
        }
        return Position(line: 1, column: 1)
    }

    static func isBareKeyScalar(_ c: Unicode.Scalar) -> Bool {
        switch c {
        case "A"..."Z", "a"..."z", "0"..."9", "_", "-": true
        default: false
        }
    }
}

private struct Scanner {
    typealias Position = TOMLKeyLocator.Position

    let s: [Unicode.Scalar]
    var i = 0
    var line = 1
    var column = 1
    var keys: [TOMLPath: Position] = [:]
    var values: [TOMLPath: Position] = [:]
    var headers: [TOMLPath: Position] = [:]
    /// Number of `[[x]]` headers seen so far for each array-of-tables path `x`.
    var arrayTableCounts: [TOMLPath: Int] = [:]
    var currentTable = TOMLPath()

    init(text: String) { s = Array(text.unicodeScalars) }

    var peek: Unicode.Scalar? { i < s.count ? s[i] : nil }
    func peek(_ offset: Int) -> Unicode.Scalar? { i + offset < s.count ? s[i + offset] : nil }
    var position: Position { Position(line: line, column: column) }

    mutating func advance(_ n: Int = 1) {
        for _ in 0..<n where i < s.count {
            if s[i] == "\n" {
                line += 1
                column = 1
            } else {
                column += 1
            }
            i += 1
        }
    }

    mutating func record(_ path: TOMLPath, _ position: Position) {
        if keys[path] == nil { keys[path] = position }
    }

    /// Records the header (and with it the value) of a table named by a `[table]` or `[[array]]` header.
    mutating func recordHeader(_ path: TOMLPath, _ position: Position) {
        if headers[path] == nil { headers[path] = position }
        if values[path] == nil { values[path] = position }
    }

    mutating func skipTrivia(newlines: Bool) {
        while let c = peek {
            if c == " " || c == "\t" {
                advance()
            } else if c == "#" {
                while let d = peek, d != "\n" { advance() }
            } else if newlines && (c == "\n" || c == "\r") {
                advance()
            } else {
                return
            }
        }
    }

    mutating func run() {
        while true {
            skipTrivia(newlines: true)
            guard let c = peek else { return }
            let start = i
            if c == "[" {
                header()
            } else {
                keyValue(prefix: currentTable)
            }
            // Whatever remains on the line is trivia in a valid document; skipping it also guarantees progress.
            while let d = peek, d != "\n" { advance() }
            if i == start { advance() }
        }
    }

    mutating func header() {
        let bracket = position
        let isArray = peek(1) == "["
        advance(isArray ? 2 : 1)
        let segments = dottedKey()
        var path = TOMLPath()
        for (n, (key, position)) in segments.enumerated() {
            path = path.appending(key)
            record(path, position)
            if n == segments.count - 1 && isArray {
                let index = arrayTableCounts[path, default: 0]
                arrayTableCounts[path] = index + 1
                recordHeader(path, bracket)
                path = path.appending(index: index)
                record(path, position)
                recordHeader(path, bracket)
            } else if let count = arrayTableCounts[path] {
                // `[a.b]` after `[[a]]` extends the latest element of `a`.
                path = path.appending(index: count - 1)
            }
        }
        if !isArray && !segments.isEmpty { recordHeader(path, bracket) }
        currentTable = path
    }

    mutating func keyValue(prefix: TOMLPath) {
        let segments = dottedKey()
        guard !segments.isEmpty else { return }
        var path = prefix
        for (key, position) in segments {
            path = path.appending(key)
            record(path, position)
        }
        skipTrivia(newlines: false)
        guard peek == "=" else { return }
        advance()
        skipTrivia(newlines: false)
        value(path)
    }

    /// Reads `a . "b" . 'c'`, returning each decoded segment with the position of its first character.
    mutating func dottedKey() -> [(String, Position)] {
        var segments: [(String, Position)] = []
        while true {
            skipTrivia(newlines: false)
            let start = position
            guard let c = peek else { return segments }
            var key = ""
            if c == "\"" {
                advance()
                key = basicStringBody()
            } else if c == "'" {
                advance()
                while let d = peek, d != "'", d != "\n" {
                    key.unicodeScalars.append(d)
                    advance()
                }
                advance()
            } else if TOMLKeyLocator.isBareKeyScalar(c) {
                while let d = peek, TOMLKeyLocator.isBareKeyScalar(d) {
                    key.unicodeScalars.append(d)
                    advance()
                }
            } else {
                return segments
            }
            segments.append((key, start))
            skipTrivia(newlines: false)
            guard peek == "." else { return segments }
            advance()
        }
    }

    /// Decodes a single-line basic string whose opening quote was consumed, consuming the closing quote.
    mutating func basicStringBody() -> String {
        var out = ""
        while let c = peek, c != "\n" {
            advance()
            if c == "\"" { return out }
            guard c == "\\", let e = peek else {
                out.unicodeScalars.append(c)
                continue
            }
            advance()
            switch e {
            case "n": out += "\n"
            case "t": out += "\t"
            case "r": out += "\r"
            case "b": out += "\u{08}"
            case "f": out += "\u{0C}"
            case "e": out += "\u{1B}"
            case "u", "U":
                let width = e == "u" ? 4 : 8
                var hex = ""
                for _ in 0..<width {
                    guard let h = peek, h.properties.isASCIIHexDigit else { break }
                    hex.unicodeScalars.append(h)
                    advance()
                }
                if let v = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(v) { out.unicodeScalars.append(scalar) }
            default: out.unicodeScalars.append(e)
            }
        }
        return out
    }

    mutating func value(_ path: TOMLPath) {
        guard let c = peek else { return }
        if values[path] == nil { values[path] = position }
        switch c {
        case "\"", "'":
            if peek(1) == c && peek(2) == c {
                advance(3)
                multiLineStringBody(quote: c)
            } else {
                advance()
                if c == "\"" {
                    _ = basicStringBody()
                } else {
                    while let d = peek, d != "'", d != "\n" { advance() }
                    advance()
                }
            }
        case "[":
            array(path)
        case "{":
            inlineTable(path)
        default:
            // Numbers, booleans, dates (which may contain one space): up to the next delimiter.
            while let d = peek, d != ",", d != "]", d != "}", d != "#", d != "\n", d != "\r" { advance() }
        }
    }

    mutating func multiLineStringBody(quote: Unicode.Scalar) {
        while let c = peek {
            if c == "\\" && quote == "\"" {
                advance(2)  // An escape, or a line-ending backslash; either way the next scalar is not a delimiter.
            } else if c == quote && peek(1) == quote && peek(2) == quote {
                // Up to two quotes may precede the closing delimiter: `""""" ` ends with content `""`.
                var run = 0
                while peek == quote && run < 5 {
                    advance()
                    run += 1
                }
                return
            } else {
                advance()
            }
        }
    }

    mutating func array(_ path: TOMLPath) {
        advance()  // [
        var index = 0
        while true {
            skipTrivia(newlines: true)
            guard let c = peek else { return }
            if c == "]" {
                advance()
                return
            }
            let start = i
            let element = path.appending(index: index)
            record(element, position)
            value(element)
            index += 1
            skipTrivia(newlines: true)
            if peek == "," { advance() }
            if i == start { advance() }
        }
    }

    mutating func inlineTable(_ path: TOMLPath) {
        advance()  // {
        while true {
            skipTrivia(newlines: true)
            guard let c = peek else { return }
            if c == "}" {
                advance()
                return
            }
            let start = i
            keyValue(prefix: path)
            skipTrivia(newlines: true)
            if peek == "," { advance() }
            if i == start { advance() }
        }
    }
}
