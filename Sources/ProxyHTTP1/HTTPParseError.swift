/// Why a message was refused, where it came from, and the status to answer with.
///
/// Request-side errors carry the status to send to the client (400, 414, 431, 501, 505); response-side errors
/// always carry 502 (the origin misbehaved). In both cases the connection must be closed after the answer: the
/// framing can no longer be trusted.
public struct HTTPParseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Which peer sent the bad bytes.
    public enum Source: Sendable, Equatable {
        /// The client (request parser).
        case downstream
        /// The origin (response parser).
        case upstream
    }

    /// The specific fault, for counters and debug logs.
    public enum Kind: Sendable, Equatable {
        // Line structure
        /// LF not preceded by CR (requests; responses accept bare LF).
        case bareLF
        /// CR not followed by LF.
        case bareCR
        /// Too many empty lines before the request line.
        case tooManyLeadingEmptyLines
        // Start line
        /// Empty method or a non-token byte in it.
        case invalidMethod
        /// Empty target, or a byte outside visible ASCII (0x21-0x7E) in it.
        case invalidTarget
        /// Not `SP`-separated `method SP target SP version`, or a malformed status line.
        case invalidStartLine
        /// Not `HTTP/<digit>.<digit>` exactly.
        case invalidVersion
        /// Well-formed version other than 1.0/1.1.
        case unsupportedVersion
        /// `PRI * HTTP/2.0`: an HTTP/2 prior-knowledge client on an HTTP/1 port.
        case http2Preface
        case invalidStatusCode
        // Fields
        /// A field line starting with SP/HTAB (line folding, RFC 9112 §5.2).
        case obsoleteLineFolding
        /// SP/HTAB between a field name and its colon (RFC 9112 §5.1).
        case whitespaceBeforeColon
        /// A byte that is not a token character in a field name, or an empty name, or no colon.
        case invalidFieldName
        /// NUL, or (requests) any other control byte except HTAB, in a field value.
        case invalidFieldValue
        // Framing
        case invalidContentLength
        /// More than one Content-Length (requests), or differing values (responses).
        case conflictingContentLength
        /// Both Content-Length and Transfer-Encoding on a request.
        case contentLengthWithTransferEncoding
        /// Transfer-Encoding that is empty, repeats `chunked`, does not end in `chunked`, or is on HTTP/1.0.
        case invalidTransferEncoding
        /// A transfer coding other than `chunked` (gzip, deflate, ...): 501 on requests.
        case unsupportedTransferCoding
        case invalidChunkSize
        case chunkSizeOverflow
        case invalidChunkExtension
        case chunkExtensionTooLong
        /// Chunk data not followed by CRLF, or a chunk-size line not ending in CRLF.
        case missingChunkCRLF
        // Host
        case missingHost
        case duplicateHost
        case invalidHost
        // Limits
        case requestLineTooLong
        case headersTooLarge
        case tooManyHeaders
        case trailersTooLarge
        // Connection state
        /// The peer closed in the middle of a message.
        case unexpectedEOF
        /// `parse` was called after a 101 Switching Protocols response; the bytes are no longer HTTP/1.
        case protocolSwitched
    }

    /// The specific fault.
    public let kind: Kind
    /// Which peer sent the bytes.
    public let source: Source
    /// The status code to answer the client with.
    public let status: UInt16

    @inline(__always)
    init(_ kind: Kind, _ source: Source) {
        self.kind = kind
        self.source = source
        self.status = source == .upstream ? 502 : HTTPParseError.requestStatus(kind)
    }

    static func requestStatus(_ kind: Kind) -> UInt16 {
        switch kind {
        case .requestLineTooLong: return 414
        case .headersTooLarge, .tooManyHeaders, .trailersTooLarge: return 431
        case .unsupportedTransferCoding: return 501
        case .unsupportedVersion, .http2Preface: return 505
        default: return 400
        }
    }

    /// For debug logs: kind, source and status.
    public var description: String { "HTTPParseError(\(kind), \(source), \(status))" }
}
