// Rough CPU cost of the HTTP/1 hot path per keep-alive request: parse a typical browser request head, rewrite it
// toward the origin, parse a typical origin response head with a small body, rewrite it toward the client.
// Built by bench/run-http1.sh with -O; numbers are for comparison between commits, not assertions.
#if canImport(Glibc)
import Glibc
#endif

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

let request = Array(
    ("GET /assets/app.js?v=123 HTTP/1.1\r\nHost: www.example.com\r\n"
        + "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n"
        + "Accept: */*\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n"
        + "Referer: https://www.example.com/\r\nCookie: session=abcdef0123456789; theme=dark; _ga=GA1.2.3.4\r\n"
        + "Sec-Fetch-Dest: script\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Site: same-origin\r\nConnection: keep-alive\r\n\r\n")
        .utf8
)
let response = Array(
    ("HTTP/1.1 200 OK\r\nServer: origin\r\nDate: Sun, 29 Nov 2026 05:00:00 GMT\r\nContent-Type: application/javascript\r\n"
        + "Content-Length: 64\r\nCache-Control: max-age=3600\r\nETag: \"abc\"\r\nConnection: keep-alive\r\n\r\n"
        + String(repeating: "x", count: 64)).utf8
)

var requests = RequestParser()
var responses = ResponseParser()
let ctx = ForwardingContext(clientAddress: Array("203.0.113.7".utf8), stripped: HeaderNameList(["x-ja3", "x-ja4"]))
var out: [UInt8] = []
out.reserveCapacity(4096)
var sink = 0

func once() {
    request.withUnsafeBytes { buf in
        var rest = buf
        while true {
            switch requests.parse(rest) {
            case .head(let c):
                out.removeAll(keepingCapacity: true)
                HTTP1Writer.appendRequestHead(
                    requests.head,
                    framing: requests.head.outboundFraming,
                    forwarding: ctx,
                    to: &out
                )
                sink &+= out.count
                rest = UnsafeRawBufferPointer(rebasing: rest[c...])
            case .end(let c):
                rest = UnsafeRawBufferPointer(rebasing: rest[c...])
                return
            case .body(_, let c): rest = UnsafeRawBufferPointer(rebasing: rest[c...])
            default: fatalError()
            }
        }
    }
    response.withUnsafeBytes { buf in
        var rest = buf
        while true {
            switch responses.parse(rest) {
            case .head(let c):
                out.removeAll(keepingCapacity: true)
                let h = responses.head
                HTTP1Writer.appendResponseHead(
                    h,
                    framing: h.clientFraming(clientVersion: .http1_1),
                    closeConnection: false,
                    clientVersion: .http1_1,
                    to: &out
                )
                sink &+= out.count
                rest = UnsafeRawBufferPointer(rebasing: rest[c...])
            case .body(let r, let c):
                sink &+= r.count
                rest = UnsafeRawBufferPointer(rebasing: rest[c...])
            case .end: return
            default: fatalError()
            }
        }
    }
}

// Iterations from argv[1] (default 200 000); run under `valgrind --tool=callgrind` with a small count to compare
// instruction counts on a busy machine.
let n = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 200_000 : 200_000
for _ in 0..<max(1, n / 20) { once() }
let t0 = now()
for _ in 0..<n { once() }
let t1 = now()
print("request+response head parse+rewrite: \(Int((t1 - t0) / Double(n) * 1e9)) ns per exchange (sink \(sink % 10))")
