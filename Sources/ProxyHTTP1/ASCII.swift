// Byte classes as bit masks over 0..<128 (bit n of `lo` is byte n, bit n of `hi` is byte 64+n). A branch-free
// lookup that needs no lazily initialised global table on the hot path.

@usableFromInline
enum ASCII {
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A
    static let sp: UInt8 = 0x20
    static let htab: UInt8 = 0x09
    static let colon: UInt8 = 0x3A
    static let comma: UInt8 = 0x2C
    static let semicolon: UInt8 = 0x3B

    /// RFC 9110 §5.6.2 tchar.
    @inline(__always)
    static func isToken(_ b: UInt8) -> Bool {
        if b < 64 { return (0x03ff_6cfa_0000_0000 as UInt64) >> UInt64(b) & 1 != 0 }
        if b < 128 { return (0x57ff_ffff_c7ff_fffe as UInt64) >> UInt64(b &- 64) & 1 != 0 }
        return false
    }

    /// Bytes accepted in a Host value: unreserved, sub-delims, ":", "[", "]", "%" (RFC 3986 authority without
    /// userinfo). Anything else (space, "/", "@", quotes) is refused: such Hosts only serve cache poisoning.
    @inline(__always)
    static func isHostByte(_ b: UInt8) -> Bool {
        if b < 64 { return (0x2fff_7ff2_0000_0000 as UInt64) >> UInt64(b) & 1 != 0 }
        if b < 128 { return (0x47ff_fffe_afff_fffe as UInt64) >> UInt64(b &- 64) & 1 != 0 }
        return false
    }

    @inline(__always)
    static func isOWS(_ b: UInt8) -> Bool { b == sp || b == htab }

    @inline(__always)
    static func lower(_ b: UInt8) -> UInt8 { (b &- 0x41) < 26 ? b | 0x20 : b }

    /// Hex digit value, or nil.
    @inline(__always)
    static func hexValue(_ b: UInt8) -> Int? {
        if b &- 0x30 < 10 { return Int(b &- 0x30) }
        let l = b | 0x20
        if l &- 0x61 < 6 { return Int(l &- 0x61 &+ 10) }
        return nil
    }

    /// Case-insensitive equality of `count` bytes at `p` with `s` (any case).
    @inline(__always)
    static func equalsIgnoringCase(_ p: UnsafePointer<UInt8>, _ count: Int, _ s: StaticString) -> Bool {
        guard count == s.utf8CodeUnitCount else { return false }
        let q = s.utf8Start
        for i in 0..<count where lower(p[i]) != lower(q[i]) { return false }
        return true
    }

    @inline(__always)
    static func equalsIgnoringCase(
        _ p: UnsafePointer<UInt8>,
        _ count: Int,
        _ q: UnsafePointer<UInt8>,
        _ qCount: Int
    ) -> Bool {
        guard count == qCount else { return false }
        for i in 0..<count where lower(p[i]) != lower(q[i]) { return false }
        return true
    }

    /// Calls `body(start, end)` for each non-empty element of a comma-separated list in `p[start..<end]`, with
    /// surrounding OWS trimmed (RFC 9110 §5.6.1: recipients accept and ignore empty elements). Stops early when
    /// `body` returns false; returns false in that case.
    @inline(__always)
    static func forEachListElement(
        _ p: UnsafePointer<UInt8>,
        _ start: Int,
        _ end: Int,
        _ body: (Int, Int) -> Bool
    ) -> Bool {
        var i = start
        while i < end {
            var s = i
            while i < end && p[i] != comma { i += 1 }
            var e = i
            i += 1
            while s < e && isOWS(p[s]) { s += 1 }
            while e > s && isOWS(p[e - 1]) { e -= 1 }
            if s < e && !body(s, e) { return false }
        }
        return true
    }
}
