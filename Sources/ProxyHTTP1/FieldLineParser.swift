/// Splits a scanned head (or trailer section) into field lines and validates them (RFC 9112 §5, RFC 9110 §5.5).
///
/// Strict (requests): name is 1*tchar immediately followed by ":"; values may hold HTAB, SP, VCHAR and obs-text
/// only. Tolerant (responses): whitespace between name and colon is dropped from the name (RFC 9112 §5.1 says a
/// proxy MUST remove it from responses), and values only refuse NUL. Both refuse obs-fold: a proxy may either
/// replace it or reject the message (RFC 9112 §5.2), and rejecting keeps the stored ranges byte-exact.
enum FieldLineParser {
    /// Parses field lines in `p[start..<end]`, where `end` is just past the final empty line, appending to `fields`.
    /// The scanner guarantees every CR is followed by LF; `checkValues` is the scanner's `sawControl` (value bytes
    /// need a second look only when the head holds a control byte somewhere).
    static func parse(
        _ p: UnsafePointer<UInt8>,
        from start: Int,
        to end: Int,
        strict: Bool,
        checkValues: Bool,
        into fields: inout [HeaderField]
    ) -> HTTPParseError.Kind? {
        var i = start
        // A fresh connection's list has no capacity: growing it 1, 2, 4, 8, 16 cost four reallocations per head.
        // Kept across requests on the connection (`removeAll` keeps capacity).
        if fields.capacity == 0 && start < end { fields.reserveCapacity(16) }
        while i < end {
            // Find the end of this line.
            let lf = i + ASCII.firstLF(p + i, end - i)
            var lineEnd = lf
            if lineEnd > i && p[lineEnd - 1] == ASCII.cr { lineEnd -= 1 }
            let next = lf + 1
            if lineEnd == i { return nil }  // the empty line ending the section
            if ASCII.isOWS(p[i]) { return .obsoleteLineFolding }

            var j = i
            // Letters, digits and "-" eight at a time; then the rarer tchars, and the colon, byte by byte.
            _ = ASCII.skipUnflaggedWords(p, &j, lineEnd, ASCII.nonNameBytes)
            while j < lineEnd && ASCII.isToken(p[j]) { j += 1 }
            let nameEnd = j
            if nameEnd == i { return .invalidFieldName }
            if j < lineEnd && ASCII.isOWS(p[j]) {
                while j < lineEnd && ASCII.isOWS(p[j]) { j += 1 }
                // "Name : v" is the RFC 9112 §5.1 case; "Bad Name: v" is just an invalid name.
                if j == lineEnd || p[j] != ASCII.colon { return .invalidFieldName }
                if strict { return .whitespaceBeforeColon }
            }
            if j == lineEnd || p[j] != ASCII.colon { return .invalidFieldName }
            j += 1
            while j < lineEnd && ASCII.isOWS(p[j]) { j += 1 }
            let valueStart = j
            var valueEnd = lineEnd
            while valueEnd > valueStart && ASCII.isOWS(p[valueEnd - 1]) { valueEnd -= 1 }
            if !checkValues {
                // No control bytes anywhere in the head: every value is valid.
            } else if strict {
                while j < valueEnd {
                    let b = p[j]
                    // Refuse CTLs except HTAB, and DEL.
                    if (b < 0x20 && b != ASCII.htab) || b == 0x7F { return .invalidFieldValue }
                    j += 1
                }
            } else {
                while j < valueEnd {
                    if p[j] == 0 { return .invalidFieldValue }
                    j += 1
                }
            }
            fields.append(
                HeaderField(
                    nameStart: UInt32(truncatingIfNeeded: i),
                    nameEnd: UInt32(truncatingIfNeeded: nameEnd),
                    valueStart: UInt32(truncatingIfNeeded: valueStart),
                    valueEnd: UInt32(truncatingIfNeeded: valueEnd)
                )
            )
            i = next
        }
        return nil
    }
}
