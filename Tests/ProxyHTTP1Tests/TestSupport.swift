import EdgeProxyTestSupport
import XCTest

@testable import ProxyHTTP1

/// A normalized view of parser output, independent of how the input was split.
enum Ev: Equatable, CustomStringConvertible {
    case head(String)
    case info(Int)
    case body([UInt8])
    case end
    case error(HTTPParseError.Kind)

    var description: String {
        switch self {
        case .head(let s): return "head(\(s))"
        case .info(let s): return "info(\(s))"
        case .body(let b): return "body(\(String(decoding: b, as: UTF8.self).debugDescription))"
        case .end: return "end"
        case .error(let k): return "error(\(k))"
        }
    }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
func str<C: Collection>(_ b: C) -> String where C.Element == UInt8 { String(decoding: b, as: UTF8.self) }

func summary(_ h: RequestHead) -> String {
    "\(str(h.methodBytes)) \(str(h.target)) \(h.version) n=\(h.headers.count) cl=\(h.contentLength.map(String.init) ?? "-")"
        + " chunked=\(h.isChunked) ka=\(h.keepAlive) host=\(h.host.map { str($0) } ?? "-")"
}

func summary(_ h: ResponseHead) -> String {
    "\(h.status) \(str(h.reason)) \(h.version) n=\(h.headers.count) body=\(h.bodyKind) ka=\(h.keepAlive)"
}

/// Splits `input` at the given sorted cut points.
func pieces(_ input: [UInt8], _ cuts: [Int]) -> [[UInt8]] {
    var out: [[UInt8]] = []
    var start = 0
    for c in cuts where c > start && c < input.count {
        out.append(Array(input[start..<c]))
        start = c
    }
    out.append(Array(input[start...]))
    return out
}

private func appendEvent(_ e: Ev, to evs: inout [Ev]) {
    if case .body(let b) = e, case .body(let prev)? = evs.last {
        evs[evs.count - 1] = .body(prev + b)
    } else {
        evs.append(e)
    }
}

/// Feeds `chunks` to a request parser the way connection code would, returning the normalized events.
/// With `eof`, calls `finish()` at the end and records a resulting error.
func runRequests(
    _ chunks: [[UInt8]],
    limits: HTTP1Limits = HTTP1Limits(),
    eof: Bool = false,
    parser: inout RequestParser
) -> [Ev] {
    var evs: [Ev] = []
    var pending: [UInt8] = []
    var guardCount = 0
    for chunk in chunks {
        pending += chunk
        while true {
            guardCount += 1
            precondition(guardCount < 10_000_000, "parser does not make progress")
            let ev = pending.withUnsafeBytes { parser.parse($0) }
            switch ev {
            case .needMore:
                pending.removeAll()
            case .head(let c):
                appendEvent(.head(summary(parser.head)), to: &evs)
                pending.removeFirst(c)
                continue
            case .informational:
                XCTFail("request parser reported .informational")
                return evs
            case .body(let r, let c):
                precondition(r.upperBound <= c && !r.isEmpty)
                appendEvent(.body(Array(pending[r])), to: &evs)
                pending.removeFirst(c)
                continue
            case .end(let c):
                appendEvent(.end, to: &evs)
                pending.removeFirst(c)
                continue
            case .error(let e):
                appendEvent(.error(e.kind), to: &evs)
                return evs
            }
            break
        }
    }
    if eof, case .error(let e) = parser.finish() { appendEvent(.error(e.kind), to: &evs) }
    return evs
}

func runRequests(_ input: [UInt8], cuts: [Int] = [], limits: HTTP1Limits = HTTP1Limits(), eof: Bool = false) -> [Ev] {
    var p = RequestParser(limits: limits)
    return runRequests(pieces(input, cuts), limits: limits, eof: eof, parser: &p)
}

/// Feeds `chunks` to a response parser; `headFlags[i]` says whether response `i` answers a HEAD request.
/// With `eof`, calls `finish()` at the end and records `.end` or an error.
func runResponses(_ input: [UInt8], cuts: [Int] = [], headFlags: [Bool] = [], eof: Bool = false) -> [Ev] {
    var parser = ResponseParser()
    var evs: [Ev] = []
    var pending: [UInt8] = []
    var index = 0
    var guardCount = 0
    for chunk in pieces(input, cuts) {
        pending += chunk
        while true {
            guardCount += 1
            precondition(guardCount < 10_000_000, "parser does not make progress")
            let isHEAD = index < headFlags.count ? headFlags[index] : false
            let ev = pending.withUnsafeBytes { parser.parse($0, requestIsHEAD: isHEAD) }
            switch ev {
            case .needMore:
                pending.removeAll()
            case .head(let c):
                appendEvent(.head(summary(parser.head)), to: &evs)
                pending.removeFirst(c)
                continue
            case .informational(let c):
                appendEvent(.info(parser.head.status), to: &evs)
                pending.removeFirst(c)
                continue
            case .body(let r, let c):
                precondition(r.upperBound <= c && !r.isEmpty)
                appendEvent(.body(Array(pending[r])), to: &evs)
                pending.removeFirst(c)
                continue
            case .end(let c):
                appendEvent(.end, to: &evs)
                index += 1
                pending.removeFirst(c)
                continue
            case .error(let e):
                appendEvent(.error(e.kind), to: &evs)
                return evs
            }
            break
        }
    }
    if eof {
        switch parser.finish() {
        case .end: appendEvent(.end, to: &evs)
        case .error(let e): appendEvent(.error(e.kind), to: &evs)
        default: break
        }
    }
    return evs
}

/// The error a single complete request produces, or nil if it parses through `.end`.
func requestError(_ s: String, limits: HTTP1Limits = HTTP1Limits()) -> HTTPParseError? {
    var p = RequestParser(limits: limits)
    var input = bytes(s)
    while true {
        let ev = input.withUnsafeBytes { p.parse($0) }
        switch ev {
        case .needMore: return nil
        case .head(let c), .body(_, let c), .informational(let c): input.removeFirst(c)
        case .end: return nil
        case .error(let e): return e
        }
    }
}

/// Chunked encoding of `body` using chunk sizes from `rng`, with optional extensions and trailers.
func chunked(_ body: [UInt8], rng: inout SplitMix64, trailers: String = "") -> [UInt8] {
    var out: [UInt8] = []
    var i = 0
    while i < body.count {
        let n = min(body.count - i, 1 + rng.int(40))
        out += bytes(String(n, radix: 16, uppercase: rng.bool()))
        if rng.int(4) == 0 { out += bytes(rng.bool() ? ";ext=1" : " ; name=\"v\"") }
        out += bytes("\r\n")
        out += body[i..<(i + n)]
        out += bytes("\r\n")
        i += n
    }
    out += bytes("0\r\n" + trailers + "\r\n")
    return out
}
