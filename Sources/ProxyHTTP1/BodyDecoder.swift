/// Delimits a message body: counts Content-Length bytes, decodes chunked framing (RFC 9112 §7.1) including
/// extensions and the trailer section, or passes everything through until the connection closes.
///
/// Chunk-size lines: 1–16 hex digits (leading zeros count; more is refused as overflow), then either CRLF, or
/// optional SP/HTAB followed by ";" and an extension of at most `maxChunkExtensionBytes` non-control bytes. The
/// extension's inner syntax is not checked (it is dropped, never forwarded). Chunk data must be followed by CRLF.
struct BodyDecoder {
    private enum State: UInt8 {
        case done, length, untilClose
        case chunkSize, chunkSizeWhitespace, chunkExtension, chunkSizeLF, chunkData, chunkDataCR, chunkDataLF
        case trailers
    }

    private var state: State = .done
    private var remaining = 0
    private var digits = 0
    private var extensionBytes = 0
    private var trailerScanner = HeadScanner()
    /// Trailer fields of the last chunked message (empty otherwise).
    var trailers = HTTPHeaders()
    private let source: HTTPParseError.Source
    private let limits: HTTP1Limits

    init(source: HTTPParseError.Source, limits: HTTP1Limits) {
        self.source = source
        self.limits = limits
    }

    var isCloseDelimited: Bool { state == .untilClose }
    var isDone: Bool { state == .done }

    mutating func start(contentLength: Int) {
        state = contentLength > 0 ? .length : .done
        remaining = contentLength
        if trailers.count > 0 || !trailers.bytes.isEmpty { trailers.removeAll() }
    }

    mutating func startChunked() {
        state = .chunkSize
        remaining = 0
        digits = 0
        extensionBytes = 0
        trailers.removeAll()
    }

    mutating func startUntilClose() {
        state = .untilClose
        if trailers.count > 0 || !trailers.bytes.isEmpty { trailers.removeAll() }
    }

    @inline(__always)
    private func fail(_ kind: HTTPParseError.Kind) -> ParseEvent { .error(HTTPParseError(kind, source)) }

    mutating func decode(_ buf: UnsafeRawBufferPointer) -> ParseEvent {
        let n = buf.count
        var i = 0
        while true {
            switch state {
            case .done:
                return .end(consumed: i)
            case .length, .chunkData:
                if i == n { return .needMore }
                let take = min(remaining, n - i)
                remaining -= take
                if remaining == 0 { state = state == .length ? .done : .chunkDataCR }
                return .body(range: i..<(i + take), consumed: i + take)
            case .untilClose:
                if i == n { return .needMore }
                return .body(range: i..<n, consumed: n)
            case .chunkSize:
                if i == n { return .needMore }
                let b = buf[i]
                i += 1
                if let v = ASCII.hexValue(b) {
                    digits += 1
                    if digits > 16 || remaining > Int.max >> 4 { return fail(.chunkSizeOverflow) }
                    remaining = remaining << 4 | v
                } else if digits == 0 {
                    return fail(.invalidChunkSize)
                } else if b == ASCII.cr {
                    state = .chunkSizeLF
                } else if b == ASCII.semicolon {
                    state = .chunkExtension
                } else if ASCII.isOWS(b) {
                    state = .chunkSizeWhitespace
                } else {
                    return fail(.invalidChunkSize)
                }
            case .chunkSizeWhitespace, .chunkExtension:
                if i == n { return .needMore }
                let b = buf[i]
                i += 1
                if state == .chunkSizeWhitespace {
                    // BWS before ";" only: "1 \r\n" has no extension to excuse the space.
                    if b == ASCII.semicolon {
                        state = .chunkExtension
                    } else if !ASCII.isOWS(b) {
                        return fail(.invalidChunkExtension)
                    }
                } else if b == ASCII.cr {
                    state = .chunkSizeLF
                    continue
                } else if (b < 0x20 && b != ASCII.htab) || b == 0x7F {
                    return fail(.invalidChunkExtension)
                }
                extensionBytes += 1
                if extensionBytes > limits.maxChunkExtensionBytes { return fail(.chunkExtensionTooLong) }
            case .chunkSizeLF:
                if i == n { return .needMore }
                if buf[i] != ASCII.lf { return fail(.missingChunkCRLF) }
                i += 1
                extensionBytes = 0
                if remaining == 0 {
                    state = .trailers
                    trailerScanner.reset()
                } else {
                    state = .chunkData
                }
            case .chunkDataCR:
                if i == n { return .needMore }
                if buf[i] != ASCII.cr { return fail(.missingChunkCRLF) }
                i += 1
                state = .chunkDataLF
            case .chunkDataLF:
                if i == n { return .needMore }
                if buf[i] != ASCII.lf { return fail(.missingChunkCRLF) }
                i += 1
                state = .chunkSize
                digits = 0
            case .trailers:
                let config = HeadScanner.Config(
                    firstLineLimit: limits.maxTrailerBytes,
                    firstLineError: .trailersTooLarge,
                    totalLimit: limits.maxTrailerBytes,
                    totalError: .trailersTooLarge,
                    maxLines: limits.maxTrailerCount,
                    countError: .trailersTooLarge,
                    allowBareLF: source == .upstream,
                    skipLeadingEmptyLines: false
                )
                let (result, used) = trailerScanner.scan(
                    UnsafeRawBufferPointer(rebasing: buf[i..<n]),
                    into: &trailers.bytes,
                    config
                )
                i += used
                switch result {
                case .needMore:
                    return .needMore
                case .error(let kind):
                    return fail(kind)
                case .complete:
                    var fields: [HeaderField] = []
                    swap(&fields, &trailers.fields)
                    let bytes = trailers.bytes
                    let err = bytes.withUnsafeBufferPointer {
                        FieldLineParser.parse(
                            $0.baseAddress!,
                            from: 0,
                            to: $0.count,
                            strict: source == .downstream,
                            checkValues: trailerScanner.sawControl,
                            into: &fields
                        )
                    }
                    swap(&fields, &trailers.fields)
                    if let err { return fail(err) }
                    state = .done
                    return .end(consumed: i)
                }
            }
        }
    }
}
