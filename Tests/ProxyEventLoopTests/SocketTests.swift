import Glibc
import XCTest

@testable import ProxyEventLoop

/// `Socket.firstRecordState` decides when a new connection gets its TLS session (issue 15 item 9): only once the
/// first TLS record is complete, never for a silent or stalled peer. Over a real loopback TCP connection.
final class FirstRecordStateTests: XCTestCase {
    /// The peek space, as a worker's (4 KiB).
    private let peek = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
    deinit { peek.deallocate() }

    /// A connected loopback TCP pair: (client, server side), both non-blocking on the server side.
    private func tcpPair() throws -> (Int32, Int32) {
        let listener = try Socket.listen(on: SocketAddress.resolve(host: "127.0.0.1", port: 0)[0], reusePort: false)
        defer { Socket.close(listener) }
        let bound = try XCTUnwrap(Socket.localAddress(listener))
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let rc = bound.withSockAddr { sa, len in connect(client, sa, len) }
        XCTAssertEqual(rc, 0)
        var peer = SocketAddress(storage: sockaddr_storage(), length: 0)
        for _ in 0..<1000 {
            if case .processed(let fd) = try Socket.accept(listener, peer: &peer) { return (client, fd) }
            usleep(1000)
        }
        throw SyscallError("accept4", EAGAIN)
    }

    /// Sends `bytes` on `fd` and waits until the peer `to` has `queued` bytes waiting (or EOF), polling FIONREAD.
    private func send(_ fd: Int32, _ bytes: [UInt8], to peer: Int32, queued: Int) {
        XCTAssertEqual(bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }, bytes.count)
        waitQueued(peer, queued)
    }

    private func waitQueued(_ fd: Int32, _ count: Int) {
        for _ in 0..<1000 {
            var n: Int32 = 0
            if ioctl(fd, UInt(FIONREAD), &n) == 0 && Int(n) >= count { return }
            usleep(1000)
        }
        XCTFail("\(count) bytes never arrived")
    }

    /// Waits until the peer's FIN has arrived on `fd` (readable with nothing queued).
    private func waitHangup(_ fd: Int32) {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        XCTAssertEqual(poll(&p, 1, 1000), 1)
    }

    func testWaitsForTheWholeFirstRecordAndConsumesNothing() throws {
        let (c, s) = try tcpPair()
        defer {
            close(c)
            close(s)
        }
        XCTAssertEqual(Socket.firstRecordState(s, scratch: peek), .incomplete, "nothing sent yet")
        send(c, [22, 3], to: s, queued: 2)
        XCTAssertEqual(Socket.firstRecordState(s, scratch: peek), .incomplete, "part of the header")
        send(c, [1, 0, 10] + [1, 2, 3], to: s, queued: 8)
        XCTAssertEqual(Socket.firstRecordState(s, scratch: peek), .incomplete, "header says 10 bytes, 3 arrived")
        send(c, [4, 5, 6, 7, 8, 9, 10], to: s, queued: 15)
        XCTAssertEqual(Socket.firstRecordState(s, scratch: peek), .ready)
        var buf = [UInt8](repeating: 0, count: 64)
        let n = buf.withUnsafeMutableBytes { recv(s, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        XCTAssertEqual(n, 15, "peeking left every byte for the TLS library")
    }

    /// A first record longer than the peek space: the peek fills it, and the queued count decides.
    func testRecordLongerThanThePeekSpace() throws {
        let (c, s) = try tcpPair()
        defer {
            close(c)
            close(s)
        }
        let small = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
        defer { small.deallocate() }
        send(c, [22, 3, 1, 0, 20] + [UInt8](repeating: 7, count: 15), to: s, queued: 20)
        XCTAssertEqual(Socket.firstRecordState(s, scratch: small), .incomplete, "20 of 25 bytes, 16 peeked")
        XCTAssertEqual(Socket.firstRecordState(s, scratch: peek), .incomplete, "20 of 25 bytes, all peeked")
        send(c, [UInt8](repeating: 7, count: 5), to: s, queued: 25)
        XCTAssertEqual(Socket.firstRecordState(s, scratch: small), .ready)
        XCTAssertEqual(Socket.firstRecordState(s, scratch: peek), .ready)
        var buf = [UInt8](repeating: 0, count: 64)
        let n = buf.withUnsafeMutableBytes { recv(s, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        XCTAssertEqual(n, 25, "peeking left every byte for the TLS library")
    }

    func testNonHandshakeBytesAreHandedOnAtOnce() throws {
        let (c, s) = try tcpPair()
        defer {
            close(c)
            close(s)
        }
        send(c, Array("G".utf8), to: s, queued: 1)  // plain HTTP on the TLS port: OpenSSL answers it
        XCTAssertEqual(Socket.firstRecordState(s, scratch: peek), .ready)
    }

    func testHugeAnnouncedLengthIsCappedAndEmptyCloseIsSeen() throws {
        let (c, s) = try tcpPair()
        defer { close(s) }
        send(
            c,
            [22, 3, 1, 0xFF, 0xFF] + [UInt8](repeating: 0, count: Socket.maxFirstRecord - 5),
            to: s,
            queued: Socket.maxFirstRecord
        )
        XCTAssertEqual(
            Socket.firstRecordState(s, scratch: peek),
            .ready,
            "a bogus length waits no longer than the largest record"
        )
        close(c)
        let (c2, s2) = try tcpPair()
        defer { close(s2) }
        close(c2)
        waitHangup(s2)
        XCTAssertEqual(Socket.firstRecordState(s2, scratch: peek), .closedEmpty)
    }

    func testResourceExhaustionErrors() {
        for e in [EMFILE, ENFILE, ENOBUFS, ENOMEM] {
            XCTAssertTrue(Socket.isResourceExhaustion(SyscallError("accept4", e)))
        }
        for e in [ECONNABORTED, EPERM, EINVAL] {
            XCTAssertFalse(Socket.isResourceExhaustion(SyscallError("accept4", e)))
        }
    }
}
