/// A parsed response head from an origin. Its bytes live in `headers.bytes`; valid until the parser starts the
/// next head (an interim 1xx head is replaced by the final one).
public struct ResponseHead: Sendable {
    /// How the body of this response is delimited on the origin connection (RFC 9112 §6.3).
    public enum BodyKind: Sendable, Equatable {
        /// HEAD response, 1xx, 204, 304, or Content-Length: 0.
        case none
        /// Exactly this many bytes (> 0).
        case contentLength(Int)
        /// Chunked transfer coding.
        case chunked
        /// Read until the origin closes (no framing field).
        case closeDelimited
    }

    /// The whole head as received, plus the field index.
    public internal(set) var headers = HTTPHeaders()
    /// HTTP/1.0 or HTTP/1.1.
    public internal(set) var version: HTTPVersion = .http1_1
    /// Three-digit status code, 100...999.
    public internal(set) var status = 0
    var reasonStart = 0
    var reasonEnd = 0
    /// The Content-Length value (identical repeats allowed), even when the body is not sent (HEAD, 304).
    public internal(set) var contentLength: Int?
    /// How the body is delimited.
    public internal(set) var bodyKind: BodyKind = .none
    /// Whether the origin connection can carry another request after this response.
    public internal(set) var keepAlive = true

    /// The reason phrase as received (may be empty).
    public var reason: ArraySlice<UInt8> { headers.bytes[reasonStart..<reasonEnd] }
    /// 1xx other than 101: an interim response, followed by the final one.
    public var isInformational: Bool { status >= 100 && status < 200 && status != 101 }
    /// Whether body bytes follow the head.
    public var hasBody: Bool { bodyKind != .none }

    /// The framing to use toward a client speaking `clientVersion` for this response's body: the same length,
    /// chunked for unknown lengths on HTTP/1.1, close-delimited on HTTP/1.0 (which cannot read chunked).
    public func clientFraming(clientVersion: HTTPVersion) -> OutboundFraming {
        switch bodyKind {
        case .none: return .bodiless
        case .contentLength(let n): return .contentLength(n)
        case .chunked, .closeDelimited: return clientVersion == .http1_1 ? .chunked : .closeDelimited
        }
    }

    mutating func reset() {
        headers.removeAll()
        version = .http1_1
        status = 0
        reasonStart = 0
        reasonEnd = 0
        contentLength = nil
        bodyKind = .none
        keepAlive = true
    }

    /// Parses the complete head in `headers.bytes`; `requestIsHEAD` selects the no-body rule of RFC 9112 §6.3 (1).
    mutating func parse(requestIsHEAD: Bool, checkValues: Bool) -> HTTPParseError.Kind? {
        let bytes = headers.bytes
        var fields: [HeaderField] = []
        swap(&fields, &headers.fields)
        defer { swap(&fields, &headers.fields) }
        return bytes.withUnsafeBufferPointer { buf -> HTTPParseError.Kind? in
            let p = buf.baseAddress!
            let lf = ASCII.firstLF(p, buf.count)
            var lineEnd = lf
            if lineEnd > 0 && p[lineEnd - 1] == ASCII.cr { lineEnd -= 1 }
            if let e = parseStatusLine(p, lineEnd) { return e }
            if let e = FieldLineParser.parse(
                p,
                from: lf + 1,
                to: buf.count,
                strict: false,
                checkValues: checkValues,
                into: &fields
            ) {
                return e
            }
            return interpretFields(p, fields, requestIsHEAD: requestIsHEAD)
        }
    }

    /// `HTTP/1.x SP 3DIGIT [SP reason]`: a missing reason, with or without its SP, is tolerated (origins send
    /// `HTTP/1.1 200\r\n`). Reason bytes are anything but NUL.
    private mutating func parseStatusLine(_ p: UnsafePointer<UInt8>, _ lineEnd: Int) -> HTTPParseError.Kind? {
        guard lineEnd >= 12 else { return .invalidStartLine }
        guard p[0] == 0x48, p[1] == 0x54, p[2] == 0x54, p[3] == 0x50, p[4] == 0x2F,
            p[5] &- 0x30 < 10, p[6] == 0x2E, p[7] &- 0x30 < 10
        else { return .invalidVersion }
        switch (p[5], p[7]) {
        case (0x31, 0x31): version = .http1_1
        case (0x31, 0x30): version = .http1_0
        default: return .unsupportedVersion
        }
        guard p[8] == ASCII.sp else { return .invalidStartLine }
        let d0 = p[9] &- 0x30
        let d1 = p[10] &- 0x30
        let d2 = p[11] &- 0x30
        guard d0 < 10, d1 < 10, d2 < 10, d0 >= 1 else { return .invalidStatusCode }
        status = Int(d0) * 100 + Int(d1) * 10 + Int(d2)
        reasonStart = lineEnd
        reasonEnd = lineEnd
        if lineEnd > 12 {
            guard p[12] == ASCII.sp else { return .invalidStatusCode }
            reasonStart = 13
            for j in 13..<lineEnd where p[j] == 0 { return .invalidStartLine }
        }
        return nil
    }

    private mutating func interpretFields(
        _ p: UnsafePointer<UInt8>,
        _ fields: [HeaderField],
        requestIsHEAD: Bool
    ) -> HTTPParseError.Kind? {
        var sawTE = false
        var teCodings = 0
        var onlyChunked = true
        var close = false
        var keepAliveToken = false
        var badLength = false
        for f in fields {
            let ns = Int(f.nameStart)
            let nl = Int(f.nameEnd) - ns
            let vs = Int(f.valueStart)
            let ve = Int(f.valueEnd)
            switch nl {
            case 10 where ASCII.equalsIgnoringCase(p + ns, nl, "connection"):
                _ = ASCII.forEachListElement(p, vs, ve) { s, e in
                    if ASCII.equalsIgnoringCase(p + s, e - s, "close") { close = true }
                    if ASCII.equalsIgnoringCase(p + s, e - s, "keep-alive") { keepAliveToken = true }
                    return true
                }
            case 14 where ASCII.equalsIgnoringCase(p + ns, nl, "content-length"):
                // Responses: identical repeats, on one line as a list or on several lines, are merged (RFC 9110
                // §8.6); differing or malformed values are a 502.
                if vs == ve { badLength = true }
                let ok = ASCII.forEachListElement(p, vs, ve) { s, e in
                    guard let n = parseContentLength(p, s, e) else { return false }
                    if let previous = contentLength, previous != n { return false }
                    contentLength = n
                    return true
                }
                if !ok { badLength = true }
            case 17 where ASCII.equalsIgnoringCase(p + ns, nl, "transfer-encoding"):
                sawTE = true
                _ = ASCII.forEachListElement(p, vs, ve) { s, e in
                    teCodings += 1
                    if !ASCII.equalsIgnoringCase(p + s, e - s, "chunked") { onlyChunked = false }
                    return true
                }
            default:
                break
            }
        }
        keepAlive = close ? false : (version == .http1_1 || keepAliveToken)
        // RFC 9112 §6.3 (1): no body, whatever the framing fields say.
        if requestIsHEAD || (status >= 100 && status < 200) || status == 204 || status == 304 {
            bodyKind = .none
            // A 1xx/204 cannot have a meaningful length; ignore a broken one rather than fail a bodiless response.
            if badLength { contentLength = nil }
            return nil
        }
        if sawTE {
            // Only a lone `chunked` is forwardable: the body is de-chunked here and re-framed for the client, so
            // any other transfer coding would reach the client without its label.
            if teCodings != 1 || !onlyChunked || version == .http1_0 { return .unsupportedTransferCoding }
            bodyKind = .chunked
            // RFC 9112 §6.3 (3): TE overrides CL, and the connection must not be reused.
            if contentLength != nil || badLength {
                contentLength = nil
                keepAlive = false
            }
            return nil
        }
        if badLength { return contentLength == nil ? .invalidContentLength : .conflictingContentLength }
        if let n = contentLength {
            bodyKind = n > 0 ? .contentLength(n) : .none
        } else {
            bodyKind = .closeDelimited
            keepAlive = false
        }
        return nil
    }
}
