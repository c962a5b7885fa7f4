import ProxyConfig
import ProxyEventLoop
import XCTest

@testable import ProxyUpstreams

final class IdleConnectionsTests: XCTestCase {
    final class Conn {
        let n: Int
        init(_ n: Int) { self.n = n }
    }

    func state(_ port: Int) -> EndpointState {
        EndpointState(address: SocketAddress(literal: "127.0.0.1", port: port)!, active: .unchecked)
    }

    func testPerAddressLIFOAndLimit() {
        var pool = IdleConnections<Conn>(limitPerAddress: 2)
        let a = state(1)
        let b = state(2)
        XCTAssertTrue(pool.put(Conn(1), for: a))
        XCTAssertTrue(pool.put(Conn(2), for: a))
        XCTAssertFalse(pool.put(Conn(3), for: a), "over the limit: the caller closes it")
        XCTAssertTrue(pool.put(Conn(4), for: b))
        XCTAssertEqual(pool.count, 3)
        XCTAssertEqual(pool.take(for: a)?.n, 2, "warmest first")
        XCTAssertEqual(pool.take(for: b)?.n, 4)
        XCTAssertNil(pool.take(for: b))
        XCTAssertEqual(pool.take(for: a)?.n, 1)
        XCTAssertNil(pool.take(for: a))
        XCTAssertEqual(pool.count, 0)
    }

    func testRemove() {
        var pool = IdleConnections<Conn>()
        let a = state(1)
        let c1 = Conn(1)
        let c2 = Conn(2)
        _ = pool.put(c1, for: a)
        _ = pool.put(c2, for: a)
        XCTAssertTrue(pool.remove(c1, for: a))
        XCTAssertFalse(pool.remove(c1, for: a))
        XCTAssertTrue(pool.take(for: a) === c2)
    }

    func testRetiredAddressesDrain() {
        var pool = IdleConnections<Conn>()
        let old = state(1)
        let kept = state(2)
        _ = pool.put(Conn(1), for: old)
        _ = pool.put(Conn(2), for: old)
        _ = pool.put(Conn(3), for: kept)
        old.retire()
        XCTAssertNil(pool.take(for: old), "never hand out a connection to a removed address")
        XCTAssertFalse(pool.put(Conn(4), for: old), "a connection finishing on a removed address is closed")
        XCTAssertEqual(pool.removeRetired().map(\.n).sorted(), [1, 2])
        XCTAssertEqual(pool.count, 1)
        XCTAssertEqual(pool.removeAll().map(\.n), [3])
        XCTAssertEqual(pool.count, 0)
    }
}
