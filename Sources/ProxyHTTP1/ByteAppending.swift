// Appending ASCII to caller-owned `[UInt8]` buffers without String: numbers are written digit by digit.

/// How many decimal digits `n` (>= 0) has.
@inline(__always)
private func decimalDigitCount(_ n: Int) -> Int {
    precondition(n >= 0)
    var digits = 1
    var t = n
    while t >= 10 {
        t /= 10
        digits += 1
    }
    return digits
}

/// Writes `n` (>= 0) in decimal into `p[0..<digits]`, `digits` being `decimalDigitCount(n)`.
@inline(__always)
private func writeDecimal(_ n: Int, digits: Int, to p: UnsafeMutablePointer<UInt8>) {
    var v = n
    var i = digits - 1
    while i >= 0 {
        p[i] = UInt8(truncatingIfNeeded: 0x30 + v % 10)
        v /= 10
        i -= 1
    }
}

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
        let digits = decimalDigitCount(n)
        let start = count
        append(contentsOf: repeatElement(0x30, count: digits))
        withUnsafeMutableBufferPointer { writeDecimal(n, digits: digits, to: $0.baseAddress! + start) }
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

/// Writes a head through a pointer into room reserved beforehand (`Array.appendWriting`): a bounds check and a copy
/// per piece, where each `Array.append(contentsOf:)` cost ~90 instructions (callgrind: 22 of them per proxied
/// request, ~2,000 instructions). A piece that does not fit writes nothing and marks the cursor overflowed;
/// `appendWriting` then writes the whole head again with more room, so a bound that is too small costs time, never
/// correctness.
struct ByteCursor {
    private(set) var p: UnsafeMutablePointer<UInt8>
    private let end: UnsafeMutablePointer<UInt8>
    private(set) var overflowed = false

    init(_ start: UnsafeMutablePointer<UInt8>, count: Int) {
        p = start
        end = start + count
    }

    @inline(__always)
    mutating func put(_ b: UInt8) {
        guard p < end else {
            overflowed = true
            return
        }
        p.pointee = b
        p += 1
    }

    @inline(__always)
    mutating func put(_ a: UInt8, _ b: UInt8) {
        guard end - p >= 2 else {
            overflowed = true
            return
        }
        p[0] = a
        p[1] = b
        p += 2
    }

    @inline(__always)
    mutating func putCRLF() { put(ASCII.cr, ASCII.lf) }

    @inline(__always)
    mutating func put(_ src: UnsafePointer<UInt8>?, _ n: Int) {
        guard n > 0, let src else { return }
        guard end - p >= n else {
            overflowed = true
            return
        }
        p.update(from: src, count: n)
        p += n
    }

    @inline(__always)
    mutating func put(_ s: StaticString) { put(s.utf8Start, s.utf8CodeUnitCount) }

    @inline(__always)
    mutating func put(_ b: UnsafeBufferPointer<UInt8>) { put(b.baseAddress, b.count) }

    @inline(__always)
    mutating func put(_ a: [UInt8]) { a.withUnsafeBufferPointer { put($0) } }

    @inline(__always)
    mutating func put(_ a: ArraySlice<UInt8>) { a.withUnsafeBufferPointer { put($0) } }

    /// `n` (>= 0) in decimal.
    mutating func putDecimal(_ n: Int) {
        let digits = decimalDigitCount(n)
        guard end - p >= digits else {
            overflowed = true
            return
        }
        writeDecimal(n, digits: digits, to: p)
        p += digits
    }
}

private let zeroBlockSize = 4096
// SAFETY: written once when first used, read-only afterwards (a source of zero bytes for any thread).
nonisolated(unsafe) private let zeroBlock: UnsafeRawPointer = UnsafeRawPointer(
    UnsafeMutableRawPointer.allocate(byteCount: zeroBlockSize, alignment: 16).initializeMemory(
        as: UInt8.self,
        repeating: 0,
        count: zeroBlockSize
    )
)

extension Array where Element == UInt8 {
    /// Appends what `body` writes through a cursor over `bound` reserved bytes; when that was too little (the
    /// cursor overflowed), writes it again with twice the room. `body` must write the same bytes every time.
    mutating func appendWriting(bound: Int, _ body: (inout ByteCursor) -> Void) {
        let start = count
        var room = Swift.max(bound, 64)
        while true {
            // Extends the count by `room` with one copy from a zero block (a `repeatElement` append went byte by byte).
            var left = room
            while left > 0 {
                let n = Swift.min(left, zeroBlockSize)
                append(contentsOf: UnsafeRawBufferPointer(start: zeroBlock, count: n))
                left -= n
            }
            let (used, overflowed) = withUnsafeMutableBufferPointer { buf -> (Int, Bool) in
                let base = buf.baseAddress! + start
                var c = ByteCursor(base, count: room)
                body(&c)
                return (c.p - base, c.overflowed)
            }
            removeLast(room - (overflowed ? 0 : used))
            if !overflowed { return }
            room *= 2
        }
    }
}
