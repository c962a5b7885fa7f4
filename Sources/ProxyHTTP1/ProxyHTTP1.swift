// ProxyHTTP1: sans-IO HTTP/1.x parsing and serialization for the proxy's client and origin sides.
//
// Why hand-written: no maintained Swift HTTP/1 parser in the mirrored package list fits a sans-IO, allocation-free,
// smuggling-strict design. swift-nio's parser (NIOHTTP1, a port of http_parser) is tied to NIO's channel pipeline
// and ByteBuffer, allocates per message, and is more lenient than a TLS-terminating edge wants (it is written for
// both ends of a connection, not for a proxy that must refuse every ambiguous framing).
//
// How the connection code drives it (see `RequestParser`, `ResponseParser`, `HTTP1Writer`):
// - Bytes in, events out. `parse(_:)` never does I/O; it consumes a prefix of the buffer it is given and reports
//   how much. The caller owns every buffer, so backpressure is simply "stop calling parse".
// - A head is copied into storage owned by the parser (allocated once per connection, reused per request); body
//   bytes are reported as ranges of the caller's buffer and are never copied.
// - After `.end` the same parser parses the next pipelined message from the remaining bytes.
// - Errors are terminal: the caller sends `error.status` (request side) or 502 (response side) and closes.
//
// Nothing here imports ProxyCore today: nothing in it is shared yet, and a module that only needs its own sources
// is also what the libFuzzer build (fuzz/run-http1.sh) compiles in one swiftc invocation.
