import COpenSSL
import CProxyShims
import Glibc
import XCTest

/// The socket BIO of TLS connections (clients and TLS origins) notes whether its last read left the socket empty,
/// which lets a connection wait for the next edge instead of reading once more only to see EAGAIN
/// (`TLSStream.socketEmptied`, `OriginTLSStream.socketEmptied`). A wrong "emptied" would strand bytes until the peer
/// sends again; a missing one only costs that extra read.
final class SocketBIOTests: XCTestCase {
    func testTheLastReadNotesWhetherItLeftTheSocketEmpty() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        defer { close(fds[1]) }
        XCTAssertEqual(fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK), 0)
        let ctx = try XCTUnwrap(SSL_CTX_new(TLS_server_method()))
        let ssl = try XCTUnwrap(SSL_new(ctx))
        defer {
            SSL_free(ssl)
            SSL_CTX_free(ctx)
            close(fds[0])
        }
        let bio = try XCTUnwrap(cps_BIO_new_socket(fds[0]))
        SSL_set_bio(ssl, bio, bio)
        var buf = [UInt8](repeating: 0, count: 256)
        func send(_ n: Int) { XCTAssertEqual(write(fds[1], [UInt8](repeating: 7, count: n), n), n) }
        func read(_ n: Int32) -> Int32 { buf.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, n) } }

        XCTAssertEqual(cps_SSL_socket_emptied(ssl), 0, "nothing read yet")
        send(100)
        XCTAssertEqual(read(40), 40)
        XCTAssertEqual(cps_SSL_socket_emptied(ssl), 0, "a read that got all it asked for may have left bytes")
        XCTAssertEqual(read(256), 60)
        XCTAssertEqual(cps_SSL_socket_emptied(ssl), 1, "fewer bytes than asked for: the socket is empty")
        send(10)
        XCTAssertEqual(read(10), 10)
        XCTAssertEqual(cps_SSL_socket_emptied(ssl), 0)
        XCTAssertEqual(read(256), -1)
        XCTAssertNotEqual(BIO_test_flags(bio, BIO_FLAGS_SHOULD_RETRY), 0)
        XCTAssertEqual(cps_SSL_socket_emptied(ssl), 1, "EAGAIN: the socket is empty")

        // A reused BIO (the next connection's) starts without the note.
        send(5)
        XCTAssertEqual(read(256), 5)
        XCTAssertEqual(cps_SSL_socket_emptied(ssl), 1)
        cps_BIO_reuse_socket(bio, fds[0])
        XCTAssertEqual(cps_SSL_socket_emptied(ssl), 0)

        // EOF is not "empty": the caller must read again to see it.
        close(fds[1])
        fds[1] = -1
        XCTAssertEqual(read(256), 0)
        XCTAssertEqual(cps_SSL_socket_emptied(ssl), 0)
    }
}
