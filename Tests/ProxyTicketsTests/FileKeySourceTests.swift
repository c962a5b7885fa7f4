import Foundation
import ProxyCore
import XCTest

@testable import ProxyTickets

final class FileKeySourceTests: XCTestCase {
    var dir: URL!
    var mtimeCounter = 1_000_000

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tickets-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// Writes `bytes` to `name` and gives it a fresh, distinct mtime (so change detection never depends on
    /// the file system's timestamp granularity).
    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let url = dir.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        mtimeCounter += 10
        try FileManager.default.setAttributes(
            [.modificationDate: Date(timeIntervalSince1970: Double(mtimeCounter))],
            ofItemAtPath: url.path
        )
        return url.path
    }

    /// A key file whose bytes are `seed, seed+1, ...`.
    func keyBytes(_ count: Int, seed: UInt8 = 0) -> [UInt8] { (0..<count).map { seed &+ UInt8($0) } }

    func testEightyByteFileLayoutKnownAnswer() throws {
        let path = try write("k80", keyBytes(80))
        let source = try FileKeySource(paths: [path])
        let key = source.store.current().encryptionKey
        XCTAssertEqual(key.cipher, .aes256cbc)
        XCTAssertEqual(key.nameBytes, Array(0..<16))
        XCTAssertEqual(key.hmacBytes, Array(16..<48), "80 B: name16 | hmac32 | aes32")
        XCTAssertEqual(key.aesBytes, Array(48..<80))
        XCTAssertEqual(key.nameHex, "000102030405060708090a0b0c0d0e0f")
    }

    func testFortyEightByteFileLayoutKnownAnswer() throws {
        let path = try write("k48", keyBytes(48))
        let source = try FileKeySource(paths: [path])
        let key = source.store.current().encryptionKey
        XCTAssertEqual(key.cipher, .aes128cbc)
        XCTAssertEqual(key.nameBytes, Array(0..<16))
        XCTAssertEqual(key.aesBytes, Array(16..<32), "48 B: name16 | aes16 | hmac16")
        XCTAssertEqual(key.hmacBytes, Array(32..<48))
    }

    func testFirstFileEncryptsOthersOnlyDecrypt() throws {
        let a = try write("a", keyBytes(80, seed: 0))
        let b = try write("b", keyBytes(48, seed: 100))
        let c = try write("c", keyBytes(80, seed: 200))
        let source = try FileKeySource(paths: [a, b, c])
        let ring = source.store.current()
        XCTAssertEqual(ring.keys.count, 3)
        XCTAssertEqual(ring.encryptionKey.nameBytes, keyBytes(16, seed: 0))
        for now in [t(0), t(2_000_000_000), Timestamp.wallClockNow()] {
            XCTAssertTrue(ring.encryptionKey(at: now) === ring.keys[0])
            XCTAssertEqual(ring.keys.map { $0.state(at: now) }, [.current, .stale, .stale], "no expiry")
            XCTAssertEqual(keyBytes(16, seed: 100).withUnsafeBytes { ring.lookup(name: $0, at: now)?.state }, .stale)
        }
        XCTAssertNil(keyBytes(16, seed: 50).withUnsafeBytes { ring.lookup(name: $0, at: t(0)) }, "unknown name")
    }

    func testWrongSizeIsAClearErrorAndKeepsTheOldRing() throws {
        let good = try write("good", keyBytes(80))
        let source = try FileKeySource(paths: [good])
        let before = source.store.current()

        for size in [0, 47, 49, 79, 81, 96] {
            try write("good", keyBytes(size, seed: 7))
            XCTAssertThrowsError(try source.reload()) { error in
                XCTAssertEqual(error as? TicketKeyFileError, .wrongSize(path: good, size: size))
                XCTAssertTrue("\(error)".contains(good), "the message names the file")
                XCTAssertTrue("\(error)".contains("48 or 80"))
            }
            XCTAssertTrue(source.store.current() === before, "previous keys kept")
        }
        XCTAssertThrowsError(try FileKeySource(paths: [good]))
    }

    func testUnreadableFileIsAClearErrorAndKeepsTheOldRing() throws {
        let good = try write("good", keyBytes(80))
        let missing = dir.appendingPathComponent("missing").path
        XCTAssertThrowsError(try FileKeySource(paths: [good, missing])) { error in
            XCTAssertEqual(error as? TicketKeyFileError, .unreadable(path: missing, errno: ENOENT))
            XCTAssertTrue("\(error)".contains(missing))
        }
        let second = try write("second", keyBytes(48, seed: 90))
        let source = try FileKeySource(paths: [good, second])
        let before = source.store.current()
        try FileManager.default.removeItem(atPath: second)
        XCTAssertThrowsError(try source.reload()) { error in
            XCTAssertEqual(error as? TicketKeyFileError, .unreadable(path: second, errno: ENOENT))
        }
        XCTAssertTrue(source.store.current() === before)
        XCTAssertEqual(source.store.generation, before.generation)
    }

    func testDuplicateNamesAcrossFilesAreRejected() throws {
        let a = try write("a", keyBytes(80, seed: 0))
        var other = keyBytes(48, seed: 0)  // same 16-byte name, different layout and secrets
        other[20] = 0xFF
        let b = try write("b", other)
        XCTAssertThrowsError(try FileKeySource(paths: [a, b])) { error in
            XCTAssertEqual(
                error as? TicketKeyFileError,
                .duplicateName(path: b, firstPath: a, nameHex: "000102030405060708090a0b0c0d0e0f")
            )
            XCTAssertTrue("\(error)".contains(a) && "\(error)".contains(b))
        }
        // Same during a reload: the old ring stays.
        let c = try write("c", keyBytes(80, seed: 100))
        let source = try FileKeySource(paths: [a, c])
        let before = source.store.current()
        try write("c", keyBytes(80, seed: 0))
        XCTAssertThrowsError(try source.reload())
        XCTAssertTrue(source.store.current() === before)
    }

    func testTickReloadsOnlyOnChangeAndReportsABrokenFileOnce() throws {
        let a = try write("a", keyBytes(80, seed: 0))
        let b = try write("b", keyBytes(80, seed: 100))
        let source = try FileKeySource(paths: [a, b])
        let store = source.store
        XCTAssertEqual(store.generation, 1)
        XCTAssertFalse(try source.tick(now: t(1)), "nothing changed")
        XCTAssertFalse(try source.reload(), "same bytes: no new ring")
        XCTAssertEqual(store.generation, 1)

        // Operator rotation: a new encrypting key, the old one moves to the second file.
        try write("b", keyBytes(80, seed: 0))
        try write("a", keyBytes(80, seed: 50))
        XCTAssertTrue(try source.tick(now: t(2)))
        XCTAssertEqual(store.generation, 2)
        XCTAssertEqual(store.current().encryptionKey.nameBytes, keyBytes(16, seed: 50))
        XCTAssertFalse(try source.tick(now: t(3)))

        // A broken file: reported once, old ring kept, no retry until the file changes again.
        let before = store.current()
        try write("a", keyBytes(12))
        XCTAssertThrowsError(try source.tick(now: t(4)))
        XCTAssertFalse(try source.tick(now: t(5)))
        XCTAssertTrue(store.current() === before)
        try write("a", keyBytes(48, seed: 150))
        XCTAssertTrue(try source.tick(now: t(6)))
        XCTAssertEqual(store.current().encryptionKey.cipher, .aes128cbc)
        XCTAssertEqual(store.generation, 3)
    }

    func testErrorsAndInfoCarryNoKeyBytes() throws {
        let a = try write("a", keyBytes(80, seed: 0x40))
        let source = try FileKeySource(paths: [a])
        let key = source.store.current().encryptionKey
        let text = "\(source.store.current().info(at: t(0)))"
        XCTAssertFalse(text.contains(hex(key.aesBytes)))
        XCTAssertFalse(text.contains(hex(key.hmacBytes)))
        XCTAssertTrue(text.contains(key.nameHex))
    }

    func testNoFiles() {
        XCTAssertThrowsError(try FileKeySource(paths: [])) { XCTAssertEqual($0 as? TicketKeyFileError, .noFiles) }
    }
}
