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
    /// The previous call ended on a CR whose LF has not been seen yet.
    private var pendingCR = false
    private var leadingEmptyLines = 0
    /// True until the first byte of a new head has been seen.
    private(set) var atStart = true
    /// A control byte other than CR, LF and HTAB (or DEL) was seen: the field parser only validates value bytes
    /// when this is set, so clean heads are checked byte by byte once, here.
    private(set) var sawControl = false

    mutating func reset() {
        lineLength = 0
        lines = 0
        pendingCR = false
        leadingEmptyLines = 0
        atStart = true
        sawControl = false
    }

    private enum LineEnd {
        case more
        case skipped
        case complete
        case error(HTTPParseError.Kind)
    }

    /// Accounts for a line that ended at `i` (just past its LF).
    @inline(__always)
    private mutating func endLine(_ config: Config, storedBytes: Int) -> LineEnd {
        if lineLength == 0 {
            if lines == 0 && config.skipLeadingEmptyLines {
                leadingEmptyLines += 1
                if leadingEmptyLines > HeadScanner.maxLeadingEmptyLines { return .error(.tooManyLeadingEmptyLines) }
                return .skipped
            }
            if storedBytes > config.totalLimit { return .error(config.totalError) }
            return .complete
        }
        lines += 1
        if lines == 1 && lineLength > config.firstLineLimit { return .error(config.firstLineError) }
        if lines > config.maxLines { return .error(config.countError) }
        if storedBytes > config.totalLimit { return .error(config.totalError) }
        lineLength = 0
        return .more
    }

    /// Scans `buf`, appending the bytes that belong to the head to `storage`. On `.complete`, `storage` ends with
    /// the terminating empty line and `consumed` is the number of bytes of `buf` used; on `.needMore` all of `buf`
    /// was consumed. The scanner must be `reset()` before the next head.
    ///
    /// Errors are positional: whichever fault comes first in the byte stream (a bad byte, or the byte that exceeds
    /// a limit) is reported, so the verdict never depends on how the input was split into calls.
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
        if pendingCR {
            // The CR that ended the previous call is already stored; this byte must be its LF.
            pendingCR = false
            if buf[0] != ASCII.lf { return (.error(.bareCR), 1) }
            i = 1
            switch endLine(config, storedBytes: storage.count + 1) {
            case .more: break
            case .skipped:
                storage.removeAll(keepingCapacity: true)
                appendFrom = 1
            case .complete:
                storage.append(ASCII.lf)
                return (.complete, 1)
            case .error(let kind):
                return (.error(kind), 1)
            }
        }
        // Bytes at indices below `stop` fit in the total limit.
        var stop = min(n, appendFrom + config.totalLimit - storage.count)
        while true {
            // Fast path: visible ASCII, SP and obs-text are ordinary line content. Eight bytes at a time until a
            // word holds a control byte (< 0x20) or DEL; the lowest flagged byte is where the run ends.
            let runStart = i
            let base = buf.baseAddress!.assumingMemoryBound(to: UInt8.self)
            if !ASCII.skipUnflaggedWords(base, &i, stop, ASCII.controlBytes) {
                while i < stop {
                    let c = buf[i]
                    if c < 0x20 || c == 0x7F { break }
                    i += 1
                }
            }
            lineLength &+= i - runStart
            if lines == 0 && lineLength > config.firstLineLimit { return (.error(config.firstLineError), i) }
            if i >= stop { break }
            let b = buf[i]
            i += 1
            if b == ASCII.cr {
                if i == n {
                    pendingCR = true
                    break
                }
                if buf[i] != ASCII.lf { return (.error(.bareCR), i + 1) }
                i += 1
            } else if b == ASCII.lf {
                if !config.allowBareLF { return (.error(.bareLF), i) }
            } else {
                if b != ASCII.htab { sawControl = true }
                lineLength &+= 1
                if lines == 0 && lineLength > config.firstLineLimit { return (.error(config.firstLineError), i) }
                continue
            }
            switch endLine(config, storedBytes: storage.count + (i - appendFrom)) {
            case .more:
                continue
            case .skipped:
                // Drop the empty line, including a CR that may have been stored by the previous call.
                storage.removeAll(keepingCapacity: true)
                appendFrom = i
                stop = min(n, appendFrom + config.totalLimit)
            case .complete:
                storage.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[appendFrom..<i]))
                return (.complete, i)
            case .error(let kind):
                return (.error(kind), i)
            }
        }
        if i < n && !pendingCR { return (.error(config.totalError), i) }  // stopped by the total limit
        storage.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[appendFrom..<n]))
        return (.needMore, n)
    }
}
