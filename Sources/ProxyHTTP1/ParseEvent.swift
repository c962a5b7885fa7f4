/// What one call to `RequestParser.parse(_:)` or `ResponseParser.parse(_:requestIsHEAD:)` found.
///
/// `consumed` counts bytes from the start of the buffer passed to that call; the caller drops them and passes the
/// rest (plus whatever arrives later) to the next call. Call `parse` again after every event except `.needMore`
/// and `.error`, even when no bytes remain: a message without a body reports `.end` on an empty buffer.
public enum ParseEvent: Equatable, Sendable {
    /// Every byte given was consumed (head bytes were copied into the parser); feed more when it arrives.
    case needMore
    /// A complete head was parsed; read it from the parser's `head` before the next head starts.
    case head(consumed: Int)
    /// Response side only: a 1xx interim head (e.g. 100 Continue), readable from `head`. The final response
    /// head follows; 101 Switching Protocols is reported as `.head` instead, because nothing follows it.
    case informational(consumed: Int)
    /// Body bytes, already de-chunked: `range` indexes the buffer given to this call. Forward them before
    /// reusing that buffer; `consumed >= range.upperBound` (it also covers chunk framing before the data).
    case body(range: Range<Int>, consumed: Int)
    /// The message is complete (after its trailers, for chunked bodies). The parser is ready for the next one.
    case end(consumed: Int)
    /// The input is not acceptable. Terminal: every later call returns the same error; close the connection.
    case error(HTTPParseError)
}
