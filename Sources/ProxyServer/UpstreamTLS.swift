import CoreMetrics
import Glibc
import Logging
import ProxyConfig
import ProxyCore
import ProxyEventLoop
import ProxyForwarder
import ProxyTLS
import ProxyUpstreams
import Synchronization

// TLS toward `https://` origins (issue 12, part 1). The forwarder does not know about it: a TLS origin connection is
// an `UpstreamConnection` whose connect completes only after the TLS handshake (driven here by readiness events),
// whose reads are SSL_read and whose writes are SSL_write. Contexts are built per pool at load/reload
// (`UpstreamTLSRegistry`); each worker keeps, per pool, the latest session each server issued
// (`UpstreamTLSClient`) so connections opened after keep-alive misses resume instead of doing a full handshake.

/// The client TLS contexts of every pool with `https://` servers, built at load and at reload, looked up by workers
/// when their upstream snapshot changes (not per connection). A context whose pool settings did not change is kept
/// across reloads, so workers keep its sessions.
final class UpstreamTLSRegistry: Sendable {
    struct Entry: Sendable {
        let pool: String
        let tls: OriginTLS
        let context: OriginTLSContext
    }

    /// The contexts of the last two installs: a worker may still see the previous snapshot (with the previous
    /// settings) for a moment after a reload installed new contexts.
    private let state = Mutex<(current: [Entry], previous: [Entry])>(([], []))

    /// Builds (or keeps) a context for each pool that has an `https://` server. Throws a message naming the pool
    /// when a file cannot be loaded. Installs nothing: call ``install(_:)`` once the whole configuration is accepted.
    func prepare(_ pools: [UpstreamPool]) throws(SyscallErrorLike) -> [Entry] {
        let existing = state.withLock { $0.current }
        var out: [Entry] = []
        for pool in pools where pool.usesTLS {
            if let e = existing.first(where: { $0.pool == pool.name && $0.tls == pool.tls }) {
                out.append(e)
                continue
            }
            do {
                out.append(
                    Entry(pool: pool.name, tls: pool.tls, context: try OriginTLSContext(Self.settings(pool.tls)))
                )
            } catch {
                throw SyscallErrorLike("upstreams.\(pool.name).tls: \(error.message)")
            }
        }
        return out
    }

    func install(_ entries: [Entry]) {
        state.withLock { s in
            s.previous = s.current
            s.current = entries
        }
    }

    /// The context for `pool` with these settings, if installed.
    func context(for pool: UpstreamPool) -> OriginTLSContext? {
        state.withLock { s in
            (s.current.first { $0.pool == pool.name && $0.tls == pool.tls }
                ?? s.previous.first { $0.pool == pool.name && $0.tls == pool.tls })?.context
        }
    }

    /// Pools with `verify = false`: the caller logs them at warning level at every load.
    static func unverifiedPools(_ pools: [UpstreamPool]) -> [String] {
        pools.filter { $0.usesTLS && !$0.tls.verify }.map(\.name)
    }

    static func settings(_ tls: OriginTLS) -> OriginTLSSettings {
        var s = OriginTLSSettings()
        s.verify = tls.verify
        s.caFile = tls.caFile
        s.clientCert = tls.clientCert
        s.clientKey = tls.clientKey
        s.minVersion = tls.minVersion == .tls13 ? 0x0304 : 0x0303
        return s
    }
}

/// One worker's view of one pool's TLS context: the names sent and checked per server, and the latest session each
/// server issued (resumption; loop thread only, no lock). Replaced when the pool's context changes, which drops
/// its sessions: a session verified under other settings (another CA, another name) must not be resumed.
final class UpstreamTLSClient {
    let context: OriginTLSContext
    /// Per server of the pool (index as in `PoolSnapshot.servers`).
    private(set) var sessions: [OriginTLSSession?]
    /// SNI, host name to verify, address to verify; per server.
    let names: [(sni: String?, host: String?, ip: String?)]
    /// Loop time (ns) of the last handshake-failure warning per server, and failures not logged since.
    var lastWarning: [UInt64]
    var suppressed: [Int]

    init(context: OriginTLSContext, pool: PoolSnapshot) {
        self.context = context
        sessions = Array(repeating: nil, count: pool.servers.count)
        lastWarning = Array(repeating: 0, count: pool.servers.count)
        suppressed = Array(repeating: 0, count: pool.servers.count)
        names = pool.servers.map { Self.names(for: $0.url, sni: pool.config.tls.sni) }
    }

    /// SNI, host name to verify, address to verify for a server: the configured `sni` for both, else the server's
    /// DNS name for both, else (an IP literal) no SNI and the address checked against the certificate's IP SANs.
    static func names(for url: Upstream, sni: String?) -> (sni: String?, host: String?, ip: String?) {
        if let sni { return (sni, sni, nil) }
        switch url.host {
        case .name(let n): return (n, n, nil)
        case .ipv4(let a), .ipv6(let a): return (nil, nil, a)
        }
    }

    func store(_ session: OriginTLSSession?, server: Int) {
        guard server < sessions.count else { return }
        sessions[server] = session
    }
}

/// `edgeproxy_upstream_tls_handshakes_total{resumed}` and `edgeproxy_upstream_tls_handshake_failures_total{reason}`,
/// per worker, created when the worker first talks TLS to an origin.
final class UpstreamTLSMetrics {
    let full: Counter
    let resumed: Counter
    let failures: [OriginTLSFailure.Reason: Counter]

    init(worker: String) {
        full = Counter(
            label: "edgeproxy_upstream_tls_handshakes_total",
            dimensions: [("worker", worker), ("resumed", "false")]
        )
        resumed = Counter(
            label: "edgeproxy_upstream_tls_handshakes_total",
            dimensions: [("worker", worker), ("resumed", "true")]
        )
        var f: [OriginTLSFailure.Reason: Counter] = [:]
        for r in OriginTLSFailure.Reason.allCases {
            f[r] = Counter(
                label: "edgeproxy_upstream_tls_handshake_failures_total",
                dimensions: [("worker", worker), ("reason", r.rawValue)]
            )
        }
        failures = f
    }
}

/// The TLS state of one origin connection; receives the sessions the origin issues on it.
final class UpstreamTLS: OriginSessionSink {
    var stream: OriginTLSStream!
    let client: UpstreamTLSClient
    let server: Int
    /// TCP connect completed (the handshake can run).
    var tcpConnected: Bool
    var established = false
    /// Application data arrived on this connection.
    var gotData = false
    var failure: OriginTLSFailure?
    /// SSL_read needs the socket writable (it must send, e.g. a KeyUpdate answer) / SSL_write needs it readable.
    var readWantsWrite = false
    var writeWantsRead = false

    init(client: UpstreamTLSClient, server: Int, tcpConnected: Bool) {
        self.client = client
        self.server = server
        self.tcpConnected = tcpConnected
    }

    func originIssuedSession(_ session: OriginTLSSession) { client.store(session, server: server) }
}

extension Worker {
    /// Rebuilds the per-pool TLS clients after an upstream snapshot change, keeping those whose context is unchanged
    /// (and so their sessions).
    func refreshUpstreamTLS() {
        let pools = upstreams.snapshot.pools
        var next: [UpstreamTLSClient?] = []
        next.reserveCapacity(pools.count)
        for pool in pools {
            guard pool.config.usesTLS, let ctx = upstreamTLSRegistry.context(for: pool.config) else {
                next.append(nil)
                continue
            }
            if let old = upstreamTLSClients.first(where: {
                $0?.context === ctx && $0?.names.count == pool.servers.count
            }), let old {
                next.append(old)
            } else {
                next.append(UpstreamTLSClient(context: ctx, pool: pool))
            }
        }
        upstreamTLSClients = next
    }

    /// The TLS client for a connection to endpoint `endpoint` of pool `pool`: nil for an `http://` server.
    /// Throws when the server is `https://` but no context exists (cannot happen after a successful load).
    func upstreamTLSClient(pool: Int, endpoint: Int) throws(SyscallError) -> UpstreamTLSClient? {
        let p = upstreams.snapshot.pools[pool]
        guard p.servers[p.endpoints[endpoint].server].url.tls else { return nil }
        guard pool < upstreamTLSClients.count, let c = upstreamTLSClients[pool] else {
            throw SyscallError("SSL_CTX (no TLS context for the pool)", EINVAL)
        }
        return c
    }
}

extension UpstreamConnection {
    /// Makes this (just created) connection a TLS one; the forwarder sees it connected only after the handshake.
    func attachTLS(_ client: UpstreamTLSClient, tcpConnected: Bool) throws(SyscallError) {
        let server = pool.endpoints[origin].server
        let t = UpstreamTLS(client: client, server: server, tcpConnected: tcpConnected)
        let n = client.names[server]
        guard
            let s = OriginTLSStream.make(
                context: client.context,
                fd: fd,
                serverName: n.sni,
                verifyHost: n.host,
                verifyIP: n.ip,
                session: client.sessions[server],
                sink: t
            )
        else { throw SyscallError("SSL_new", ENOMEM) }
        t.stream = s
        tls = t
        canRead = false
        canWrite = false
        // The handshake starts at the first readiness event (registration reports a connected socket writable at
        // once), not here: the connector may still queue a PROXY protocol header, which must precede the
        // ClientHello on the wire.
    }

    /// Readiness while the handshake runs: completes the TCP connect, writes a pending PROXY protocol header, then
    /// steps SSL_connect. The owner hears of
    /// it only when the handshake is done or failed (then `canWrite` is set so the forwarder calls finishConnect).
    func tlsHandshakeEvent(_ t: UpstreamTLS, _ events: UInt32) {
        if events & (EventLoop.readHangup | EventLoop.hangup | EventLoop.error) != 0 { sawHangup = true }
        if !t.tcpConnected {
            guard events & (EventLoop.writable | EventLoop.error | EventLoop.hangup) != 0 else { return }
            let e = Socket.pendingError(fd)
            if e != 0 {
                tcpFailed = e
                canWrite = true
                owner?.transportReady()
                return
            }
            t.tcpConnected = true
        }
        if let r = flushPreamble() {
            // The PROXY protocol header is not all out yet (wait for writable) or the write failed.
            guard r == .failed else { return }
            tcpFailed = EPIPE
            canWrite = true
            owner?.transportReady()
            return
        }
        tlsStep(t)
        if t.established || t.failure != nil { owner?.transportReady() }
    }

    private func tlsStep(_ t: UpstreamTLS) {
        switch t.stream.handshake() {
        case .wantRead, .wantWrite:
            return
        case .done(let resumed):
            t.established = true
            let m = worker.upstreamTLSMetrics
            (resumed ? m.resumed : m.full).increment()
            canRead = true
            canWrite = true
        case .failed(let f):
            t.failure = f
            canWrite = true
            worker.upstreamTLSMetrics.failures[f.reason]?.increment()
            // A session that no longer works (e.g. the origin changed keys) is dropped with the failure.
            t.client.store(nil, server: t.server)
            logHandshakeFailure(t, f)
        }
    }

    /// One warning per server per second at most (an operator must act: wrong CA, expired or mismatched
    /// certificate, a client certificate the origin wants); the rest are counted into the next line.
    func logHandshakeFailure(_ t: UpstreamTLS, _ f: OriginTLSFailure) {
        let c = t.client
        let now = worker.loop.now
        if c.lastWarning[t.server] != 0 && now &- c.lastWarning[t.server] < 1_000_000_000 {
            c.suppressed[t.server] += 1
            return
        }
        c.lastWarning[t.server] = now
        let more = c.suppressed[t.server]
        c.suppressed[t.server] = 0
        let url = pool.servers[t.server].url
        worker.logger.warning(
            "TLS handshake with origin \(url) (\(address)) failed: \(f.message)",
            metadata: [
                "pool": "\(pool.name)", "reason": "\(f.reason.rawValue)",
                "suppressed": more > 0 ? "\(more)" : nil,
            ].compactMapValues { $0.map { Logger.MetadataValue.string($0) } }
        )
    }

    /// finishConnect for TLS: 0 once the handshake is done, ECONNABORTED when it failed (counted as a connect
    /// failure for health and failover; the 502 follows from the forwarder).
    func tlsFinishConnect(_ t: UpstreamTLS) -> Int32 {
        if tcpFailed != 0 { return tcpFailed }
        guard t.established else { return t.failure != nil ? ECONNABORTED : EINPROGRESS }
        connected = true
        recordConnected()
        return 0
    }

    /// SSL_read in place of read(2): the IOResult of a plain socket read (nil: failed).
    func tlsRead(_ t: UpstreamTLS, into buf: UnsafeMutableRawBufferPointer) -> IOResult<Int>? {
        switch t.stream.read(into: buf) {
        case .bytes(let n):
            t.gotData = true
            return .processed(n)
        case .wantRead:
            canRead = false
            return .wouldBlock
        case .wantWrite:
            canRead = false
            t.readWantsWrite = true
            return .wouldBlock
        case .closed:
            return .processed(0)
        case .truncated:
            // No close_notify: a close-delimited body may be cut short, so it is not taken as a clean end.
            peerClosed = true
            worker.logger.debug("origin \(address) closed the TLS connection without close_notify")
            return nil
        case .failed(let f):
            if !t.gotData && !reused {
                // Nothing came yet on a fresh connection: the handshake's outcome, seen late (TLS 1.3 client
                // authentication fails after the client finished). Reported like a handshake failure.
                worker.upstreamTLSMetrics.failures[f.reason]?.increment()
                logHandshakeFailure(t, f)
            } else {
                worker.logger.debug("TLS read from origin \(address) failed: \(f.message)")
            }
            return nil
        }
    }

    func tlsWrite(_ t: UpstreamTLS, _ buf: UnsafeRawBufferPointer) -> TransportWrite {
        switch t.stream.write(buf) {
        case .written(let n):
            return .wrote(n)
        case .wantWrite:
            canWrite = false
            return .blocked
        case .wantRead:
            canWrite = false
            t.writeWantsRead = true
            return .blocked
        case .failed(let why):
            worker.logger.debug("TLS write to origin \(address) failed: \(why)")
            return .failed
        }
    }

    /// After the handshake: an I/O step that waited for the other direction may run again.
    func tlsCrossReadiness(_ t: UpstreamTLS, _ events: UInt32) {
        if t.writeWantsRead && events & (EventLoop.readable | EventLoop.error | EventLoop.hangup) != 0 {
            t.writeWantsRead = false
            canWrite = true
        }
        if t.readWantsWrite && events & (EventLoop.writable | EventLoop.error | EventLoop.hangup) != 0 {
            t.readWantsWrite = false
            canRead = true
        }
    }

    /// An idle pooled TLS connection became readable: post-handshake messages (a late NewSessionTicket, KeyUpdate)
    /// are consumed and keep it usable; application data, close_notify or EOF make it unusable.
    func tlsIdleUnusable(_ t: UpstreamTLS) -> Bool {
        var scratch: UInt64 = 0
        let r = withUnsafeMutableBytes(of: &scratch) { t.stream.read(into: $0) }
        switch r {
        case .wantRead, .wantWrite: return false
        default: return true
        }
    }

    /// Frees the TLS state at close: close_notify first when the connection is healthy (as nginx does).
    func tlsClose(_ t: UpstreamTLS) {
        if t.established && !peerClosed && !sawHangup { t.stream.shutdown() }
        t.stream.free()
        tls = nil
    }
}

/// Active health checks of `https://` servers: the same `GET` as for plain servers (HealthProbe), over TLS on the
/// pool's client context (same verification, SNI and client certificate as requests; no resumption). A server whose
/// certificate does not verify is unhealthy, with reason "TLS handshake failed".
struct UpstreamTLSProbe {
    let registry: UpstreamTLSRegistry

    func check(_ address: SocketAddress, _ pool: UpstreamPool, _ server: Upstream) -> HealthProbe.Result {
        guard server.tls else { return UpstreamRuntime.httpProbe(address, pool, server) }
        guard let hc = pool.healthCheck else { return .ok(status: 0) }
        let context = registry.context(for: pool)
        let n = UpstreamTLSClient.names(for: server, sni: pool.tls.sni)
        return HealthProbe.check(
            address: address,
            host: server.hostHeader,
            path: hc.path,
            timeoutMilliseconds: hc.timeout.milliseconds,
            expect: hc.expectStatus,
            preamble: pool.proxyProtocol.map { ProxyProtocol.header($0, source: nil, destination: nil) } ?? [],
            security: { fd in
                guard let context else { return nil }
                let sink = ProbeSessionSink()
                guard
                    let s = OriginTLSStream.make(
                        context: context,
                        fd: fd,
                        serverName: n.sni,
                        verifyHost: n.host,
                        verifyIP: n.ip,
                        session: nil,
                        sink: sink
                    )
                else { return nil }
                return ProbeChannel(stream: s, sink: sink)
            }
        )
    }
}

/// Sessions issued to a health check are dropped (checks do not resume).
private final class ProbeSessionSink: OriginSessionSink {
    func originIssuedSession(_ session: OriginTLSSession) {}
}

private struct ProbeChannel: HealthProbe.Channel {
    let stream: OriginTLSStream
    /// Kept alive as long as the stream (its ex_data points at it).
    let sink: ProbeSessionSink

    func handshake() -> HealthProbe.Step {
        switch stream.handshake() {
        case .done: return .done(0)
        case .wantRead: return .wantRead
        case .wantWrite: return .wantWrite
        case .failed: return .closed
        }
    }

    func send(_ bytes: UnsafeRawBufferPointer) -> HealthProbe.Step {
        switch stream.write(bytes) {
        case .written(let n): return .done(n)
        case .wantRead: return .wantRead
        case .wantWrite: return .wantWrite
        case .failed: return .closed
        }
    }

    func recv(_ buffer: UnsafeMutableRawBufferPointer) -> HealthProbe.Step {
        switch stream.read(into: buffer) {
        case .bytes(let n): return .done(n)
        case .wantRead: return .wantRead
        case .wantWrite: return .wantWrite
        case .closed, .truncated, .failed: return .closed
        }
    }

    func close() {
        stream.shutdown()
        stream.free()
    }
}
