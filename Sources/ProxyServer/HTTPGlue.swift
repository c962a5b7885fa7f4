import ProxyCore
import ProxyHTTP1

/// Adapts the sans-IO HTTP/1 writers (which append to `[UInt8]`) to the connection's pooled `ByteBuffer`s.
/// Heads go through the worker's reusable scratch array; body bytes are copied once, straight into the buffer.
enum HTTPGlue {
    /// Serialises the request head toward the origin. False when it does not fit the buffer.
    static func writeUpstreamRequestHead(
        _ head: RequestHead,
        into buf: ByteBuffer,
        connection c: ClientConnection
    )
        -> Bool
    {
        let w = c.worker
        w.scratch.removeAll(keepingCapacity: true)
        HTTP1Writer.appendRequestHead(
            head,
            framing: head.outboundFraming,
            forwarding: c.forwardingContext(),
            to: &w.scratch
        )
        return buf.append(w.scratch)
    }

    struct ResponseFraming {
        var chunked: Bool
        var closeDelimited: Bool
    }

    /// Serialises the origin's response head toward the client; nil when it does not fit.
    static func writeClientResponseHead(
        _ resp: ResponseHead,
        requestVersion: HTTPVersion,
        isHEAD: Bool,
        close: Bool,
        into buf: ByteBuffer,
        scratch: inout [UInt8]
    ) -> ResponseFraming? {
        let framing: OutboundFraming = isHEAD ? .bodiless : resp.clientFraming(clientVersion: requestVersion)
        scratch.removeAll(keepingCapacity: true)
        HTTP1Writer.appendResponseHead(
            resp,
            framing: framing,
            closeConnection: close,
            clientVersion: requestVersion,
            to: &scratch
        )
        guard buf.append(scratch) else { return nil }
        return ResponseFraming(chunked: framing == .chunked, closeDelimited: framing == .closeDelimited)
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Appends one chunk (`<hex>\r\n<bytes>\r\n`); the caller reserved room (`chunkFramingReserve`).
    static func appendChunk(_ bytes: UnsafeRawBufferPointer, to buf: ByteBuffer) {
        guard bytes.count > 0 else { return }
        var tmp: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &tmp) { t in
            var n = bytes.count
            var i = 16
            repeat {
                i -= 1
                t[i] = hexDigits[n & 15]
                n >>= 4
            } while n > 0
            buf.append(UnsafeRawBufferPointer(rebasing: t[i..<16]))
        }
        buf.append("\r\n")
        buf.append(bytes)
        buf.append("\r\n")
    }

    static func writeSimpleResponse(
        status: Int,
        contentType: StaticString,
        body: [UInt8],
        close: Bool,
        isHEAD: Bool,
        into buf: ByteBuffer,
        scratch: inout [UInt8]
    ) {
        scratch.removeAll(keepingCapacity: true)
        body.withUnsafeBytes {
            HTTP1Writer.appendSimpleResponse(
                status: status,
                contentType: contentType,
                body: $0,
                closeConnection: close,
                includeBody: !isHEAD,
                to: &scratch
            )
        }
        buf.append(scratch)
    }

    static func writeErrorResponse(status: Int, into buf: ByteBuffer, scratch: inout [UInt8]) {
        scratch.removeAll(keepingCapacity: true)
        let reason = HTTP1Writer.reasonPhrase(status)
        HTTP1Writer.appendSimpleResponse(
            status: status,
            body: UnsafeRawBufferPointer(start: reason.utf8Start, count: reason.utf8CodeUnitCount),
            closeConnection: true,
            to: &scratch
        )
        buf.append(scratch)
    }
}
