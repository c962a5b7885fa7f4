/// Incremental HTTP/1.1 response framing for the load generator: finds the status code and where the body ends
/// (Content-Length or chunked), nothing else. Bytes in, a verdict out; no allocation after the first response.
///
/// Hand-written rather than reusing `ProxyHTTP1.ResponseParser` on purpose: the generator must stay independent of
/// the code it measures (a framing bug in the proxy's parser must not hide itself in the client as well).
struct ResponseScanner {
    enum Verdict: Equatable {
        /// More bytes are needed.
        case needMore
        /// The response is complete; `consumed` bytes of the last buffer belonged to it.
        case complete(consumed: Int)
        /// The bytes are not an HTTP/1.1 response this scanner understands.
        case invalid
    }

    private enum Phase {
        case head
        case fixed(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
    }

    private var phase = Phase.head
    private var head: [UInt8] = []
    private var crlf = 0  // how much of "\r\n\r\n" has just been seen (head phase)
    private var chunkSize = 0
    private var sawSizeDigit = false
    private var inExtension = false
    private var lineLength = 0  // trailer phase: bytes in the current line (CR excluded)
    /// Status code of the current response (0 until the head is complete).
    private(set) var status = 0
    /// True when the response said `Connection: close`.
    private(set) var closeDelimited = false

    init() { head.reserveCapacity(1024) }

    mutating func reset() {
        phase = .head
        head.removeAll(keepingCapacity: true)
        crlf = 0
        status = 0
        closeDelimited = false
    }

    mutating func feed(_ buf: UnsafeRawBufferPointer) -> Verdict {
        var i = 0
        let n = buf.count
        while i < n {
            switch phase {
            case .head:
                let b = buf[i]
                i += 1
                if head.count >= 16384 { return .invalid }
                head.append(b)
                switch (crlf, b) {
                case (0, 13), (2, 13): crlf += 1
                case (1, 10), (3, 10): crlf += 1
                default: crlf = b == 13 ? 1 : 0
                }
                if crlf == 4 {
                    guard let next = parseHead() else { return .invalid }
                    phase = next
                    if case .fixed(0) = next { return .complete(consumed: i) }
                }
            case .fixed(let remaining):
                let take = min(remaining, n - i)
                i += take
                if take == remaining { return .complete(consumed: i) }
                phase = .fixed(remaining: remaining - take)
            case .chunkSize:
                let b = buf[i]
                i += 1
                if b == 10 {
                    guard sawSizeDigit else { return .invalid }
                    phase = chunkSize == 0 ? .trailers : .chunkData(remaining: chunkSize)
                    lineLength = 0
                    chunkSize = 0
                    sawSizeDigit = false
                    inExtension = false
                } else if b == 13 || inExtension {
                    continue
                } else if b == 59 {  // ';' chunk extension
                    inExtension = true
                } else if let d = hexValue(b), chunkSize < (1 << 40) {
                    chunkSize = chunkSize << 4 | d
                    sawSizeDigit = true
                } else {
                    return .invalid
                }
            case .chunkData(let remaining):
                let take = min(remaining, n - i)
                i += take
                phase = take == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - take)
            case .chunkDataEnd:
                let b = buf[i]
                i += 1
                if b == 10 { phase = .chunkSize } else if b != 13 { return .invalid }
            case .trailers:
                let b = buf[i]
                i += 1
                if b == 10 {
                    if lineLength == 0 { return .complete(consumed: i) }
                    lineLength = 0
                } else if b != 13 {
                    lineLength += 1
                }
            }
        }
        return .needMore
    }

    /// Reads the status line and the framing headers from `head`; returns the body phase.
    private mutating func parseHead() -> Phase? {
        // "HTTP/1.x NNN"
        guard head.count >= 12, head[0] == 72, head[1] == 84, head[2] == 84, head[3] == 80, head[4] == 47 else {
            return nil
        }
        var code = 0
        for k in 9..<12 {
            guard let d = decimal(head[k]) else { return nil }
            code = code * 10 + d
        }
        status = code
        var contentLength: Int?
        var chunked = false
        var lineStart = 0
        var k = 0
        while k < head.count {
            if head[k] == 10 {
                let line = lineStart..<k
                if hasPrefix(line, "content-length:") {
                    var v = 0
                    var any = false
                    for j in (line.lowerBound + 15)..<line.upperBound {
                        if let d = decimal(head[j]) {
                            v = v * 10 + d
                            any = true
                        } else if head[j] != 32 && head[j] != 9 && head[j] != 13 {
                            return nil
                        }
                    }
                    if !any { return nil }
                    contentLength = v
                } else if hasPrefix(line, "transfer-encoding:") {
                    chunked = contains(line, "chunked")
                } else if hasPrefix(line, "connection:") {
                    closeDelimited = contains(line, "close")
                }
                lineStart = k + 1
            }
            k += 1
        }
        if (100..<200).contains(code) || code == 204 || code == 304 { return .fixed(remaining: 0) }
        if chunked { return .chunkSize }
        if let contentLength { return .fixed(remaining: contentLength) }
        return nil  // read-until-close bodies are not used by any origin in bench/
    }

    private func hasPrefix(_ line: Range<Int>, _ lower: StaticString) -> Bool {
        let len = lower.utf8CodeUnitCount
        guard line.count >= len else { return false }
        let p = lower.utf8Start
        for j in 0..<len where asciiLower(head[line.lowerBound + j]) != p[j] { return false }
        return true
    }

    private func contains(_ line: Range<Int>, _ lower: StaticString) -> Bool {
        let len = lower.utf8CodeUnitCount
        let p = lower.utf8Start
        guard line.count >= len else { return false }
        var s = line.lowerBound
        while s + len <= line.upperBound {
            var j = 0
            while j < len && asciiLower(head[s + j]) == p[j] { j += 1 }
            if j == len { return true }
            s += 1
        }
        return false
    }
}

@inline(__always) private func asciiLower(_ b: UInt8) -> UInt8 { b >= 65 && b <= 90 ? b | 0x20 : b }
@inline(__always) private func decimal(_ b: UInt8) -> Int? { b >= 48 && b <= 57 ? Int(b - 48) : nil }
@inline(__always) private func hexValue(_ b: UInt8) -> Int? {
    switch b {
    case 48...57: return Int(b - 48)
    case 97...102: return Int(b - 87)
    case 65...70: return Int(b - 55)
    default: return nil
    }
}
