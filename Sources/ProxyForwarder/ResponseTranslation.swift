import ProxyCore
import ProxyHTTP1

/// The HTTP/1 session's response translation: the origin's response as HTTP/1.x bytes for the client — the same
/// length, re-chunked for an HTTP/1.1 client when the length is unknown, or close-delimited for HTTP/1.0 (which
/// cannot read chunked). Used by `ClientConnection` and by the forwarder's table tests, so both see one encoder.
public struct HTTP1ResponseEncoder: Sendable {
    /// The body is re-chunked toward the client.
    public private(set) var chunked = false
    /// The body ends when the proxy closes the connection (HTTP/1.0 client, unknown length).
    public private(set) var closeDelimited = false

    public init() {}

    /// Writes the response head into `buf` (through `scratch`). False when it does not fit (nothing written).
    public mutating func head(
        _ resp: ResponseHead,
        requestVersion: HTTPVersion,
        isHEAD: Bool,
        close: Bool,
        into buf: ByteBuffer,
        scratch: inout [UInt8]
    ) -> Bool {
        let framing: OutboundFraming = isHEAD ? .bodiless : resp.clientFraming(clientVersion: requestVersion)
        scratch.removeAll(keepingCapacity: true)
        HTTP1Writer.appendResponseHead(
            resp,
            framing: framing,
            closeConnection: close,
            clientVersion: requestVersion,
            to: &scratch
        )
        guard buf.append(scratch) else { return false }
        chunked = framing == .chunked
        closeDelimited = framing == .closeDelimited
        return true
    }

    /// Body bytes `buf` can take now (room for chunk framing kept when re-chunking).
    public func room(in buf: ByteBuffer) -> Int { buf.freeCount - (chunked ? chunkFramingReserve : 0) }

    /// Appends body bytes (at most `room(in:)`).
    public func body(_ bytes: UnsafeRawBufferPointer, into buf: ByteBuffer) {
        if chunked { OriginForwarder.appendChunk(bytes, to: buf) } else { buf.append(bytes) }
    }

    /// Ends the body: the last chunk when re-chunking (a close-delimited body ends with the connection).
    public func end(into buf: ByteBuffer) {
        if chunked { buf.append("0\r\n\r\n") }
    }
}

/// The HTTP/2 session's response translation rules (RFC 9113 §8.1): which origin responses can be expressed,
/// whether DATA follows the HEADERS, and the content-length to announce. Shared by `H2Connection` and the tests.
public enum H2ResponseTranslation {
    /// 1xx heads other than the interim ones (which the forwarder drops) and 101 cannot cross into HTTP/2.
    public static func canTranslate(_ head: ResponseHead) -> Bool { head.status >= 200 }

    /// DATA frames follow the HEADERS (false: the HEADERS frame carries END_STREAM).
    public static func hasBody(_ head: ResponseHead, isHEAD: Bool) -> Bool { head.bodyKind != .none && !isHEAD }

    /// The content-length field to send: the origin's length (also for HEAD and 304, as RFC 9110 §8.6 allows),
    /// never for 204.
    public static func contentLength(_ head: ResponseHead) -> Int? {
        head.status == 204 ? nil : head.contentLength
    }
}
