// Appending ASCII to caller-owned `[UInt8]` buffers without String: numbers are written digit by digit.

extension Array where Element == UInt8 {
    @inline(__always)
    mutating func appendStatic(_ s: StaticString) {
        append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    @inline(__always)
    mutating func appendCRLF() {
        append(ASCII.cr)
        append(ASCII.lf)
    }

    /// Appends `n` (>= 0) in decimal.
    mutating func appendDecimal(_ n: Int) {
        precondition(n >= 0)
        var digits = 1
        var t = n
        while t >= 10 {
            t /= 10
            digits += 1
        }
        let start = count
        append(contentsOf: repeatElement(0x30, count: digits))
        var v = n
        var i = start + digits - 1
        while i >= start {
            self[i] = UInt8(truncatingIfNeeded: 0x30 + v % 10)
            v /= 10
            i -= 1
        }
    }

    /// Appends `n` (>= 0) in lowercase hexadecimal, without leading zeros.
    mutating func appendHex(_ n: Int) {
        precondition(n >= 0)
        var digits = 1
        while digits < 16 && n >> (4 * digits) != 0 { digits += 1 }
        var shift = 4 * (digits - 1)
        while shift >= 0 {
            let d = UInt8(truncatingIfNeeded: (n >> shift) & 0xF)
            append(d < 10 ? 0x30 + d : 0x61 + d - 10)
            shift -= 4
        }
    }
}
