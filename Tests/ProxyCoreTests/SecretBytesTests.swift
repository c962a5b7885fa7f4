import XCTest

@testable import ProxyCore

final class SecretBytesTests: XCTestCase {
    private func pattern(_ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 0xA5) } }

    func testZeroizeClearsTheMemory() throws {
        var source = pattern(32)
        let secret = try source.withUnsafeMutableBytes { try SecretBytes(movingFrom: $0) }
        XCTAssertEqual(secret._copyOfBytesForTesting(), pattern(32))
        XCTAssertFalse(secret.isZeroized)
        secret.zeroize()
        XCTAssertTrue(secret.isZeroized)
        XCTAssertEqual(secret._copyOfMappingForTesting().count % 4096, 0)
        XCTAssertTrue(secret._copyOfMappingForTesting().allSatisfy { $0 == 0 })
        secret.withUnsafeBytes { XCTAssertTrue($0.allSatisfy { $0 == 0 }) }
    }

    func testMovingFromWipesTheSource() throws {
        var source = pattern(48)
        let secret = try source.withUnsafeMutableBytes { try SecretBytes(movingFrom: $0) }
        XCTAssertEqual(source, [UInt8](repeating: 0, count: 48))
        XCTAssertEqual(secret.count, 48)
        XCTAssertEqual(secret.withUnsafeBytes { [UInt8]($0) }, pattern(48))
    }

    func testCopyingLeavesTheSourceToTheCaller() throws {
        let source = pattern(16)
        let secret = try source.withUnsafeBytes { try SecretBytes(copying: $0) }
        XCTAssertEqual(source, pattern(16))
        XCTAssertEqual(secret._copyOfBytesForTesting(), pattern(16))
    }

    func testRandomBytesDifferAndAreNotAllZero() throws {
        let a = try SecretBytes(randomCount: 32)
        let b = try SecretBytes(randomCount: 32)
        XCTAssertNotEqual(a._copyOfBytesForTesting(), b._copyOfBytesForTesting())
        XCTAssertFalse(a._copyOfBytesForTesting().allSatisfy { $0 == 0 })
        // More than one getentropy call (256-byte limit) still fills everything.
        let big = try SecretBytes(randomCount: 600)
        XCTAssertFalse(big._copyOfBytesForTesting()[512...].allSatisfy { $0 == 0 })
    }

    func testDescriptionsRevealNothing() throws {
        let bytes = pattern(32)
        let secret = try bytes.withUnsafeBytes { try SecretBytes(copying: $0) }
        let hex = bytes.map { String(format: "%02x", $0) }.joined()
        let decimal = bytes.map { String($0) }.joined(separator: ", ")
        var dumped = ""
        dump(secret, to: &dumped)
        for text in [
            String(describing: secret), String(reflecting: secret), "\(secret)", dumped,
            String(describing: Mirror(reflecting: secret).children.map { $0.value }),
        ] {
            XCTAssertFalse(text.contains(hex), text)
            XCTAssertFalse(text.contains(decimal), text)
            XCTAssertFalse(text.contains("165"), text)  // first byte, 0xA5, in decimal
        }
        XCTAssertEqual(String(describing: secret), "SecretBytes(32 bytes, redacted)")
        XCTAssertEqual(String(reflecting: secret), "SecretBytes(32 bytes, redacted)")
    }

    func testSecureZero() {
        var buffer = pattern(20)
        buffer.withUnsafeMutableBytes { SecretBytes.secureZero($0) }
        XCTAssertEqual(buffer, [UInt8](repeating: 0, count: 20))
    }

    func testLockStateIsReported() throws {
        let secret = try SecretBytes(randomCount: 8)
        // Either locked, or the failure was counted: never silently unlocked.
        XCTAssertTrue(secret.isMemoryLocked || SecretBytes.lockFailureCount > 0)
    }
}

final class TimestampTests: XCTestCase {
    func testSecondsRoundDownAndDescription() {
        XCTAssertEqual(Timestamp(nanosecondsSinceEpoch: -1).secondsSinceEpoch, -1)
        XCTAssertEqual(Timestamp(nanosecondsSinceEpoch: 1_999_999_999).secondsSinceEpoch, 1)
        XCTAssertEqual(Timestamp(nanosecondsSinceEpoch: 1_500_000_000).description, "1.5")
        XCTAssertEqual(Timestamp(nanosecondsSinceEpoch: -500_000_000).description, "-1.5")
        XCTAssertEqual(Timestamp(secondsSinceEpoch: 42).description, "42")
        XCTAssertEqual(Timestamp.distantFuture.description, "+inf")
    }

    func testAddingSaturates() {
        XCTAssertEqual(Timestamp.distantFuture.adding(seconds: 1), .distantFuture)
        XCTAssertEqual(Timestamp(secondsSinceEpoch: 10).adding(seconds: Int64.max), .distantFuture)
        XCTAssertEqual(Timestamp(secondsSinceEpoch: 10).adding(seconds: -3), Timestamp(secondsSinceEpoch: 7))
    }
}
