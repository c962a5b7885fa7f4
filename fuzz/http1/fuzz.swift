// libFuzzer target for ProxyHTTP1, compiled together with the module's sources by fuzz/run-http1.sh (so internal
// API is visible). For every input it checks, for both parsers:
// - nothing traps (ASan + Swift runtime checks);
// - the verdict and events are identical whether the input arrives whole, split in two at a data-derived point,
//   or (for short inputs) one byte at a time;
// - every head the parser accepts is re-serialized by HTTP1Writer into a head the parser accepts again.

/// Order-sensitive digest of parser events, with consecutive body pieces hashed as one stream.
private struct Digest: Equatable {
    var events: [UInt64] = []
    private var bodyHash: UInt64 = 0
    private var inBody = false

    mutating func body(_ b: UnsafeRawBufferPointer) {
        if !inBody {
            inBody = true
            bodyHash = 0xcbf2_9ce4_8422_2325
        }
        for x in b { bodyHash = (bodyHash ^ UInt64(x)) &* 0x0000_0100_0000_01B3 }
    }

    mutating func event(_ tag: UInt64, _ value: UInt64 = 0) {
        if inBody {
            events.append(bodyHash)
            inBody = false
        }
        events.append(tag << 56 ^ value)
    }
}

private func hash(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for x in bytes { h = (h ^ UInt64(x)) &* 0x0000_0100_0000_01B3 }
    return h
}

private let fuzzLimits = HTTP1Limits(
    maxRequestLineBytes: 512,
    maxHeaderBytes: 2048,
    maxHeaderCount: 24,
    maxChunkExtensionBytes: 64,
    maxTrailerBytes: 256,
    maxTrailerCount: 4
)

private func checkRequestRoundTrip(_ head: RequestHead) {
    var out: [UInt8] = []
    let ctx = ForwardingContext(
        clientAddress: Array("2001:db8::7".utf8),
        stripped: HeaderNameList(["x-ja3", "x-forwarded-for"]),
        defaultHost: Array("origin".utf8)
    )
    HTTP1Writer.appendRequestHead(head, framing: head.outboundFraming, forwarding: ctx, to: &out)
    var again = RequestParser()
    let ev = out.withUnsafeBytes { again.parse($0) }
    guard ev == .head(consumed: out.count) else { fatalError("forwarded request head does not parse: \(ev)") }
    guard again.head.methodBytes == head.methodBytes, again.head.target == head.target,
        again.head.isChunked == head.isChunked, again.head.contentLength == head.contentLength
    else { fatalError("forwarded request head changed meaning") }
}

private func checkResponseRoundTrip(_ head: ResponseHead) {
    var out: [UInt8] = []
    for client in [HTTPVersion.http1_1, .http1_0] {
        out.removeAll(keepingCapacity: true)
        let framing = head.isInformational ? OutboundFraming.bodiless : head.clientFraming(clientVersion: client)
        HTTP1Writer.appendResponseHead(head, framing: framing, closeConnection: false, clientVersion: client, to: &out)
        var again = ResponseParser()
        let ev = out.withUnsafeBytes { again.parse($0) }
        switch ev {
        case .head(let c), .informational(let c):
            guard c == out.count, again.head.status == head.status else { fatalError("response round trip changed") }
        default:
            fatalError("forwarded response head does not parse: \(ev)")
        }
    }
}

private func runRequests(_ data: UnsafeRawBufferPointer, cuts: [Int], roundTrip: Bool) -> Digest {
    var parser = RequestParser(limits: fuzzLimits)
    var d = Digest()
    var pending: [UInt8] = []
    var start = 0
    for cut in cuts + [data.count] where cut >= start {
        pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[start..<cut]))
        start = cut
        var steps = 0
        while true {
            steps += 1
            if steps > 1_000_000 { fatalError("no progress") }
            let ev = pending.withUnsafeBytes { parser.parse($0) }
            switch ev {
            case .needMore:
                pending.removeAll(keepingCapacity: true)
            case .head(let c):
                d.event(1, hash(parser.head.headers.bytes) ^ UInt64(parser.head.headers.count))
                if roundTrip { checkRequestRoundTrip(parser.head) }
                pending.removeFirst(c)
                continue
            case .informational:
                fatalError("request parser reported .informational")
            case .body(let r, let c):
                if r.isEmpty || r.upperBound > c || c > pending.count { fatalError("bad body range") }
                pending.withUnsafeBytes { d.body(UnsafeRawBufferPointer(rebasing: $0[r])) }
                pending.removeFirst(c)
                continue
            case .end(let c):
                if c > pending.count { fatalError("bad consumed") }
                d.event(2)
                pending.removeFirst(c)
                continue
            case .error(let e):
                d.event(3, UInt64(e.status))
                return d
            }
            break
        }
    }
    if case .error(let e) = parser.finish() { d.event(4, UInt64(e.status)) }
    return d
}

private func runResponses(_ data: UnsafeRawBufferPointer, cuts: [Int], headMask: UInt8, roundTrip: Bool) -> Digest {
    var parser = ResponseParser(limits: fuzzLimits)
    var d = Digest()
    var pending: [UInt8] = []
    var start = 0
    var index = 0
    for cut in cuts + [data.count] where cut >= start {
        pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[start..<cut]))
        start = cut
        var steps = 0
        while true {
            steps += 1
            if steps > 1_000_000 { fatalError("no progress") }
            let isHEAD = headMask >> (index & 7) & 1 == 1
            let ev = pending.withUnsafeBytes { parser.parse($0, requestIsHEAD: isHEAD) }
            switch ev {
            case .needMore:
                pending.removeAll(keepingCapacity: true)
            case .head(let c), .informational(let c):
                d.event(1, hash(parser.head.headers.bytes) ^ UInt64(parser.head.status))
                if roundTrip { checkResponseRoundTrip(parser.head) }
                pending.removeFirst(c)
                continue
            case .body(let r, let c):
                if r.isEmpty || r.upperBound > c || c > pending.count { fatalError("bad body range") }
                pending.withUnsafeBytes { d.body(UnsafeRawBufferPointer(rebasing: $0[r])) }
                pending.removeFirst(c)
                continue
            case .end(let c):
                if c > pending.count { fatalError("bad consumed") }
                d.event(2)
                index += 1
                pending.removeFirst(c)
                continue
            case .error(let e):
                d.event(3, UInt64(e.kind == .protocolSwitched ? 1 : 0))
                return d
            }
            break
        }
    }
    switch parser.finish() {
    case .end: d.event(5)
    case .error: d.event(4)
    default: break
    }
    return d
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let buf = UnsafeRawBufferPointer(start: data, count: size)
    let split = size == 0 ? 0 : (Int(data[size - 1]) &* 131 &+ size) % (size + 1)
    let headMask = size == 0 ? 0 : data[0]

    let whole = runRequests(buf, cuts: [], roundTrip: true)
    if runRequests(buf, cuts: [split], roundTrip: false) != whole { fatalError("request events depend on split") }
    let r = runResponses(buf, cuts: [], headMask: headMask, roundTrip: true)
    if runResponses(buf, cuts: [split], headMask: headMask, roundTrip: false) != r {
        fatalError("response events depend on split")
    }
    if size <= 256 {
        let bytewise = Array(0..<size)
        if runRequests(buf, cuts: bytewise, roundTrip: false) != whole { fatalError("request bytewise differs") }
        if runResponses(buf, cuts: bytewise, headMask: headMask, roundTrip: false) != r {
            fatalError("response bytewise differs")
        }
    }
    return 0
}
