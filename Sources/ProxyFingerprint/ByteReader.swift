/// A bounds-checked cursor over untrusted bytes, the only way the parser reads memory.
///
/// Every read checks `pos + n <= end` before touching the buffer, so a malformed length can make a read throw but
/// never leave `[start, end)`. Positions are absolute indices into `base` (and so are the offsets in errors).
struct ByteReader {
    // SAFETY: the parser only creates readers over buffers that outlive the parse call (the caller's array or
    // raw buffer, borrowed for the duration of `parse`), and never stores a reader.
    let base: UnsafeRawBufferPointer
    private(set) var pos: Int
    let end: Int

    typealias Field = ClientHelloParseError.Field

    init(_ base: UnsafeRawBufferPointer, from start: Int, to end: Int) {
        precondition(start >= 0 && start <= end && end <= base.count, "ByteReader range outside its buffer")
        self.base = base
        self.pos = start
        self.end = end
    }

    var remaining: Int { end - pos }
    var isAtEnd: Bool { pos == end }

    @inline(__always)
    private func need(_ n: Int, _ what: Field) throws(ClientHelloParseError) {
        if end - pos < n { throw .truncated(what: what, offset: pos, needed: n, available: end - pos) }
    }

    @inline(__always)
    mutating func u8(_ what: Field) throws(ClientHelloParseError) -> UInt8 {
        try need(1, what)
        let v = base[pos]
        pos += 1
        return v
    }

    @inline(__always)
    mutating func u16(_ what: Field) throws(ClientHelloParseError) -> UInt16 {
        try need(2, what)
        let v = UInt16(base[pos]) << 8 | UInt16(base[pos + 1])
        pos += 2
        return v
    }

    mutating func skip(_ n: Int, _ what: Field) throws(ClientHelloParseError) {
        try need(n, what)
        pos += n
    }

    /// Reads a 1- or 2-byte length and returns a reader over that many following bytes, advancing past them.
    /// A length beyond the container is a lie (`lengthMismatch`), not a truncation: the container's own length was
    /// already checked against the input.
    @inline(__always)
    mutating func vector(lengthBytes: Int, _ what: Field) throws(ClientHelloParseError) -> ByteReader {
        let lengthOffset = pos
        let n = lengthBytes == 1 ? Int(try u8(what)) : Int(try u16(what))
        if n > end - pos { throw .lengthMismatch(what: what, offset: lengthOffset, declared: n, actual: end - pos) }
        let sub = ByteReader(base, from: pos, to: pos + n)
        pos += n
        return sub
    }

    /// Like `vector`, but the vector must fill the rest of this reader exactly (an extension body that is one
    /// length-prefixed list).
    mutating func exactVector(lengthBytes: Int, _ what: Field) throws(ClientHelloParseError) -> ByteReader {
        let lengthOffset = pos
        let sub = try vector(lengthBytes: lengthBytes, what)
        if !isAtEnd {
            throw .lengthMismatch(
                what: what,
                offset: lengthOffset,
                declared: sub.end - sub.pos,
                actual: end - lengthOffset - lengthBytes
            )
        }
        return sub
    }

    /// The remaining bytes as 16-bit big-endian values; an odd count is a bad vector length.
    mutating func u16List(_ what: Field) throws(ClientHelloParseError) -> [UInt16] {
        if remaining & 1 != 0 { throw .badVectorLength(what: what, offset: pos, length: remaining) }
        var out: [UInt16] = []
        out.reserveCapacity(remaining / 2)
        while pos < end {
            out.append(UInt16(base[pos]) << 8 | UInt16(base[pos + 1]))
            pos += 2
        }
        return out
    }

    /// The remaining bytes, copied.
    mutating func bytes() -> [UInt8] {
        let out = [UInt8](UnsafeRawBufferPointer(rebasing: base[pos..<end]))
        pos = end
        return out
    }

    /// The remaining bytes decoded as UTF-8 (invalid sequences become U+FFFD; only used for names we report).
    mutating func string() -> String {
        let s = String(decoding: UnsafeRawBufferPointer(rebasing: base[pos..<end]), as: UTF8.self)
        pos = end
        return s
    }
}
