/// A response header block being built for `H2ServerSession.submitResponse`/`submitTrailers`: `:status` (for
/// responses) and fields with names lowercased, stored back to back in one reusable array. nghttp2 copies the
/// bytes at submission, so the block can be reused at once.
public struct H2HeaderBlock: Sendable {
    var bytes: [UInt8] = []
    /// (nameStart, nameLength, valueLength) per field; the value follows the name.
    var entries: [(Int32, Int32, Int32)] = []

    public init() {
        bytes.reserveCapacity(1024)
        entries.reserveCapacity(24)
    }

    /// Clears the block and starts a response with `status` (100...999).
    public mutating func reset(status: Int) {
        reset()
        let start = Int32(bytes.count)
        bytes.append(contentsOf: ":status".utf8)
        bytes.append(UInt8(truncatingIfNeeded: 0x30 + status / 100 % 10))
        bytes.append(UInt8(truncatingIfNeeded: 0x30 + status / 10 % 10))
        bytes.append(UInt8(truncatingIfNeeded: 0x30 + status % 10))
        entries.append((start, 7, 3))
    }

    /// Clears the block (for trailers, which have no `:status`).
    public mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        entries.removeAll(keepingCapacity: true)
    }

    public var count: Int { entries.count }

    /// Appends a field; the name is lowercased (HTTP/2 requires it, HTTP/1 origins send any case).
    public mutating func append(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let start = Int32(bytes.count)
        for b in name { bytes.append((b &- 0x41) < 26 ? b | 0x20 : b) }
        bytes.append(contentsOf: value)
        entries.append((start, Int32(name.count), Int32(value.count)))
    }

    public mutating func append(name: StaticString, value: StaticString) {
        append(
            name: UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount),
            value: UnsafeRawBufferPointer(start: value.utf8Start, count: value.utf8CodeUnitCount)
        )
    }

    /// Appends a field whose value is a decimal number.
    public mutating func append(name: StaticString, decimal n: Int) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { d in
            var v = max(0, n)
            var i = d.count
            repeat {
                i -= 1
                d[i] = UInt8(truncatingIfNeeded: 0x30 + v % 10)
                v /= 10
            } while v > 0
            append(
                name: UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount),
                value: UnsafeRawBufferPointer(rebasing: d[i...])
            )
        }
    }
}
