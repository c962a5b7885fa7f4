/// Incremental, sans-IO parser for the responses on one origin connection.
///
/// Driving it is the same loop as `RequestParser`, plus:
/// - pass `requestIsHEAD: true` while the response to a HEAD request is expected (its framing fields describe a
///   body that is not sent); with pipelined requests, pass the method of the oldest unanswered request;
/// - `.informational` reports a 1xx interim head (forward 100 Continue to a client that asked for it); the final
///   head follows from the same parser;
/// - a close-delimited body (no Content-Length, no chunked) ends when the origin closes: call `finish()`, which
///   returns `.end` for it and `.error(.unexpectedEOF)` for any truncated message;
/// - after a 101 Switching Protocols head and its `.end`, the connection is a tunnel: stop calling `parse`.
///
/// Tolerance: bare LF line endings, a missing reason phrase, whitespace before a field colon (dropped), control
/// bytes other than NUL in values, and identical repeated Content-Length values are accepted. Still refused with
/// 502: obs-fold, differing Content-Length values, transfer codings other than a lone `chunked`, malformed chunk
/// framing, versions other than HTTP/1.0 and HTTP/1.1, and exceeded limits.
public struct ResponseParser: Sendable {
    private enum State: UInt8 { case head, body, switched, failed }

    /// The limits in force (the request-line limit bounds the status line).
    public let limits: HTTP1Limits
    private var state: State = .head
    private var scanner = HeadScanner()
    private var decoder: BodyDecoder
    private var failure: HTTPParseError?
    private var headStorage = ResponseHead()

    /// A parser for a new origin connection.
    public init(limits: HTTP1Limits = HTTP1Limits()) {
        self.limits = limits
        self.decoder = BodyDecoder(source: .upstream, limits: limits)
    }

    /// The most recent head (interim or final): valid from `.informational`/`.head` until the next head starts.
    public var head: ResponseHead { headStorage }

    /// Trailer fields of the last chunked response, valid after its `.end`.
    public var trailers: HTTPHeaders { decoder.trailers }

    /// Bytes of head storage this parser holds on to between responses.
    public var retainedCapacity: Int { headStorage.headers.bytes.capacity }

    /// True between responses: no byte of a next response has been consumed.
    public var isIdle: Bool { state == .head && scanner.atStart }

    /// Starts over for a new connection unless already idle (keeping buffer capacity then). Mutating on purpose:
    /// `if !p.isIdle { p = ResponseParser() }` on a parser stored in a class copied the whole parser (a retain
    /// per array) to read `isIdle`, on every request (perf).
    public mutating func resetUnlessIdle() {
        if !(state == .head && scanner.atStart) { self = ResponseParser(limits: limits) }
    }

    /// Consumes a prefix of `buf` and reports what it completed; see `ParseEvent`.
    public mutating func parse(_ buf: UnsafeRawBufferPointer, requestIsHEAD: Bool = false) -> ParseEvent {
        switch state {
        case .head:
            if buf.isEmpty { return .needMore }
            if scanner.atStart { headStorage.reset() }
            let config = HeadScanner.Config(
                firstLineLimit: limits.maxRequestLineBytes,
                firstLineError: .headersTooLarge,
                totalLimit: limits.maxHeaderBytes,
                totalError: .headersTooLarge,
                maxLines: limits.maxHeaderCount + 1,
                countError: .tooManyHeaders,
                allowBareLF: true,
                skipLeadingEmptyLines: true
            )
            let (result, consumed) = scanner.scan(buf, into: &headStorage.headers.bytes, config)
            switch result {
            case .needMore:
                return .needMore
            case .error(let kind):
                return fail(kind)
            case .complete:
                if let kind = headStorage.parse(requestIsHEAD: requestIsHEAD, checkValues: scanner.sawControl) {
                    return fail(kind)
                }
                scanner.reset()
                if headStorage.isInformational { return .informational(consumed: consumed) }
                switch headStorage.bodyKind {
                case .none: decoder.start(contentLength: 0)
                case .contentLength(let n): decoder.start(contentLength: n)
                case .chunked: decoder.startChunked()
                case .closeDelimited: decoder.startUntilClose()
                }
                state = .body
                return .head(consumed: consumed)
            }
        case .body:
            let event = decoder.decode(buf)
            switch event {
            case .end: state = headStorage.status == 101 ? .switched : .head
            case .error(let e):
                failure = e
                state = .failed
            default: break
            }
            return event
        case .switched:
            return .error(HTTPParseError(.protocolSwitched, .upstream))
        case .failed:
            return .error(failure!)
        }
    }

    /// The origin closed. Returns `.end(consumed: 0)` when that ends a close-delimited body, `.needMore` when no
    /// response was in progress, and `.error(.unexpectedEOF)` when a response was cut short.
    public mutating func finish() -> ParseEvent {
        switch state {
        case .head where scanner.atStart: return .needMore
        case .body where decoder.isDone:
            state = headStorage.status == 101 ? .switched : .head
            return .end(consumed: 0)
        case .body where decoder.isCloseDelimited:
            state = .head
            decoder.start(contentLength: 0)
            return .end(consumed: 0)
        case .failed: return .error(failure!)
        case .switched: return .needMore
        default: return fail(.unexpectedEOF)
        }
    }

    private mutating func fail(_ kind: HTTPParseError.Kind) -> ParseEvent {
        let e = HTTPParseError(kind, .upstream)
        failure = e
        state = .failed
        return .error(e)
    }
}
