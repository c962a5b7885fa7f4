/// Finds the end of a head (or trailer section) in bytes that arrive in pieces, copying them into the caller's
/// storage and enforcing line-structure rules and size limits as it goes. Scanning resumes where it stopped, so
/// feeding one byte at a time costs the same as feeding the whole head at once.
///
/// Rules: CR must be followed by LF; a bare LF is an error unless `allowBareLF` (responses, RFC 9112 §2.2 lets
/// recipients accept it); with `skipLeadingEmptyLines`, up to `maxLeadingEmptyLines` empty lines before the start
/// line are discarded (RFC 9112 §2.2 robustness for requests).
struct HeadScanner {
    enum Result {
        case needMore
        case complete
        case error(HTTPParseError.Kind)
    }

    struct Config {
        var firstLineLimit: Int
        var firstLineError: HTTPParseError.Kind
        var totalLimit: Int
        var totalError: HTTPParseError.Kind
        var maxLines: Int
        var countError: HTTPParseError.Kind
        var allowBareLF: Bool
        var skipLeadingEmptyLines: Bool
    }

    static let maxLeadingEmptyLines = 8

    /// Bytes of the current line so far, excluding CR.
    private var lineLength = 0
    /// Non-empty lines completed.
    private var lines = 0
    private var prevCR = false
    private var leadingEmptyLines = 0
    /// True until the first byte of a new head has been seen.
    private(set) var atStart = true

    mutating func reset() {
        lineLength = 0
        lines = 0
        prevCR = false
        leadingEmptyLines = 0
        atStart = true
    }

    /// Scans `buf`, appending the bytes that belong to the head to `storage`. On `.complete`, `storage` ends with
    /// the terminating empty line and `consumed` is the number of bytes of `buf` used; on `.needMore` all of `buf`
    /// was consumed. The scanner must be `reset()` before the next head.
    mutating func scan(
        _ buf: UnsafeRawBufferPointer,
        into storage: inout [UInt8],
        _ config: Config
    ) -> (Result, consumed: Int) {
        let n = buf.count
        if n == 0 { return (.needMore, 0) }
        atStart = false
        var i = 0
        var appendFrom = 0
        while i < n {
            let b = buf[i]
            i += 1
            // Fast path: everything above CR is ordinary line content.
            if b > ASCII.cr || (b != ASCII.cr && b != ASCII.lf) {
                if prevCR { return (.error(.bareCR), i) }
                lineLength &+= 1
                continue
            }
            if b == ASCII.cr {
                if prevCR { return (.error(.bareCR), i) }
                prevCR = true
                continue
            }
            // LF
            if !prevCR && !config.allowBareLF { return (.error(.bareLF), i) }
            prevCR = false
            if lineLength == 0 {
                if lines == 0 && config.skipLeadingEmptyLines {
                    leadingEmptyLines += 1
                    if leadingEmptyLines > HeadScanner.maxLeadingEmptyLines {
                        return (.error(.tooManyLeadingEmptyLines), i)
                    }
                    // Drop the empty line, including a CR that may have been stored by the previous call.
                    storage.removeAll(keepingCapacity: true)
                    appendFrom = i
                    continue
                }
                if storage.count + (i - appendFrom) > config.totalLimit { return (.error(config.totalError), i) }
                storage.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[appendFrom..<i]))
                return (.complete, i)
            }
            lines += 1
            if lines == 1 && lineLength > config.firstLineLimit { return (.error(config.firstLineError), i) }
            if lines > config.maxLines { return (.error(config.countError), i) }
            if storage.count + (i - appendFrom) > config.totalLimit { return (.error(config.totalError), i) }
            lineLength = 0
        }
        if lines == 0 && lineLength > config.firstLineLimit { return (.error(config.firstLineError), n) }
        if storage.count + (n - appendFrom) > config.totalLimit { return (.error(config.totalError), n) }
        storage.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[appendFrom..<n]))
        return (.needMore, n)
    }
}
