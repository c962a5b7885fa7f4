import XCTest

@testable import ProxyHTTP1

/// The eight-bytes-at-a-time byte classes of `ASCII` against their one-byte definitions: every byte value in every
/// position of a word, next to every kind of neighbour (a true match must not hide or invent one beside it).
final class ASCIIWordTests: XCTestCase {
    /// Words holding byte `b` at position `k` and filler `f` elsewhere, for all b, k and a set of fillers that
    /// includes bytes of each class.
    private func words(_ body: (UInt64, _ bytes: [UInt8]) -> Void) {
        let fillers: [UInt8] = [
            0x00, 0x0D, 0x1F, 0x20, 0x2D, 0x30, 0x3A, 0x41, 0x5A, 0x5B, 0x61, 0x7A, 0x7F, 0x80, 0xFF,
        ]
        for f in fillers {
            for k in 0..<8 {
                for b in 0...255 {
                    var bytes = [UInt8](repeating: f, count: 8)
                    bytes[k] = UInt8(b)
                    let w = bytes.withUnsafeBufferPointer { ASCII.load64($0.baseAddress!) }
                    body(w, bytes)
                }
            }
        }
    }

    private func mask(_ bytes: [UInt8], _ flag: (UInt8) -> Bool) -> UInt64 {
        var m: UInt64 = 0
        for (k, b) in bytes.enumerated() where flag(b) { m |= 0x80 << (8 * UInt64(k)) }
        return m
    }

    func testNonNameBytesFlagsExactlyTheBytesOtherThanLettersDigitsAndDash() {
        words { w, bytes in
            let expected = mask(bytes) { b in
                !((b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x2D)
            }
            XCTAssertEqual(ASCII.nonNameBytes(w), expected, "\(bytes)")
        }
    }

    func testControlBytesFlagsExactlyControlsAndDEL() {
        words { w, bytes in
            XCTAssertEqual(ASCII.controlBytes(w), mask(bytes) { $0 < 0x20 || $0 == 0x7F }, "\(bytes)")
        }
    }

    func testLowerWordLowersExactlyTheCapitals() {
        words { w, bytes in
            let lowered = bytes.map(ASCII.lower).withUnsafeBufferPointer { ASCII.load64($0.baseAddress!) }
            XCTAssertEqual(ASCII.lowerWord(w), lowered, "\(bytes)")
        }
    }

    func testSameIgnoringCaseAtEveryLength() {
        let name = Array("Content-Length-And-Some-More-X".utf8)
        for n in 0...name.count {
            let a = Array(name[0..<n])
            let upper = a.map { $0 >= 0x61 && $0 <= 0x7A ? $0 - 0x20 : $0 }
            XCTAssertTrue(ASCII.equalsIgnoringCase(a, n, upper, n), "length \(n)")
            for k in 0..<n {
                // One byte changed anywhere, including to the byte that differs only in bit 0x20 when it is not a
                // letter ("-" vs CR, "@" vs "`"), must not compare equal.
                for delta: UInt8 in [0x20, 0x01] {
                    var b = upper
                    b[k] ^= delta
                    let letter = (a[k] | 0x20) >= 0x61 && (a[k] | 0x20) <= 0x7A
                    if delta == 0x20 && letter { continue }
                    XCTAssertFalse(ASCII.equalsIgnoringCase(a, n, b, n), "length \(n), byte \(k) ^ \(delta)")
                }
            }
        }
    }

    func testCopyLowercasingEveryLengthAndByte() {
        for n in 0...19 {
            for b in 0...255 {
                let src = (0..<n).map { k in k == n / 2 ? UInt8(b) : UInt8(0x41 + (k * 7) % 58) }
                var dst = [UInt8](repeating: 0xEE, count: n + 1)
                src.withUnsafeBufferPointer { s in
                    dst.withUnsafeMutableBufferPointer { d in
                        copyLowercasingASCII(
                            from: s.baseAddress ?? UnsafePointer(d.baseAddress!),
                            to: d.baseAddress!,
                            count: n
                        )
                    }
                }
                XCTAssertEqual(Array(dst[0..<n]), src.map(ASCII.lower), "length \(n), byte \(b)")
                XCTAssertEqual(dst[n], 0xEE, "nothing written past the end")
            }
        }
    }
}
