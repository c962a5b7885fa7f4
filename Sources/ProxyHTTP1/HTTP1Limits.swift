/// Size limits applied while parsing. One value is built from configuration and shared by all connections.
///
/// Exceeding a limit is an error, never a truncation: the request side answers 414 or 431 and closes.
public struct HTTP1Limits: Sendable, Equatable {
    /// Longest request line (or response status line), without its CRLF. Request side: 414 URI Too Long.
    public var maxRequestLineBytes: Int
    /// Largest head: start line, all field lines and the terminating empty line, CRLFs included. 431.
    public var maxHeaderBytes: Int
    /// Most field lines in one head. 431.
    public var maxHeaderCount: Int
    /// Longest chunk-size line after the size digits (chunk extensions, RFC 9112 §7.1.1). 400.
    public var maxChunkExtensionBytes: Int
    /// Largest trailer section after the last chunk, including its final CRLF. 431.
    public var maxTrailerBytes: Int
    /// Most trailer field lines. 431.
    public var maxTrailerCount: Int

    /// Defaults: 8 KiB request line, 32 KiB head, 100 fields, 1 KiB of chunk extensions, 8 KiB / 32 trailer fields.
    public init(
        maxRequestLineBytes: Int = 8 * 1024,
        maxHeaderBytes: Int = 32 * 1024,
        maxHeaderCount: Int = 100,
        maxChunkExtensionBytes: Int = 1024,
        maxTrailerBytes: Int = 8 * 1024,
        maxTrailerCount: Int = 32
    ) {
        precondition(maxRequestLineBytes > 0 && maxHeaderBytes > 0 && maxHeaderCount >= 0)
        precondition(maxChunkExtensionBytes >= 0 && maxTrailerBytes > 0 && maxTrailerCount >= 0)
        // Field ranges are stored as UInt32 offsets.
        precondition(maxHeaderBytes < Int(UInt32.max) && maxTrailerBytes < Int(UInt32.max))
        self.maxRequestLineBytes = maxRequestLineBytes
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxChunkExtensionBytes = maxChunkExtensionBytes
        self.maxTrailerBytes = maxTrailerBytes
        self.maxTrailerCount = maxTrailerCount
    }
}
