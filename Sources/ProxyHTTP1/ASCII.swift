// Byte classes as bit masks over 0..<128 (bit n of `lo` is byte n, bit n of `hi` is byte 64+n). A branch-free
// lookup that needs no lazily initialised global table on the hot path.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
        return sameIgnoringCase(p, s.utf8Start, count)
    }

    @inline(__always)
    static func equalsIgnoringCase(
        _ p: UnsafePointer<UInt8>,
        _ count: Int,
        _ q: UnsafePointer<UInt8>,
        _ qCount: Int
    ) -> Bool {
        guard count == qCount else { return false }
        return sameIgnoringCase(p, q, count)
    }

    // SWAR ("SIMD within a register") helpers: eight bytes tested or folded at once in a UInt64, loaded little-
    // endian so that byte k of memory is bits 8k..<8k+8 and the first matching byte is the lowest set high bit. Every
    // byte is computed on its own 7 low bits (sums stay below 0x100, so no carry crosses into the next byte); bytes
    // >= 0x80 are excluded through the word's own high bits. Exact for every input, unlike the classic "has zero
    // byte" test whose false positives above a true match do not matter there but would here.
    static let ones: UInt64 = 0x0101_0101_0101_0101
    static let highBits: UInt64 = 0x8080_8080_8080_8080

    @inline(__always)
    static func load64(_ p: UnsafePointer<UInt8>) -> UInt64 {
        UInt64(littleEndian: UnsafeRawPointer(p).loadUnaligned(as: UInt64.self))
    }

    /// High bit of each byte set iff that byte of `w` is in `lo...hi` (both < 0x80).
    @inline(__always)
    static func bytesInRange(_ w: UInt64, _ lo: UInt8, _ hi: UInt8) -> UInt64 {
        let x = w & ~highBits
        let atLeastLo = x &+ ones &* UInt64(0x80 &- lo)
        let aboveHi = x &+ ones &* UInt64(0x7F &- hi)
        return atLeastLo & ~aboveHi & ~w & highBits
    }

    /// `w` with the ASCII capitals of each byte made lower case (other bytes unchanged).
    @inline(__always)
    static func lowerWord(_ w: UInt64) -> UInt64 { w | bytesInRange(w, 0x41, 0x5A) >> 2 }

    /// High bit of each byte set iff that byte is not an ASCII letter, digit or "-": the bytes of almost every
    /// field name, so that `FieldLineParser` skips the common part of a name eight bytes at a time and checks the
    /// remaining bytes (other tchars, the colon) one by one.
    @inline(__always)
    static func nonNameBytes(_ w: UInt64) -> UInt64 {
        let folded = w | ones &* 0x20  // A-Z onto a-z; nothing outside the letters lands in a...z
        let letter = bytesInRange(folded, 0x61, 0x7A)
        let digit = bytesInRange(w, 0x30, 0x39)
        let dash = bytesInRange(w, 0x2D, 0x2D)
        return ~(letter | digit | dash) & highBits
    }

    /// High bit of each byte set iff that byte is a control byte (< 0x20) or DEL.
    @inline(__always)
    static func controlBytes(_ w: UInt64) -> UInt64 {
        let x = w & ~highBits
        let belowSpace = ~(x &+ ones &* 0x60) & ~w & highBits
        let del = bytesInRange(w, 0x7F, 0x7F)
        return belowSpace | del
    }

    /// Whether `count` bytes at `p` and at `q` are equal ignoring ASCII case: eight bytes at a time, the last
    /// word overlapping the previous one; four at a time for 4...7 bytes.
    @inline(__always)
    static func sameIgnoringCase(_ p: UnsafePointer<UInt8>, _ q: UnsafePointer<UInt8>, _ count: Int) -> Bool {
        if count >= 8 {
            var i = 0
            while i &+ 8 < count {
                if lowerWord(load64(p + i)) != lowerWord(load64(q + i)) { return false }
                i &+= 8
            }
            return lowerWord(load64(p + (count &- 8))) == lowerWord(load64(q + (count &- 8)))
        }
        if count >= 4 {
            let a = UInt64(load32(p)) | UInt64(load32(p + (count &- 4))) << 32
            let b = UInt64(load32(q)) | UInt64(load32(q + (count &- 4))) << 32
            return lowerWord(a) == lowerWord(b)
        }
        for i in 0..<count where lower(p[i]) != lower(q[i]) { return false }
        return true
    }

    /// Index of the first LF in `p[0..<count]`; the caller knows there is one (a scanned head).
    @inline(__always)
    static func firstLF(_ p: UnsafePointer<UInt8>, _ count: Int) -> Int {
        UnsafeRawPointer(memchr(p, Int32(lf), count)!).assumingMemoryBound(to: UInt8.self) - p
    }

    /// Advances `i` over whole words of `p[i..<end]` while `flagged` (one of the masks above) flags no byte in them.
    /// At the first word where it does, stops on the lowest flagged byte and returns true; otherwise returns false
    /// with fewer than eight bytes left before `end`, for the caller's byte-by-byte tail.
    @inline(__always)
    static func skipUnflaggedWords(
        _ p: UnsafePointer<UInt8>,
        _ i: inout Int,
        _ end: Int,
        _ flagged: (UInt64) -> UInt64
    ) -> Bool {
        while i &+ 8 <= end {
            let m = flagged(load64(p + i))
            if m != 0 {
                i &+= m.trailingZeroBitCount &>> 3
                return true
            }
            i &+= 8
        }
        return false
    }

    /// Whether every byte of `p[start..<end]` is visible ASCII (0x21...0x7E), eight at a time.
    @inline(__always)
    static func allVisible(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> Bool {
        var i = start
        if skipUnflaggedWords(p, &i, end, { ~bytesInRange($0, 0x21, 0x7E) & highBits }) { return false }
        while i < end {
            if p[i] &- 0x21 > 0x7E - 0x21 { return false }
            i &+= 1
        }
        return true
    }

    @inline(__always)
    static func load32(_ p: UnsafePointer<UInt8>) -> UInt32 {
        UInt32(littleEndian: UnsafeRawPointer(p).loadUnaligned(as: UInt32.self))
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

/// Copies `count` bytes from `source` to `destination` (not overlapping) with the ASCII capitals made lower case:
/// eight bytes at a time, the last word overlapping the previous one; two overlapping halves for 4...7 bytes (HTTP/2
/// field names from an HTTP/1 origin's response).
public func copyLowercasingASCII(
    from source: UnsafePointer<UInt8>,
    to destination: UnsafeMutablePointer<UInt8>,
    count: Int
) {
    @inline(__always) func store64(_ w: UInt64, _ at: Int) {
        UnsafeMutableRawPointer(destination + at).storeBytes(of: w.littleEndian, as: UInt64.self)
    }
    @inline(__always) func store32(_ w: UInt64, _ at: Int) {
        UnsafeMutableRawPointer(destination + at).storeBytes(
            of: UInt32(truncatingIfNeeded: w).littleEndian,
            as: UInt32.self
        )
    }
    if count >= 8 {
        var i = 0
        while i &+ 8 < count {
            store64(ASCII.lowerWord(ASCII.load64(source + i)), i)
            i &+= 8
        }
        store64(ASCII.lowerWord(ASCII.load64(source + (count &- 8))), count &- 8)
    } else if count >= 4 {
        let w = ASCII.lowerWord(UInt64(ASCII.load32(source)) | UInt64(ASCII.load32(source + (count &- 4))) << 32)
        store32(w, 0)
        store32(w >> 32, count &- 4)
    } else {
        for i in 0..<count { destination[i] = ASCII.lower(source[i]) }
    }
}
