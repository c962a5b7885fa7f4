/// How the body of a forwarded message will be delimited on the outgoing connection. The head writers emit the
/// matching framing fields and drop every framing field the peer sent (bodies are always de-chunked by the parser).
public enum OutboundFraming: Sendable, Equatable {
    /// No body follows. A response to HEAD (or a 304) keeps the origin's Content-Length value, as RFC 9110 §8.6
    /// allows; 1xx and 204 never carry one. A request gets no framing field.
    case bodiless
    /// Exactly this many bytes follow: `Content-Length: n`.
    case contentLength(Int)
    /// The body is re-chunked with `HTTP1Writer.appendChunkHeader` etc.: `Transfer-Encoding: chunked`.
    case chunked
    /// Response only: the body ends when the proxy closes the connection (HTTP/1.0 clients of an unknown-length
    /// body). Implies `Connection: close`.
    case closeDelimited
}
