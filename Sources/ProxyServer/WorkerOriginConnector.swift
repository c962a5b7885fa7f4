import Glibc
import ProxyEventLoop
import ProxyForwarder

/// The worker's `OriginConnector`: chooses a server for each attempt, reuses idle keep-alive connections (checked
/// alive first), or starts a non-blocking connect. Loop thread only.
///
/// Pool selection goes here: today one flat pool (`RuntimeSnapshot.origins`, round-robin); named pools, routes,
/// load balancing and health replace `pickServer`.
final class WorkerOriginConnector: OriginConnector {
    unowned let worker: Worker

    init(worker: Worker) { self.worker = worker }

    var maxAttempts: Int { max(2, worker.snapshot.origins.count * 2) }

    func acquire(for f: OriginForwarder) -> (any OriginTransport)? {
        let origins = worker.snapshot.origins
        let n = origins.count
        guard n > 0 else { return nil }
        if f.attempts > 0 { worker.metrics.upstreamRetries.increment() }
        for _ in 0..<n {
            let oi = worker.roundRobin % n
            worker.roundRobin &+= 1
            if f.needsOtherServer && f.triedServers.contains(oi) { continue }
            while let pooled = worker.takeIdleUpstream(origin: oi) {
                if pooled.isAliveForReuse() {
                    worker.loop.cancelTimer(pooled)  // no idle timeout while in use
                    return pooled
                }
                // The origin closed it while it was idle: never send a request into a dead connection.
                worker.metrics.upstreamStaleClosed.increment()
                pooled.close()
            }
            for addr in origins[oi].addresses {
                do {
                    return try UpstreamConnection.connect(worker: worker, origin: oi, address: addr)
                } catch {
                    worker.metrics.upstreamError("connect")
                    worker.logger.debug("connect to \(addr) failed: \(error)")
                }
            }
        }
        return nil
    }

    func release(_ transport: any OriginTransport, reusable: Bool) {
        // SAFETY: every transport this connector hands out is an UpstreamConnection.
        let u = unsafeDowncast(transport as AnyObject, to: UpstreamConnection.self)
        u.owner = nil
        if reusable && !u.closed && !u.peerClosed && !worker.draining {
            worker.returnIdleUpstream(u)
        } else {
            u.close()
        }
    }

    func report(_ transport: any OriginTransport, _ outcome: OriginOutcome) {
        switch outcome {
        case .connectFailed:
            worker.metrics.upstreamError("connect")
        case .failedBeforeResponse, .responded:
            break
        }
    }
}
