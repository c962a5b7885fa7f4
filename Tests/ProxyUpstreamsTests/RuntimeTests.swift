import Foundation
import ProxyConfig
import ProxyEventLoop
import Synchronization
import XCTest

@testable import ProxyUpstreams

/// A DNS table the test edits while the runtime resolves against it.
final class FakeDNS: Sendable {
    let table = Mutex<[String: [String]]>([:])
    let calls = Atomic<Int>(0)

    func set(_ name: String, _ addresses: [String]) { table.withLock { $0[name] = addresses } }
    func fail(_ name: String) { table.withLock { $0[name] = nil } }

    var resolve: UpstreamRuntime.Resolve {
        { [self] host, port in
            calls.wrappingAdd(1, ordering: .relaxed)
            if let literal = SocketAddress(literal: host, port: Int(port)) { return .success([literal]) }
            guard let list = table.withLock({ $0[host] }), !list.isEmpty else {
                return .failure(ResolveFailure("cannot resolve \"\(host)\": Name or service not known"))
            }
            return .success(list.map { SocketAddress(literal: $0, port: Int(port))! })
        }
    }
}

/// Health check results by address, edited by the test.
final class FakeProbe: Sendable {
    let down = Mutex<Set<String>>([])
    let checked = Mutex<[String]>([])

    var probe: UpstreamRuntime.Probe {
        { [self] address, _, _ in
            checked.withLock { $0.append(address.description) }
            return down.withLock { $0.contains(address.description) }
                ? .failed(.connectRefused, status: 0) : .ok(status: 200)
        }
    }
}

final class RuntimeTests: XCTestCase {
    func pool(_ name: String, _ urls: [String], _ configure: (inout UpstreamPool) -> Void = { _ in }) -> UpstreamPool {
        var p = UpstreamPool(
            name: name,
            servers: urls.map {
                let c = try! ProxyConfiguration.parse(text: "upstreams = [\"\($0)\"]")
                return UpstreamPool.Server(url: c.upstreams[0])
            }
        )
        configure(&p)
        return p
    }

    func addresses(_ s: UpstreamSnapshot, _ pool: Int = 0) -> [String] {
        s.pools[pool].endpoints.map(\.state.address.description)
    }

    func testReResolutionPublishesRetiresAndKeepsLastGood() {
        let dns = FakeDNS()
        dns.set("origin.test", ["127.0.0.2"])
        let runtime = UpstreamRuntime(
            pools: [pool("app", ["http://origin.test:8080"]) { $0.resolveInterval = .seconds(5) }],
            routes: [],
            resolve: dns.resolve,
            clock: { 0 }
        )
        let selector = UpstreamSelector(box: runtime.box)
        XCTAssertEqual(addresses(selector.snapshot), ["127.0.0.2:8080"])
        let first = selector.snapshot.pools[0].endpoints[0].state

        // The "container" moves; nothing happens before the interval.
        dns.set("origin.test", ["127.0.0.3"])
        runtime.resolvePass(now: 4999)
        XCTAssertFalse(selector.refresh())
        runtime.resolvePass(now: 5000)
        XCTAssertTrue(selector.refresh(), "a new address set is published")
        XCTAssertEqual(addresses(selector.snapshot), ["127.0.0.3:8080"])
        XCTAssertTrue(first.isRetired, "the old address drains")
        XCTAssertEqual(selector.pick(pool: 0, now: 5000)?.state.address.description, "127.0.0.3:8080")

        // Same answer again: no new snapshot.
        runtime.resolvePass(now: 10_000)
        XCTAssertFalse(selector.refresh())

        // The name stops resolving: the last good address stays, the error is reported.
        dns.fail("origin.test")
        runtime.resolvePass(now: 15_000)
        XCTAssertTrue(selector.refresh(), "the error is published for /upstreams")
        XCTAssertEqual(addresses(selector.snapshot), ["127.0.0.3:8080"])
        XCTAssertFalse(selector.snapshot.pools[0].endpoints[0].state.isRetired)
        XCTAssertNotNil(selector.snapshot.pools[0].servers[0].resolveError)
        XCTAssertTrue(runtime.reportJSON().contains("Name or service not known"))

        // It resolves again, to two addresses; the surviving one keeps its state object.
        let kept = selector.snapshot.pools[0].endpoints[0].state
        dns.set("origin.test", ["127.0.0.3", "127.0.0.4"])
        runtime.resolvePass(now: 20_000)
        XCTAssertTrue(selector.refresh())
        XCTAssertEqual(Set(addresses(selector.snapshot)), ["127.0.0.3:8080", "127.0.0.4:8080"])
        XCTAssertTrue(selector.snapshot.pools[0].endpoints.contains { $0.state === kept })
        XCTAssertNil(selector.snapshot.pools[0].servers[0].resolveError)
    }

    func testNameUnresolvableAtStartHasNoEndpointAndLiteralsAreNotResolved() {
        let dns = FakeDNS()
        let runtime = UpstreamRuntime(
            pools: [pool("a", ["http://missing.test", "http://127.0.0.9:81"]), pool("b", ["http://missing.test"])],
            routes: [],
            resolve: dns.resolve,
            clock: { 0 }
        )
        let selector = UpstreamSelector(box: runtime.box)
        XCTAssertEqual(addresses(selector.snapshot, 0), ["127.0.0.9:81"])
        XCTAssertNil(selector.pick(pool: 1, now: 0), "no address at all: the caller answers 502")
        let before = dns.calls.load(ordering: .relaxed)
        dns.set("missing.test", ["127.0.0.5"])
        runtime.resolvePass(now: 5000)
        XCTAssertEqual(dns.calls.load(ordering: .relaxed) - before, 2, "one call per name per pool, none for literals")
        selector.refresh()
        XCTAssertEqual(selector.pick(pool: 1, now: 5000)?.state.address.description, "127.0.0.5:80")
    }

    func testPanicRuleAndExclusion() {
        let runtime = UpstreamRuntime(
            pools: [pool("a", ["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"]) { $0.maxFails = 1 }],
            routes: [],
            clock: { 0 }
        )
        let s = UpstreamSelector(box: runtime.box)
        let p = s.snapshot.pools[0]
        // Eject :1 and :2.
        for e in p.endpoints.prefix(2) {
            s.begin(e)
            XCTAssertTrue(s.finish(e, pool: p, outcome: .failed, now: 0))
        }
        for _ in 0..<10 { XCTAssertEqual(s.pick(pool: 0, now: 1)?.state.address.port, 3) }
        // Exclude the last usable one (a retry): with nothing usable left, panic spreads over the rest.
        let panicked = Set(
            (0..<10).compactMap { _ in s.pick(pool: 0, now: 1, excluding: p.endpoints[2].state)?.state.address.port }
        )
        XCTAssertEqual(panicked, [1, 2])
        // Eject :3 too: every address is down, the panic rule tries them all.
        s.begin(p.endpoints[2])
        s.finish(p.endpoints[2], pool: p, outcome: .failed, now: 0)
        let all = Set((0..<30).compactMap { _ in s.pick(pool: 0, now: 1)?.state.address.port })
        XCTAssertEqual(all, [1, 2, 3])
        // After fail_timeout (10 s) they are back.
        XCTAssertTrue(p.endpoints.allSatisfy { $0.state.isUsable(now: 10_000) })
        XCTAssertTrue(p.endpoints.allSatisfy { $0.state.outstanding == 0 })
    }

    func testSingleEndpointIsNeverExcluded() {
        let runtime = UpstreamRuntime(pools: [pool("a", ["http://127.0.0.1:1"])], routes: [], clock: { 0 })
        let s = UpstreamSelector(box: runtime.box)
        let only = s.snapshot.pools[0].endpoints[0].state
        XCTAssertTrue(s.pick(pool: 0, now: 0, excluding: only)?.state === only)
    }

    func testOutcomesAndOutstanding() {
        let runtime = UpstreamRuntime(
            pools: [pool("a", ["http://127.0.0.1:1", "http://127.0.0.1:2"]) { $0.balance = .leastOutstanding }],
            routes: [],
            clock: { 0 }
        )
        let s = UpstreamSelector(box: runtime.box)
        let p = s.snapshot.pools[0]
        let a = s.pick(pool: 0, now: 0)!
        s.begin(a)
        let b = s.pick(pool: 0, now: 0)!
        XCTAssertFalse(a.state === b.state, "least outstanding avoids the busy one")
        s.begin(b)
        s.begin(b)
        XCTAssertTrue(s.pick(pool: 0, now: 0)!.state === a.state)
        s.finish(b, pool: p, outcome: .failed, now: 0)
        s.finish(b, pool: p, outcome: .failed, now: 0)
        XCTAssertEqual(b.state.passive.failures, 2)
        s.begin(b)
        s.finish(b, pool: p, outcome: .abandoned, now: 0)
        XCTAssertEqual(b.state.passive.failures, 2, "abandoned attempts do not judge the origin")
        s.begin(b)
        s.finish(b, pool: p, outcome: .responded, now: 0)
        XCTAssertEqual(b.state.passive.failures, 0)
        XCTAssertEqual(b.state.outstanding, 0)
        XCTAssertEqual(a.state.outstanding, 1)
    }

    func testHashBalancingIsStickyAcrossSelectors() {
        let runtime = UpstreamRuntime(
            pools: [pool("a", (1...5).map { "http://127.0.0.1:\($0)" }) { $0.balance = .hash }],
            routes: [],
            clock: { 0 }
        )
        let w1 = UpstreamSelector(box: runtime.box)
        let w2 = UpstreamSelector(box: runtime.box)
        for i in 0..<100 {
            let key = Array("10.1.2.\(i)".utf8).withUnsafeBytes { UpstreamSelector.hashKey(client: $0, header: nil) }
            XCTAssertTrue(w1.pick(pool: 0, key: key, now: 0)!.state === w2.pick(pool: 0, key: key, now: 0)!.state)
        }
        let byHeader = Array("user-1".utf8).withUnsafeBytes { h in
            Array("10.0.0.1".utf8).withUnsafeBytes { UpstreamSelector.hashKey(client: $0, header: h) }
        }
        XCTAssertEqual(byHeader, RendezvousHash.fnv1a("user-1".utf8))
    }

    func testActiveChecksRiseFallAndReport() {
        let probe = FakeProbe()
        let clock = Atomic<UInt64>(0)
        let runtime = UpstreamRuntime(
            pools: [
                pool("a", ["http://127.0.0.1:1", "http://127.0.0.1:2"]) {
                    var hc = UpstreamPool.HealthCheck()
                    hc.interval = .seconds(1)
                    hc.rise = 2
                    hc.fall = 2
                    $0.healthCheck = hc
                }
            ],
            routes: [],
            probe: probe.probe,
            clock: { clock.load(ordering: .relaxed) }
        )
        let s = UpstreamSelector(box: runtime.box)
        let states = s.snapshot.pools[0].endpoints.map(\.state)
        probe.down.withLock { $0 = ["127.0.0.1:2"] }
        runtime.healthPass(now: 0)
        XCTAssertTrue(states[0].active.isUp)
        XCTAssertFalse(states[1].active.isUp, "starts one failure from down")
        XCTAssertTrue(runtime.reportJSON().contains("\"reason\":\"health check: connection refused\""))
        runtime.healthPass(now: 500)
        XCTAssertEqual(probe.checked.withLock { $0.count }, 2, "not due again before interval")
        for _ in 0..<20 { XCTAssertEqual(s.pick(pool: 0, now: 500)?.state.address.port, 1) }
        probe.down.withLock { $0 = [] }
        runtime.healthPass(now: 1000)
        XCTAssertFalse(states[1].active.isUp, "one good check of rise = 2")
        runtime.healthPass(now: 2000)
        XCTAssertTrue(states[1].active.isUp, "second good check: up")
        XCTAssertEqual(probe.checked.withLock { $0.count }, 6)
    }

    func testReloadSwapsRoutesAndPoolsKeepingState() {
        let runtime = UpstreamRuntime(
            pools: [pool("a", ["http://127.0.0.1:1"]), pool("b", ["http://127.0.0.1:2"])],
            routes: [Route(host: ["a.test"], upstream: "a"), Route(upstream: "b")],
            clock: { 0 }
        )
        let s = UpstreamSelector(box: runtime.box)
        let inFlight = s.pick(pool: 0, now: 0)!
        let oldPool = s.snapshot.pools[0]
        s.begin(inFlight)
        XCTAssertEqual(s.route(sni: nil, host: "a.test", path: "/"), .pool(0))
        runtime.reload(
            pools: [pool("b", ["http://127.0.0.1:2", "http://127.0.0.1:3"]), pool("c", ["http://127.0.0.1:4"])],
            routes: [Route(host: ["a.test"], upstream: "c")]
        )
        XCTAssertTrue(s.refresh())
        XCTAssertEqual(s.route(sni: nil, host: "a.test", path: "/"), .pool(1))
        XCTAssertEqual(s.route(sni: nil, host: "other", path: "/"), .reject(404))
        XCTAssertTrue(inFlight.state.isRetired, "pool a is gone: its address drains")
        s.finish(inFlight, pool: oldPool, outcome: .responded, now: 0)
        XCTAssertEqual(inFlight.state.outstanding, 0, "the in-flight exchange finishes on the old pool")
        XCTAssertFalse(s.snapshot.pools[0].endpoints[0].state.isRetired)
        XCTAssertEqual(addresses(s.snapshot, 0), ["127.0.0.1:2", "127.0.0.1:3"])
    }

    func testReportJSON() throws {
        let runtime = UpstreamRuntime(
            pools: [pool("api", ["http://127.0.0.1:1", "http://127.0.0.1:2"]) { $0.maxFails = 1 }],
            routes: [],
            clock: { 5 }
        )
        let s = UpstreamSelector(box: runtime.box)
        let p = s.snapshot.pools[0]
        s.begin(p.endpoints[0])
        s.finish(p.endpoints[0], pool: p, outcome: .failed, now: 0)
        s.begin(p.endpoints[1])
        let json = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(runtime.reportJSON().utf8)) as? [String: Any]
        )
        let pools = try XCTUnwrap(json["pools"] as? [[String: Any]])
        XCTAssertEqual(pools[0]["name"] as? String, "api")
        XCTAssertEqual(pools[0]["balance"] as? String, "round-robin")
        let servers = try XCTUnwrap(pools[0]["servers"] as? [[String: Any]])
        XCTAssertEqual(servers.map { $0["server"] as? String }, ["http://127.0.0.1:1", "http://127.0.0.1:2"])
        XCTAssertEqual(servers.map { $0["state"] as? String }, ["down", "up"])
        let a0 = try XCTUnwrap((servers[0]["addresses"] as? [[String: Any]])?.first)
        XCTAssertEqual(a0["address"] as? String, "127.0.0.1:1")
        XCTAssertEqual(a0["state"] as? String, "down")
        XCTAssertEqual(a0["reason"] as? String, "ejected: 1 consecutive failures")
        XCTAssertEqual(a0["consecutive_failures"] as? Int, 1)
        let a1 = try XCTUnwrap((servers[1]["addresses"] as? [[String: Any]])?.first)
        XCTAssertEqual(a1["outstanding"] as? Int, 1)
        XCTAssertTrue(servers[0]["resolve_error"] is NSNull)
    }

    func testSystemResolver() {
        guard case .success(let a) = systemResolve(host: "localhost", port: 80) else {
            return XCTFail("localhost resolves")
        }
        XCTAssertTrue(a.contains { $0.description == "127.0.0.1:80" || $0.description == "[::1]:80" })
        guard case .failure(let e) = systemResolve(host: "no-such-host.invalid", port: 80) else {
            return XCTFail(".invalid never resolves")
        }
        XCTAssertTrue(e.message.contains("no-such-host.invalid"))
        guard case .success(let lit) = systemResolve(host: "127.0.0.7", port: 81) else { return XCTFail() }
        XCTAssertEqual(lit.map(\.description), ["127.0.0.7:81"])
    }

    /// The real threads: the resolver thread publishes a moved address within the interval, and the health thread
    /// (real HTTP probes) takes a dead address down.
    func testThreadsPublishWithinTheInterval() throws {
        let dns = FakeDNS()
        dns.set("moving.test", ["127.0.0.2"])
        let closed = try Socket.listen(on: SocketAddress(literal: "127.0.0.1", port: 0)!, backlog: 1, reusePort: false)
        let deadPort = Socket.localAddress(closed)!.port
        Socket.close(closed)
        let runtime = UpstreamRuntime(
            pools: [
                pool("m", ["http://moving.test:8080"]) { $0.resolveInterval = .milliseconds(200) },
                pool("h", ["http://127.0.0.1:\(deadPort)"]) {
                    var hc = UpstreamPool.HealthCheck()
                    hc.interval = .milliseconds(100)
                    hc.timeout = .milliseconds(100)
                    hc.fall = 1
                    $0.healthCheck = hc
                },
            ],
            routes: [],
            resolve: dns.resolve
        )
        runtime.start()
        defer { runtime.stop() }
        let selector = UpstreamSelector(box: runtime.box)
        dns.set("moving.test", ["127.0.0.3"])
        let start = Date()
        while Date().timeIntervalSince(start) < 5 {
            selector.refresh()
            if addresses(selector.snapshot) == ["127.0.0.3:8080"],
                selector.snapshot.pools[1].endpoints[0].state.active.isUp == false
            {
                break
            }
            usleep(20_000)
        }
        XCTAssertEqual(addresses(selector.snapshot), ["127.0.0.3:8080"])
        XCTAssertLessThan(Date().timeIntervalSince(start), 2, "well within resolve_interval plus a tick")
        let dead = selector.snapshot.pools[1].endpoints[0].state.active
        XCTAssertFalse(dead.isUp)
        XCTAssertEqual(dead.reason, .connectRefused)
    }
}
