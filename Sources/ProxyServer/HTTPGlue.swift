import ProxyCore
import ProxyHTTP1

/// Adapts the sans-IO HTTP/1 writers (which append to `[UInt8]`) to the connection's pooled `ByteBuffer`s.
/// Heads go through the worker's reusable scratch array; body bytes are copied once, straight into the buffer.
enum HTTPGlue {
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
