import Glibc
import ProxyCore
import ProxyEventLoop
import ProxyForwarder
import ProxyUpstreams

/// The worker's `OriginConnector`: chooses a server address for each attempt from the pool the session routed the
/// request to (ProxyUpstreams: balancing, health, panic rule), reuses idle keep-alive connections to that address
/// (checked alive first), or starts a non-blocking connect. Loop thread only.
///
/// A forwarder's `server` numbers are endpoint indices in the pool snapshot current when the attempt started;
/// `needsOtherServer` avoids every endpoint already tried.
final class WorkerOriginConnector: OriginConnector {
    // SAFETY: the worker owns this connector (lazy property) and outlives it; loop thread only. unowned(unsafe)
    // avoids an unowned-retain per access on the request path (seen in perf).
    unowned(unsafe) let worker: Worker

    init(worker: Worker) { self.worker = worker }

    var maxAttempts: Int { max(2, worker.upstreams.snapshot.largestPoolSize * 2) }

    func acquire(for f: OriginForwarder) -> (any OriginTransport)? {
        let selector = worker.upstreams
        guard f.pool >= 0, f.pool < selector.snapshot.pools.count else { return nil }
        let pool = selector.snapshot.pools[f.pool]
        guard !pool.endpoints.isEmpty else { return nil }
        if f.attempts > 0 { worker.metrics.upstreamRetries.increment() }
        let now = worker.loop.now / 1_000_000
        var avoid = f.needsOtherServer ? f.triedServers : []
        // A pooled connection the origin closed since its last event (its FIN came after our last epoll_wait)
        // would fail the request. An idempotent request whose bytes are all held is simply retried when that
        // happens (the retry rule: a reused connection failing before the response), as browsers and Go do, so
        // only the others pay for the check: one recv(MSG_PEEK) syscall, which with its TCP ACK was ~2 µs of
        // proxy CPU per request on loopback. A retry always checks, so that after an origin restart the retry
        // skips every dead pooled connection instead of spending the last attempt on one.
        let checkAlive = f.attempts > 0 || !(f.idempotent && f.requestEnded && f.replayable)
        // `proxy_protocol` pools: connections carry the client's identity and serve only that client connection.
        let proxyProtocol = pool.proxyProtocol
        let privateTo = proxyProtocol == nil ? 0 : f.client?.originClientID ?? 0
        while avoid.count < pool.endpoints.count {
            guard let i = selector.pickIndex(pool: f.pool, key: f.hashKey, now: now, avoiding: avoid) else { break }
            let state = pool.endpoints[i].state
            while let pooled = privateTo == 0
                ? worker.takeIdleUpstream(endpoint: state)
                : worker.takePrivateIdleUpstream(of: privateTo, endpoint: state)
            {
                if pooled.isUsable(peek: checkAlive) {
                    pooled.becomeBusy()
                    selector.begin(pool.endpoints[i])
                    return pooled
                }
                // The origin closed it while it was idle: never send a request into a dead connection.
                worker.metrics.upstreamStaleClosed.increment()
                pooled.close()
            }
            do {
                // A PROXY protocol header (sendFirst) goes before a TLS handshake: the handshake starts at the
                // connection's first readiness event, after this returns.
                let u = try UpstreamConnection.connect(
                    worker: worker,
                    pool: pool,
                    origin: i,
                    tls: worker.upstreamTLSClient(pool: f.pool, endpoint: i)
                )
                if let proxyProtocol {
                    // Without a client (not expected) the header names nobody (v1 UNKNOWN, v2 LOCAL), and the
                    // connection is shared like any other.
                    u.sendFirst(
                        f.client?.proxyProtocolHeader(proxyProtocol, tlvs: pool.proxyProtocolTLVs)
                            ?? ProxyProtocol.header(proxyProtocol, source: nil, destination: nil)
                    )
                    u.privateTo = privateTo
                }
                selector.begin(pool.endpoints[i])
                return u
            } catch {
                if error.isLocalShortage {
                    // The proxy is out of descriptors, memory or local ports: no origin is to blame (its passive
                    // health is left alone) and another would fail the same way.
                    worker.metrics.upstreamError(ForwardFailure.localResources.rawValue)
                    worker.logger.debug("no socket for an origin connection: \(error)")
                    f.connectFailedLocally = true
                    return nil
                }
                worker.metrics.upstreamError("connect")
                worker.logger.debug("connect to \(state.address) failed: \(error)")
                selector.report(state, pool: pool, outcome: .failed, now: now)
                avoid.append(i)
            }
        }
        return nil
    }

    func release(_ transport: any OriginTransport, reusable: Bool) {
        // SAFETY: every transport this connector hands out is an UpstreamConnection.
        let u = unsafeDowncast(transport as AnyObject, to: UpstreamConnection.self)
        u.owner = nil
        worker.upstreams.end(u.endpoint)
        if reusable && !u.closed && !u.peerClosed && !u.sawHangup && !worker.draining && !u.endpoint.isRetired {
            if u.privateTo != 0 { worker.returnPrivateIdleUpstream(u) } else { worker.returnIdleUpstream(u) }
        } else {
            u.close()
        }
    }

    func report(_ transport: any OriginTransport, _ outcome: OriginOutcome) {
        // SAFETY: as in release.
        let u = unsafeDowncast(transport as AnyObject, to: UpstreamConnection.self)
        let now = worker.loop.now / 1_000_000
        switch outcome {
        case .connectFailed:
            worker.metrics.upstreamError("connect")
            worker.upstreams.report(u.endpoint, pool: u.pool, outcome: .failed, now: now)
        case .failedBeforeResponse:
            // A reused keep-alive connection that died is the keep-alive race, not evidence against the origin.
            if !u.reused { worker.upstreams.report(u.endpoint, pool: u.pool, outcome: .failed, now: now) }
        case .responded:
            worker.upstreams.report(u.endpoint, pool: u.pool, outcome: .responded, now: now)
        }
    }
}
