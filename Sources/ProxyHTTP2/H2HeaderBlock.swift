import ProxyHTTP1

/// A response header block being built for `H2ServerSession.submitResponse`/`submitTrailers`: `:status` (for
/// responses) and fields with names lowercased, stored back to back in one reusable buffer. nghttp2 copies the
/// bytes at submission, so the block can be reused at once. A class: one block per connection, reused.
public final class H2HeaderBlock: @unchecked Sendable {
    // Hand-managed memory rather than `[UInt8]`: a response head is built field by field on every HTTP/2
    // response, and Array's per-append uniqueness and capacity checks (plus a byte-wise loop for lowercasing)
    // cost ~330 instructions per field (callgrind, HTTP/2 64 B row); here a field is two memcpy and one pass.
    // SAFETY: the block is owned by one connection (loop thread only); nghttp2 copies the bytes at submission.
    /// Names and values back to back: a field's value follows its name.
    private(set) var bytes: UnsafeMutablePointer<UInt8>
    private var byteCapacity: Int
    private(set) var byteCount = 0
    /// (nameStart, nameLength, valueLength) per field.
    private(set) var entries: [(Int32, Int32, Int32)] = []

    public init() {
        byteCapacity = 1024
        bytes = .allocate(capacity: byteCapacity)
        entries.reserveCapacity(24)
    }

    deinit { bytes.deallocate() }

    /// Room for `n` more bytes (grows by doubling; a head is bounded by the origin's header limits).
    @inline(__always)
    private func reserve(_ n: Int) {
        if byteCount + n <= byteCapacity { return }
        var cap = byteCapacity * 2
        while cap < byteCount + n { cap *= 2 }
        let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: cap)
        grown.update(from: bytes, count: byteCount)
        bytes.deallocate()
        bytes = grown
        byteCapacity = cap
    }

    /// Clears the block and starts a response with `status` (100...999).
    public func reset(status: Int) {
        reset()
        reserve(10)
        let p = bytes
        let name: StaticString = ":status"
        p.update(from: name.utf8Start, count: 7)
        p[7] = UInt8(truncatingIfNeeded: 0x30 + status / 100 % 10)
        p[8] = UInt8(truncatingIfNeeded: 0x30 + status / 10 % 10)
        p[9] = UInt8(truncatingIfNeeded: 0x30 + status % 10)
        byteCount = 10
        entries.append((0, 7, 3))
    }

    /// Clears the block (for trailers, which have no `:status`).
    public func reset() {
        byteCount = 0
        if !entries.isEmpty { entries.removeAll(keepingCapacity: true) }
    }

    public var count: Int { entries.count }

    /// Appends a field; the name is lowercased (HTTP/2 requires it, HTTP/1 origins send any case).
    public func append(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let nl = name.count
        let vl = value.count
        reserve(nl + vl)
        let start = byteCount
        let p = bytes + start
        if let n = name.baseAddress {
            copyLowercasingASCII(from: n.assumingMemoryBound(to: UInt8.self), to: p, count: nl)
        }
        if let v = value.baseAddress, vl > 0 {
            (p + nl).update(from: v.assumingMemoryBound(to: UInt8.self), count: vl)
        }
        byteCount = start + nl + vl
        entries.append((Int32(start), Int32(nl), Int32(vl)))
    }

    public func append(name: StaticString, value: StaticString) {
        append(
            name: UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount),
            value: UnsafeRawBufferPointer(start: value.utf8Start, count: value.utf8CodeUnitCount)
        )
    }

    /// Appends a field whose value is a decimal number.
    public func append(name: StaticString, decimal n: Int) {
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
