/// Maps key paths of a TOML document to the line:column where the key (and its value) is written.
///
/// TOMLKit 0.6.0 reports positions only for syntax errors; a parsed `TOMLTable` carries no positions. Semantic
/// errors ("unknown key", "bad value") must still point at the source, so this scanner re-reads the text (which
/// TOMLKit has already accepted, so it is well-formed) and records, for every key path:
///  * the position of the key itself (`keyPosition`), and
///  * the position of its value (`valuePosition`); array elements get the path `…/#i`.
/// Paths are arrays of components: keys as written (unquoted), `#n` for the n-th element of an array or of an
/// array of tables (`[[policy]]` → `policy/#0`, `policy/#1`, …). Table headers record the header position for the
/// table's path. Lines and columns are 1-based; columns count Unicode scalars.
struct TOMLKeyLocator {
    struct Position: Equatable {
        var line: Int
        var column: Int
    }

    private(set) var keyPositions: [[String]: Position] = [:]
    private(set) var valuePositions: [[String]: Position] = [:]

    private var chars: [Unicode.Scalar]
    private var i = 0
    private var line = 1
    private var col = 1
    private var arrayTableCounts: [[String]: Int] = [:]

    init(source: String) {
        chars = Array(source.unicodeScalars)
        scanDocument()
    }

    func keyPosition(_ path: [String]) -> Position? { keyPositions[path] }

    /// Value position if known, else key position, else the nearest enclosing path's position.
    func bestPosition(_ path: [String]) -> Position {
        var p = path
        while true {
            if let v = valuePositions[p] ?? keyPositions[p] { return v }
            if p.isEmpty { return Position(line: 1, column: 1) }
            p.removeLast()
        }
    }

    /// Key position if known, else `bestPosition`.
    func keyOrBest(_ path: [String]) -> Position { keyPositions[path] ?? bestPosition(path) }

    // MARK: scanning

    private var atEnd: Bool { i >= chars.count }
    private var cur: Unicode.Scalar { chars[i] }
    private func peek(_ k: Int = 1) -> Unicode.Scalar? { i + k < chars.count ? chars[i + k] : nil }
    private var pos: Position { Position(line: line, column: col) }

    private mutating func advance() {
        if chars[i] == "\n" {
            line += 1
            col = 1
        } else {
            col += 1
        }
        i += 1
    }

    private mutating func skipSpaces() {
        while !atEnd && (cur == " " || cur == "\t") { advance() }
    }

    /// Skips whitespace, newlines and comments.
    private mutating func skipTrivia() {
        while !atEnd {
            if cur == " " || cur == "\t" || cur == "\n" || cur == "\r" {
                advance()
            } else if cur == "#" {
                while !atEnd && cur != "\n" { advance() }
            } else {
                return
            }
        }
    }

    private mutating func scanDocument() {
        var table: [String] = []
        while true {
            skipTrivia()
            if atEnd { return }
            let start = pos
            if cur == "[" {
                let isArray = peek() == "["
                advance()
                if isArray { advance() }
                skipSpaces()
                let raw = scanKey()
                skipSpaces()
                while !atEnd && cur != "]" { advance() }
                if !atEnd { advance() }
                if isArray && !atEnd && cur == "]" { advance() }
                let resolved = resolve(raw)
                if isArray {
                    let n = arrayTableCounts[resolved, default: 0]
                    arrayTableCounts[resolved] = n + 1
                    keyPositions[resolved] = keyPositions[resolved] ?? start
                    table = resolved + ["#\(n)"]
                } else {
                    table = resolved
                }
                keyPositions[table] = start
                valuePositions[table] = start
            } else {
                scanKeyValue(prefix: table)
            }
        }
    }

    /// Resolves a header path: each prefix that names an array of tables refers to its last element.
    private func resolve(_ raw: [String]) -> [String] {
        var out: [String] = []
        for (n, k) in raw.enumerated() {
            out.append(k)
            if n < raw.count - 1, let c = arrayTableCounts[out], c > 0 { out.append("#\(c - 1)") }
        }
        return out
    }

    /// A dotted key: bare, "basic" or 'literal' parts.
    private mutating func scanKey() -> [String] {
        var parts: [String] = []
        while !atEnd {
            skipSpaces()
            var s = ""
            if cur == "\"" || cur == "'" {
                let q = cur
                advance()
                while !atEnd && cur != q {
                    if q == "\"" && cur == "\\" {
                        advance()
                        if atEnd { break }
                    }
                    s.unicodeScalars.append(cur)
                    advance()
                }
                if !atEnd { advance() }
            } else {
                while !atEnd
                    && (cur.properties.isAlphabetic || ("0"..."9").contains(cur) || cur == "_" || cur == "-")
                {
                    s.unicodeScalars.append(cur)
                    advance()
                }
            }
            parts.append(s)
            skipSpaces()
            if !atEnd && cur == "." {
                advance()
                continue
            }
            break
        }
        return parts
    }

    private mutating func scanKeyValue(prefix: [String]) {
        let keyStart = pos
        let key = scanKey()
        let path = prefix + key
        keyPositions[path] = keyStart
        skipSpaces()
        if !atEnd && cur == "=" { advance() }
        skipSpaces()
        scanValue(path: path)
        // Rest of line (comment).
        skipSpaces()
        if !atEnd && cur == "#" { while !atEnd && cur != "\n" { advance() } }
    }

    private mutating func scanValue(path: [String]) {
        guard !atEnd else { return }
        valuePositions[path] = pos
        switch cur {
        case "\"", "'":
            let q = cur
            if peek() == q && peek(2) == q {
                advance()
                advance()
                advance()
                while !atEnd {
                    if q == "\"" && cur == "\\" {
                        advance()
                        if !atEnd { advance() }
                        continue
                    }
                    if cur == q && peek() == q && peek(2) == q {
                        advance()
                        advance()
                        advance()
                        // Up to two further quotes belong to the content.
                        while !atEnd && cur == q { advance() }
                        return
                    }
                    advance()
                }
            } else {
                advance()
                while !atEnd && cur != q && cur != "\n" {
                    if q == "\"" && cur == "\\" { advance() }
                    if !atEnd { advance() }
                }
                if !atEnd && cur == q { advance() }
            }
        case "[":
            advance()
            var n = 0
            while true {
                skipTrivia()
                if atEnd { return }
                if cur == "]" {
                    advance()
                    return
                }
                if cur == "," {
                    advance()
                    continue
                }
                scanValue(path: path + ["#\(n)"])
                n += 1
            }
        case "{":
            advance()
            while true {
                skipTrivia()
                if atEnd { return }
                if cur == "}" {
                    advance()
                    return
                }
                if cur == "," {
                    advance()
                    continue
                }
                let ks = pos
                let k = scanKey()
                keyPositions[path + k] = ks
                skipSpaces()
                if !atEnd && cur == "=" { advance() }
                skipSpaces()
                scanValue(path: path + k)
            }
        default:
            while !atEnd && cur != "," && cur != "]" && cur != "}" && cur != "\n" && cur != "#" && cur != " "
                && cur != "\t" && cur != "\r"
            {
                advance()
            }
        }
    }
}
