/// A parsed request head. Its bytes live in `headers.bytes`; every accessor is a view of them.
///
/// Valid until the parser starts the next head. Keeping a copy is safe (copy-on-write) but makes the parser
/// allocate fresh storage for the next request, so copy only what must outlive the request.
public struct RequestHead: Sendable {
    /// The whole head as received, plus the field index.
    public internal(set) var headers = HTTPHeaders()
    /// The method, classified; exact bytes in `methodBytes`.
    public internal(set) var method: HTTPMethod = .get
    /// HTTP/1.0 or HTTP/1.1.
    public internal(set) var version: HTTPVersion = .http1_1
    var methodEnd = 0
    var targetStart = 0
    var targetEnd = 0
    /// The Content-Length value, when the request has one (never together with chunked).
    public internal(set) var contentLength: Int?
    /// Transfer-Encoding is exactly `chunked`.
    public internal(set) var isChunked = false
    /// Whether the client allows another request on this connection after this one: HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    public internal(set) var keepAlive = true
    /// `Expect: 100-continue` was sent by an HTTP/1.1 client (other expectations are ignored and forwarded).
    public internal(set) var expectsContinue = false
    var hostIndex = -1
    /// Connection carried a token other than close/keep-alive (names of more hop-by-hop fields).
    var connectionNamesOthers = false
    /// Absolute-form target (`http://authority/path`): the authority's range and where the origin-form part
    /// (path and query) starts; -1 otherwise. RFC 9112 §3.2.2: the authority replaces Host.
    var authorityStart = -1
    var authorityEnd = -1
    var originFormStart = -1

    /// The method token exactly as received.
    public var methodBytes: ArraySlice<UInt8> { headers.bytes[0..<methodEnd] }
    /// The request target exactly as received (origin-form, absolute-form, authority-form or `*`).
    public var target: ArraySlice<UInt8> { headers.bytes[targetStart..<targetEnd] }
    /// The Host value, when present (always present on HTTP/1.1; unique; may be empty).
    public var host: ArraySlice<UInt8>? { hostIndex >= 0 ? headers.value(at: hostIndex) : nil }
    /// The target is in absolute-form (`http://host/path`).
    public var isAbsoluteForm: Bool { authorityStart >= 0 }
    /// The host the request is for: the authority of an absolute-form target (which overrides Host, RFC 9112
    /// §3.2.2), else the Host value.
    public var effectiveHost: ArraySlice<UInt8>? {
        authorityStart >= 0 ? headers.bytes[authorityStart..<authorityEnd] : host
    }
    /// The origin-form of the target (path and query; `/` for an absolute-form target without a path).
    public var originFormTarget: ArraySlice<UInt8> {
        originFormStart >= 0 ? headers.bytes[originFormStart..<targetEnd] : target
    }
    /// Whether body bytes follow the head (chunked, or Content-Length > 0).
    public var hasBody: Bool { isChunked || (contentLength ?? 0) > 0 }

    /// The framing to use toward the origin for the same body: unchanged length, re-chunked, or none.
    public var outboundFraming: OutboundFraming {
        if isChunked { return .chunked }
        if let n = contentLength { return .contentLength(n) }
        return .bodiless
    }

    mutating func reset() {
        headers.removeAll()
        method = .get
        version = .http1_1
        methodEnd = 0
        targetStart = 0
        targetEnd = 0
        contentLength = nil
        isChunked = false
        keepAlive = true
        expectsContinue = false
        hostIndex = -1
        connectionNamesOthers = false
        authorityStart = -1
        authorityEnd = -1
        originFormStart = -1
    }

    /// Parses the complete head in `headers.bytes` and derives framing. Decisions on ambiguous input are listed
    /// on `RequestParser`.
    mutating func parse(checkValues: Bool) -> HTTPParseError.Kind? {
        // A second reference to the bytes for reading (never mutated while it lives), and the field array moved
        // out so appending to it stays in place.
        let bytes = headers.bytes
        var fields: [HeaderField] = []
        swap(&fields, &headers.fields)
        defer { swap(&fields, &headers.fields) }
        return bytes.withUnsafeBufferPointer { buf -> HTTPParseError.Kind? in
            let p = buf.baseAddress!
            let lf = ASCII.firstLF(p, buf.count)
            if let e = parseRequestLine(p, lf - 1) { return e }  // the scanner guarantees CRLF
            if let e = FieldLineParser.parse(
                p,
                from: lf + 1,
                to: buf.count,
                strict: true,
                checkValues: checkValues,
                into: &fields
            ) {
                return e
            }
            return interpretFields(p, fields)
        }
    }

    private mutating func parseRequestLine(_ p: UnsafePointer<UInt8>, _ lineEnd: Int) -> HTTPParseError.Kind? {
        var i = 0
        while i < lineEnd && ASCII.isToken(p[i]) { i += 1 }
        if i == 0 || i == lineEnd || p[i] != ASCII.sp { return i == 0 ? .invalidMethod : .invalidStartLine }
        methodEnd = i
        // method SP target SP HTTP/x.y: the version is the last 8 bytes.
        guard lineEnd - i >= 1 + 1 + 1 + 8 else { return .invalidStartLine }
        let v = lineEnd - 8
        if p[v - 1] != ASCII.sp { return .invalidStartLine }
        targetStart = i + 1
        targetEnd = v - 1
        if !ASCII.allVisible(p, targetStart, targetEnd) { return .invalidTarget }
        method = HTTPMethod.classify(p, methodEnd)
        if let e = parseAbsoluteForm(p) { return e }
        guard p[v] == 0x48, p[v + 1] == 0x54, p[v + 2] == 0x54, p[v + 3] == 0x50, p[v + 4] == 0x2F,
            p[v + 5] &- 0x30 < 10, p[v + 6] == 0x2E, p[v + 7] &- 0x30 < 10
        else { return .invalidVersion }
        switch (p[v + 5], p[v + 7]) {
        case (0x31, 0x31): version = .http1_1
        case (0x31, 0x30): version = .http1_0
        case (0x32, 0x30):
            let isPRI = methodEnd == 3 && p[0] == 0x50 && p[1] == 0x52 && p[2] == 0x49
            return isPRI && targetEnd - targetStart == 1 && p[targetStart] == 0x2A ? .http2Preface : .unsupportedVersion
        default: return .unsupportedVersion
        }
        return nil
    }

    /// Recognises an absolute-form target (`http://` or `https://`, scheme case-insensitive). Its authority must
    /// be non-empty and carry no userinfo (`user@host` is refused: RFC 9110 §4.2.4 deprecates it, and it has been
    /// used to make proxies and origins disagree about the host).
    private mutating func parseAbsoluteForm(_ p: UnsafePointer<UInt8>) -> HTTPParseError.Kind? {
        var i = targetStart
        let n = targetEnd - targetStart
        let prefix: Int
        if n >= 7 && ASCII.equalsIgnoringCase(p + i, 7, "http://") {
            prefix = 7
        } else if n >= 8 && ASCII.equalsIgnoringCase(p + i, 8, "https://") {
            prefix = 8
        } else {
            return nil
        }
        i += prefix
        let start = i
        while i < targetEnd && p[i] != 0x2F && p[i] != 0x3F && p[i] != 0x23 {
            if p[i] == 0x40 { return .invalidTarget }  // userinfo
            i += 1
        }
        guard i > start else { return .invalidTarget }
        authorityStart = start
        authorityEnd = i
        originFormStart = i
        return nil
    }

    private mutating func interpretFields(_ p: UnsafePointer<UInt8>, _ fields: [HeaderField]) -> HTTPParseError.Kind? {
        var sawTE = false
        var teCodings = 0
        var chunkedCount = 0
        var lastIsChunked = false
        var otherCoding = false
        var close = false
        var keepAliveToken = false
        for (index, f) in fields.enumerated() {
            let ns = Int(f.nameStart)
            let nl = Int(f.nameEnd) - ns
            let vs = Int(f.valueStart)
            let ve = Int(f.valueEnd)
            switch nl {
            case 4 where ASCII.equalsIgnoringCase(p + ns, nl, "host"):
                if hostIndex >= 0 { return .duplicateHost }
                for j in vs..<ve where !ASCII.isHostByte(p[j]) { return .invalidHost }
                hostIndex = index
            case 6 where ASCII.equalsIgnoringCase(p + ns, nl, "expect"):
                if ASCII.equalsIgnoringCase(p + vs, ve - vs, "100-continue") { expectsContinue = true }
            case 10 where ASCII.equalsIgnoringCase(p + ns, nl, "connection"):
                _ = ASCII.forEachListElement(p, vs, ve) { s, e in
                    if ASCII.equalsIgnoringCase(p + s, e - s, "close") {
                        close = true
                    } else if ASCII.equalsIgnoringCase(p + s, e - s, "keep-alive") {
                        keepAliveToken = true
                    } else {
                        connectionNamesOthers = true
                    }
                    return true
                }
            case 14 where ASCII.equalsIgnoringCase(p + ns, nl, "content-length"):
                // Requests: exactly one Content-Length line holding 1*DIGIT. Lists ("1, 1") and repeats are
                // refused even when identical: no real client sends them, and only smuggling attempts need them.
                if contentLength != nil { return .conflictingContentLength }
                guard let n = parseContentLength(p, vs, ve) else { return .invalidContentLength }
                contentLength = n
            case 17 where ASCII.equalsIgnoringCase(p + ns, nl, "transfer-encoding"):
                sawTE = true
                _ = ASCII.forEachListElement(p, vs, ve) { s, e in
                    teCodings += 1
                    lastIsChunked = ASCII.equalsIgnoringCase(p + s, e - s, "chunked")
                    if lastIsChunked { chunkedCount += 1 } else { otherCoding = true }
                    return true
                }
            default:
                break
            }
        }
        if sawTE {
            if contentLength != nil { return .contentLengthWithTransferEncoding }
            // RFC 9112 §6.1: TE on HTTP/1.0 means faulty framing.
            if version == .http1_0 { return .invalidTransferEncoding }
            // RFC 9112 §6.3 (4): chunked must be final on a request, else 400. A known-final chunked with other
            // codings before it is well-framed but unsupported: 501 (§6.1), as is chunked applied twice (400).
            if teCodings == 0 || !lastIsChunked || chunkedCount > 1 { return .invalidTransferEncoding }
            if otherCoding { return .unsupportedTransferCoding }
            isChunked = true
        }
        if version == .http1_1 && hostIndex < 0 { return .missingHost }
        // RFC 9110 §10.1.1: a 100-continue expectation from an HTTP/1.0 client is ignored.
        if version == .http1_0 { expectsContinue = false }
        keepAlive = close ? false : (version == .http1_1 || keepAliveToken)
        return nil
    }
}

/// Parses `1*DIGIT` from `p[s..<e]`; nil when empty, not all digits, or above 2^53 (no real body is that large,
/// and a bound well under Int.max keeps arithmetic on it overflow-free).
@inline(__always)
func parseContentLength(_ p: UnsafePointer<UInt8>, _ s: Int, _ e: Int) -> Int? {
    if s == e { return nil }
    var n = 0
    for j in s..<e {
        let d = p[j] &- 0x30
        if d >= 10 { return nil }
        n = n &* 10 &+ Int(d)
        if n > 1 << 53 { return nil }
    }
    return n
}
