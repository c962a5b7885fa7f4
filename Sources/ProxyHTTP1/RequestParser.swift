/// Incremental, sans-IO parser for the requests of one client connection (keep-alive and pipelining included).
///
/// Driving it:
/// ```
/// var rest = bytesJustRead                      // caller-owned
/// loop: switch parser.parse(rest) {
/// case .needMore:                  read more (everything given was consumed)
/// case .head(let c):               use parser.head; drop c bytes; continue
/// case .body(let r, let c):        forward rest[r]; drop c bytes; continue  (stop here to apply backpressure)
/// case .end(let c):                request done; drop c bytes; continue     (next pipelined request follows)
/// case .error(let e):              send e.status (HTTP1Writer.appendSimpleResponse), close
/// }
/// ```
/// Allocation: the head storage grows to the largest head seen and is reused; body bytes are never copied.
///
/// Decisions on ambiguous input (RFC 9112/9110 leave a choice; the stricter one is taken everywhere):
/// - Line endings: CRLF only; bare LF and bare CR are 400. Up to 8 empty lines before a request line are skipped.
/// - Request line: `token SP target SP HTTP/d.d` with single spaces; target is visible ASCII (0x21–0x7E).
///   HTTP/1.0 and HTTP/1.1 only; another well-formed version is 505 (`PRI * HTTP/2.0` is `.http2Preface`, 505).
/// - Content-Length: one field line, `1*DIGIT`, at most 2^53. A second line or a list (`1, 1`) is 400 even when
///   the values agree (RFC 9110 §8.6 allows rejecting; no legitimate client needs it).
/// - Transfer-Encoding: together with Content-Length 400; on HTTP/1.0 400; `chunked` not last, `chunked` twice or
///   empty 400; `chunked` last but preceded by another coding (gzip, ...) 501. Only a lone `chunked` is accepted.
/// - Field lines: obs-fold 400, whitespace before colon 400, non-token name bytes 400, control bytes other than
///   HTAB (and DEL) in values 400.
/// - Host: required and unique on HTTP/1.1 (400), restricted to authority characters (400). Absolute-form targets
///   are passed through unchanged; the proxy routes on `host`.
/// - Trailers: parsed like fields with their own limits and exposed as `trailers`; never merged into the head.
public struct RequestParser: Sendable {
    private enum State: UInt8 { case head, body, failed }

    /// The limits in force.
    public private(set) var limits: HTTP1Limits
    private var state: State = .head
    private var scanner = HeadScanner()
    private var decoder: BodyDecoder
    private var failure: HTTPParseError?
    private var headStorage = RequestHead()

    /// A parser for a new connection.
    public init(limits: HTTP1Limits = HTTP1Limits()) {
        self.limits = limits
        self.decoder = BodyDecoder(source: .downstream, limits: limits)
    }

    /// Starts over as a parser for a new connection (under `limits`), keeping the head storage's capacity.
    public mutating func reset(limits: HTTP1Limits) {
        self.limits = limits
        state = .head
        scanner = HeadScanner()
        decoder = BodyDecoder(source: .downstream, limits: limits)
        failure = nil
        headStorage.reset()
    }

    /// Bytes of head storage this parser holds on to between requests.
    public var retainedCapacity: Int { headStorage.headers.bytes.capacity }

    /// The most recent request head: valid from `.head` until the first byte of the next request is parsed.
    public var head: RequestHead {
        _read { yield headStorage }  // borrowed in place: a getter returned a copy (two retains and releases)
    }

    /// Trailer fields of the last chunked request, valid after its `.end` (empty for other requests).
    public var trailers: HTTPHeaders { decoder.trailers }

    /// True between messages: no byte of a next request has been consumed. A peer closing here closed cleanly.
    public var isIdle: Bool { state == .head && scanner.atStart }

    /// Consumes a prefix of `buf` and reports what it completed; see `ParseEvent` for the meaning of `consumed`.
    public mutating func parse(_ buf: UnsafeRawBufferPointer) -> ParseEvent {
        switch state {
        case .head:
            if buf.isEmpty { return .needMore }
            if scanner.atStart { headStorage.reset() }
            let config = HeadScanner.Config(
                firstLineLimit: limits.maxRequestLineBytes,
                firstLineError: .requestLineTooLong,
                totalLimit: limits.maxHeaderBytes,
                totalError: .headersTooLarge,
                maxLines: limits.maxHeaderCount + 1,
                countError: .tooManyHeaders,
                allowBareLF: false,
                skipLeadingEmptyLines: true
            )
            let (result, consumed) = scanner.scan(buf, into: &headStorage.headers.bytes, config)
            switch result {
            case .needMore:
                return .needMore
            case .error(let kind):
                return fail(kind)
            case .complete:
                if let kind = headStorage.parse(checkValues: scanner.sawControl) { return fail(kind) }
                scanner.reset()
                if headStorage.isChunked {
                    decoder.startChunked()
                } else {
                    decoder.start(contentLength: headStorage.contentLength ?? 0)
                }
                state = .body
                return .head(consumed: consumed)
            }
        case .body:
            let event = decoder.decode(buf)
            switch event {
            case .end: state = .head
            case .error(let e):
                failure = e
                state = .failed
            default: break
            }
            return event
        case .failed:
            return .error(failure!)
        }
    }

    /// The client closed its sending side. Returns `.needMore` when that was a clean close between requests,
    /// otherwise `.error(.unexpectedEOF)` (a truncated request: do not forward its remainder).
    public mutating func finish() -> ParseEvent {
        switch state {
        case .head where scanner.atStart: return .needMore
        case .body where decoder.isDone:
            state = .head
            return .end(consumed: 0)
        case .failed: return .error(failure!)
        default: return fail(.unexpectedEOF)
        }
    }

    private mutating func fail(_ kind: HTTPParseError.Kind) -> ParseEvent {
        let e = HTTPParseError(kind, .downstream)
        failure = e
        state = .failed
        return .error(e)
    }
}
