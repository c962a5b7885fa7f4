import Glibc
import ProxyCore
import XCTest

@testable import ProxyEventLoop

private final class Recorder: TimerHandler {
    var timerSlot = TimerSlot()
    let id: Int
    var fired: [Int]
    init(_ id: Int, log: inout [Int]) {
        self.id = id
        self.fired = []
    }
    func timerFired(now: UInt64) { fired.append(id) }
}

final class TimerHeapTests: XCTestCase {
    /// Random set/move/cancel against a model: the heap always pops the smallest live deadline, and a cancelled
    /// handler is gone (not fired, not retained).
    func testMatchesModelUnderRandomOperations() {
        var log: [Int] = []
        var heap = TimerHeap()
        let handlers = (0..<200).map { Recorder($0, log: &log) }
        var model: [Int: UInt64] = [:]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            let h = handlers[Int.random(in: 0..<handlers.count, using: &rng)]
            switch Int.random(in: 0..<4, using: &rng) {
            case 0, 1:
                let d = UInt64.random(in: 1...1_000_000, using: &rng)
                heap.set(h, deadline: d)
                model[h.id] = d
            case 2:
                heap.remove(h)
                model[h.id] = nil
            default:
                if let top = heap.peekDeadline {
                    XCTAssertEqual(top, model.values.min())
                    let popped = heap.pop() as! Recorder
                    XCTAssertEqual(model[popped.id], top)
                    XCTAssertFalse(popped.timerSlot.isPending)
                    model[popped.id] = nil
                } else {
                    XCTAssertTrue(model.isEmpty)
                }
            }
            XCTAssertEqual(heap.count, model.count)
            for r in handlers {
                XCTAssertEqual(r.timerSlot.isPending, model[r.id] != nil)
                if let d = model[r.id] { XCTAssertEqual(r.timerSlot.deadline, d) }
            }
        }
        var last: UInt64 = 0
        while let d = heap.peekDeadline {
            XCTAssertGreaterThanOrEqual(d, last)
            last = d
            _ = heap.pop()
        }
    }

    func testCancelReleasesTheHandler() {
        var log: [Int] = []
        var heap = TimerHeap()
        weak var weakRef: Recorder?
        do {
            let r = Recorder(1, log: &log)
            weakRef = r
            heap.set(r, deadline: 10)
            heap.remove(r)
        }
        XCTAssertNil(weakRef, "a cancelled timer must not keep its handler alive")
        XCTAssertNil(heap.peekDeadline)
    }
}

private final class ReadHandler: EventHandler {
    var events: [UInt32] = []
    let loop: EventLoop
    init(loop: EventLoop) { self.loop = loop }
    func handleEvent(_ e: UInt32) {
        events.append(e)
        loop.stop()
    }
}

private final class StopTimer: TimerHandler {
    var timerSlot = TimerSlot()
    let loop: EventLoop
    var fired = false
    init(loop: EventLoop) { self.loop = loop }
    func timerFired(now: UInt64) {
        fired = true
        loop.stop()
    }
}

private struct SocketPairFailed: Error { let errno: Int32 }

/// A connected AF_UNIX stream pair; the caller closes both ends. Throws (failing the test) when there is none.
private func socketPair() throws -> [Int32] {
    var fds: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { throw SocketPairFailed(errno: errno) }
    return fds
}

final class EventLoopTests: XCTestCase {
    func testReadinessOnARealSocketPair() throws {
        let loop = try EventLoop()
        let fds = try socketPair()
        defer {
            close(fds[0])
            close(fds[1])
        }
        let h = ReadHandler(loop: loop)
        try loop.register(fd: fds[0], interest: EventLoop.readable, handler: h)
        let guardTimer = StopTimer(loop: loop)
        loop.schedule(at: monotonicNanos() + 2_000_000_000, guardTimer)
        XCTAssertEqual(write(fds[1], "x", 1), 1)
        loop.run()
        XCTAssertFalse(guardTimer.fired, "the loop should have stopped on readiness, not on the guard timer")
        XCTAssertEqual(h.events.count, 1)
        XCTAssertNotEqual(h.events[0] & EventLoop.readable, 0)
    }

    func testStaleRegistrationIsDropped() throws {
        let loop = try EventLoop()
        let fds = try socketPair()
        defer {
            close(fds[0])
            close(fds[1])
        }
        let h = ReadHandler(loop: loop)
        try loop.register(fd: fds[0], interest: EventLoop.readable, handler: h)
        loop.deregister(fd: fds[0])
        XCTAssertEqual(write(fds[1], "x", 1), 1)
        let t = StopTimer(loop: loop)
        loop.schedule(at: monotonicNanos() + 50_000_000, t)
        loop.run()
        XCTAssertTrue(t.fired)
        XCTAssertTrue(h.events.isEmpty, "no event may reach a deregistered handler")
    }

    func testTimerFiresInDeadlineOrderAndCanBeCancelled() throws {
        let loop = try EventLoop()
        final class Order: TimerHandler {
            var timerSlot = TimerSlot()
            let id: Int
            let sink: (Int) -> Void
            init(_ id: Int, _ sink: @escaping (Int) -> Void) {
                self.id = id
                self.sink = sink
            }
            func timerFired(now: UInt64) { sink(id) }
        }
        var order: [Int] = []
        let now = monotonicNanos()
        let a = Order(1) { order.append($0) }
        let b = Order(2) { order.append($0) }
        let c = Order(3) { order.append($0) }
        loop.schedule(at: now + 30_000_000, a)
        loop.schedule(at: now + 10_000_000, b)
        loop.schedule(at: now + 20_000_000, c)
        loop.schedule(at: now + 5_000_000, a)  // moved earlier
        loop.cancelTimer(c)
        let stop = StopTimer(loop: loop)
        loop.schedule(at: now + 60_000_000, stop)
        loop.run()
        XCTAssertEqual(order, [1, 2])
    }

    /// A connection that stops after its slice and goes on with `continueNextTick` lets the events that arrive in
    /// between run before its next slice, and the loop does not sleep while a slice is pending (no timer here: a
    /// blocking epoll_wait would only end at the guard timer).
    func testDeferredWorkRunsInTheNextTickAfterThatTicksEvents() throws {
        let loop = try EventLoop()
        let fds = try socketPair()
        defer {
            close(fds[0])
            close(fds[1])
        }
        final class Log { var entries: [String] = [] }
        let log = Log()
        final class Reader: EventHandler {
            let fd: Int32
            let log: Log
            init(fd: Int32, log: Log) {
                self.fd = fd
                self.log = log
            }
            func handleEvent(_ e: UInt32) {
                var b: UInt8 = 0
                while read(fd, &b, 1) == 1 { log.entries.append("event") }
            }
        }
        final class Busy: DeferredWork {
            var deferredSlot = DeferredSlot()
            let loop: EventLoop
            let peer: Int32
            let log: Log
            var slices = 0
            init(loop: EventLoop, peer: Int32, log: Log) {
                self.loop = loop
                self.peer = peer
                self.log = log
            }
            func continueDeferred() {
                slices += 1
                log.entries.append("slice \(slices)")
                // Another client's bytes arrive while this slice runs.
                if slices == 2 { _ = write(peer, "x", 1) }
                if slices == 5 {
                    loop.stop()
                } else {
                    loop.continueNextTick(self)
                    loop.continueNextTick(self)  // still pending: queued once
                }
            }
        }
        let flags = fcntl(fds[0], F_GETFL)
        XCTAssertEqual(fcntl(fds[0], F_SETFL, flags | O_NONBLOCK), 0)
        let reader = Reader(fd: fds[0], log: log)
        try loop.register(fd: fds[0], interest: EventLoop.readable | EventLoop.edgeTriggered, handler: reader)
        let busy = Busy(loop: loop, peer: fds[1], log: log)
        loop.continueNextTick(busy)
        loop.continueNextTick(busy)
        XCTAssertTrue(busy.deferredSlot.isPending)
        let guardTimer = StopTimer(loop: loop)
        loop.schedule(at: monotonicNanos() + 5_000_000_000, guardTimer)
        loop.run()
        XCTAssertFalse(guardTimer.fired, "the loop must not wait in epoll_wait while a slice is pending")
        XCTAssertEqual(log.entries, ["slice 1", "slice 2", "event", "slice 3", "slice 4", "slice 5"])
        XCTAssertFalse(busy.deferredSlot.isPending)
    }

    func testMessengerWakesTheLoopFromAnotherThread() throws {
        let loop = try EventLoop()
        let m = try LoopMessenger()
        try m.attach(to: loop)
        final class Box: @unchecked Sendable {
            var loop: EventLoop?
            var ran = false
        }
        let box = Box()
        box.loop = loop
        let guardTimer = StopTimer(loop: loop)
        loop.schedule(at: monotonicNanos() + 2_000_000_000, guardTimer)
        let t = Thread {
            usleep(20_000)
            m.send {
                box.ran = true
                box.loop?.stop()
            }
        }
        t.start()
        loop.run()
        XCTAssertTrue(box.ran)
        XCTAssertFalse(guardTimer.fired)
    }
}

final class SocketAddressTests: XCTestCase {
    func testSplitHostPort() {
        XCTAssertEqual(splitHostPort("127.0.0.1:8443")?.host, "127.0.0.1")
        XCTAssertEqual(splitHostPort("[::1]:443")?.host, "::1")
        XCTAssertEqual(splitHostPort("[::1]:443")?.port, 443)
        XCTAssertNil(splitHostPort("::1:443"))
        XCTAssertNil(splitHostPort("host:99999"))
        XCTAssertEqual(SocketAddress(literal: "::1", port: 80)?.description, "[::1]:80")
        XCTAssertEqual(SocketAddress(literal: "10.1.2.3", port: 8080)?.description, "10.1.2.3:8080")
        XCTAssertNil(SocketAddress(literal: "not-an-ip", port: 80))
        // hostBytes formats IPv4 itself: the same text as inet_ntop for every octet value in every position.
        for v in 0...255 {
            for pos in 0..<4 {
                var octets = [1, 20, 255, 3]
                octets[pos] = v
                let text = octets.map(String.init).joined(separator: ".")
                let a = SocketAddress(literal: text, port: 1)!
                XCTAssertEqual(String(decoding: a.hostBytes, as: UTF8.self), text)
                XCTAssertEqual(a.host, text)
            }
        }
        XCTAssertEqual(SocketAddress(literal: "2001:db8::1", port: 1)!.host, "2001:db8::1")
        XCTAssertEqual(SocketAddress(literal: "::ffff:10.0.0.1", port: 1)!.host, "::ffff:10.0.0.1")
    }

    func testListenOnPortZeroReportsTheBoundPort() throws {
        let fd = try Socket.listen(on: SocketAddress(literal: "127.0.0.1", port: 0)!, reusePort: true)
        defer { Socket.close(fd) }
        let bound = Socket.localAddress(fd)
        XCTAssertNotNil(bound)
        XCTAssertGreaterThan(bound!.port, 0)
    }
}
