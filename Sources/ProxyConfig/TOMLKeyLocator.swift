// TOMLKit (toml++ underneath) reports positions only for syntax errors, not for the keys and values of a document
// that parsed. Configuration errors must still point at a line and column, so this file re-scans the (already
// valid) text with a deliberately small scanner that records where each key and array element is written.
// It is not a TOML validator: it relies on toml++ having accepted the text first, and on malformed input it only
// has to terminate, not be right.

/// A path to a key or an array element inside a TOML document, e.g. `tickets.rotation` or `certificates[1].key`.
struct TOMLPath: Hashable, CustomStringConvertible, ExpressibleByArrayLiteral {
    enum Component: Hashable {
        case key(String)
        case index(Int)
    }

    var components: [Component]

    init(_ components: [Component] = []) { self.components = components }
    init(arrayLiteral elements: String...) { self.components = elements.map { .key($0) } }

    func appending(_ key: String) -> TOMLPath { TOMLPath(components + [.key(key)]) }
    func appending(index: Int) -> TOMLPath { TOMLPath(components + [.index(index)]) }
    var parent: TOMLPath? { components.isEmpty ? nil : TOMLPath(Array(components.dropLast())) }

    /// `tickets.rotation`, `certificates[1].key`; keys that are not bare are quoted.
    var description: String {
        var out = ""
        for component in components {
            switch component {
            case .index(let i):
                out += "[\(i)]"
            case .key(let k):
                if !out.isEmpty { out += "." }
                let bare = !k.isEmpty && k.unicodeScalars.allSatisfy(TOMLKeyLocator.isBareKeyScalar)
                out += bare ? k : "\"\(k)\""
            }
        }
        return out
    }
}

/// Maps key paths of a TOML document to the 1-based line and column where they are written.
///
/// Recorded for every path: each segment of a `[table]` / `[[array]]` header, each segment of a (dotted) key in a
/// key/value pair, keys inside inline tables, and each element of an array value (`upstreams[2]` → where the
/// element starts). An element of an array of tables, `certificates[1]`, is located at its `[[certificates]]` header.
/// When a path is written more than once (e.g. `[a.b]` then `[a]`), the first occurrence wins. Comments, all four
/// string forms (including multi-line strings containing `#`, `=`, `[` or quotes), multi-line arrays and quoted
/// keys are skipped or decoded as TOML 1.0 defines them. Columns count Unicode scalars, like toml++.
struct TOMLKeyLocator {
    struct Position: Equatable, CustomStringConvertible {
        var line: Int
        var column: Int
        var description: String { "\(line):\(column)" }
    }

    private(set) var positions: [TOMLPath: Position] = [:]

    init(text: String) {
        var scanner = Scanner(text: text)
        scanner.run()
        positions = scanner.positions
    }

    /// Where `path` itself is written, if it is.
    func position(of path: TOMLPath) -> Position? { positions[path] }

    /// Where `path` is written or, failing that, its nearest written ancestor (the table that should have held it);
    /// line 1 column 1 when nothing along the path appears in the text.
    func nearestPosition(of path: TOMLPath) -> Position {
        var current: TOMLPath? = path
        while let p = current {
            if let position = positions[p] { return position }
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
    var positions: [TOMLPath: Position] = [:]
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
        if positions[path] == nil { positions[path] = position }
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
        let isArray = peek(1) == "["
        advance(isArray ? 2 : 1)
        let keys = dottedKey()
        var path = TOMLPath()
        for (n, (key, position)) in keys.enumerated() {
            path = path.appending(key)
            record(path, position)
            if n == keys.count - 1 && isArray {
                let index = arrayTableCounts[path, default: 0]
                arrayTableCounts[path] = index + 1
                path = path.appending(index: index)
                record(path, position)
            } else if let count = arrayTableCounts[path] {
                // `[a.b]` after `[[a]]` extends the latest element of `a`.
                path = path.appending(index: count - 1)
            }
        }
        currentTable = path
    }

    mutating func keyValue(prefix: TOMLPath) {
        let keys = dottedKey()
        guard !keys.isEmpty else { return }
        var path = prefix
        for (key, position) in keys {
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
        var keys: [(String, Position)] = []
        while true {
            skipTrivia(newlines: false)
            let start = position
            guard let c = peek else { return keys }
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
                return keys
            }
            keys.append((key, start))
            skipTrivia(newlines: false)
            guard peek == "." else { return keys }
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
