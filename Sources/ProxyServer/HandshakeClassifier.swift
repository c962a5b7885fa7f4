import ProxyCore
import ProxyEventLoop
import ProxyFingerprint
import ProxyPolicy
import ProxyTLS

/// The server's per-connection TLS facts: ProxyTLS's plumbing state plus what the classifier learned from the
/// ClientHello (fingerprints, the policy that matched). One object per connection, as before the split.
final class ServerTLSState: TLSConnectionState {
    /// The client's address (the detector counts prefixes and fallbacks per address).
    let peer: SocketAddress
    var helloParsed = false
    /// The policy that matched (enforced or observed), its mode and tag.
    var policyName: String?
    var policyEnforced = false
    /// An observe-mode policy that matched (counted and logged; it changes nothing).
    var observedPolicyName: String?
    var tag: String?
    init(worker: TLSWorkerContext, contextSet: TLSContextSet, peer: SocketAddress) {
        self.peer = peer
        super.init(worker: worker, contextSet: contextSet)
    }

    /// The ClientHello, parsed again from the captured bytes (nil when none was captured or it did not parse).
    /// Not cached: call it rarely.
    var hello: ClientHello? {
        guard helloParsed else { return nil }
        return try? ClientHello.parse(handshake: helloBytes)
    }
    // JA3/JA4 are computed on first use (policy needing them, access log, page, origin headers) and cached:
    // the handshake itself only needs the feature set, and hashing is most of the fingerprinting cost.
    private var cachedJA3: JA3?
    private var cachedJA4: String?
    var ja3String: String? { ja3Value?.string }
    var ja3Hash: String? { ja3Value?.md5 }
    var ja4: String? {
        if cachedJA4 == nil { computeFingerprints(from: nil) }
        return cachedJA4
    }
    private var ja3Value: JA3? {
        if cachedJA3 == nil { computeFingerprints(from: nil) }
        return cachedJA3
    }

    /// Fills both caches from `parsed` (or a fresh parse of the captured bytes).
    func computeFingerprints(from parsed: ClientHello?) {
        guard let h = parsed ?? hello else { return }
        if cachedJA3 == nil { cachedJA3 = h.ja3 }
        if cachedJA4 == nil { cachedJA4 = h.ja4Fingerprint }
    }
}

/// The worker's `TLSHandshakeDelegate`: parses and fingerprints each ClientHello, applies the policy set, and
/// turns handshake events into metrics. ProxyTLS only carries bytes in and answers out. Loop thread only.
final class HandshakeClassifier: TLSHandshakeDelegate {
    /// The compiled policy set this worker uses now (nil: no policies loaded); replaced on snapshot pick-up.
    var policies: CompiledPolicySet?
    private unowned(unsafe) let metrics: WorkerMetrics

    /// - Parameter metrics: must outlive this classifier (the worker owns both).
    init(metrics: WorkerMetrics) {
        self.metrics = metrics
    }

    func clientHello(_ connection: TLSConnectionState) -> TLSHelloAnswer {
        // SAFETY: every connection state is created by ClientConnection as a ServerTLSState.
        let state = unsafeDowncast(connection, to: ServerTLSState.self)
        guard !state.helloBytes.isEmpty else {
            // No captured bytes (e.g. an SSLv2-format hello): nothing to fingerprint; defaults apply.
            metrics.clientHelloRejected.increment()
            return TLSHelloAnswer()
        }
        let parsed: ClientHello
        do {
            parsed = try ClientHello.parse(handshake: state.helloBytes)
        } catch {
            metrics.clientHelloRejected.increment()
            return .reject
        }
        state.helloParsed = true
        guard let set = policies, !set.policies.isEmpty else { return TLSHelloAnswer() }
        let input = PolicyInput(
            features: parsed.features,
            ja3: set.needsJA3 ? JA3Digest(hex: parsed.ja3.md5) : nil,
            ja4: set.needsJA4 ? parsed.ja4Fingerprint : nil
        )
        let d = set.decide(input)
        // What operators and origins see is the policy that is *enforced*; an observe policy that matched
        // (above it, or alone) is reported separately and changes nothing.
        if let e = d.enforcedIndex {
            let p = set.policies[e]
            state.policyName = p.name
            state.policyEnforced = true
            state.tag = p.actions.tag
            metrics.policyApplied(name: p.name, enforced: true)
        }
        if d.mode == .observe, let name = d.matchedName {
            state.observedPolicyName = name
            metrics.policyApplied(name: name, enforced: false)
            if d.enforcedIndex == nil {
                state.policyName = name
                state.policyEnforced = false
            }
        }
        return Self.answer(d.effective)
    }

    /// A policy's TLS actions as ProxyTLS's answer (nil fields keep the listener's defaults).
    static func answer(_ a: PolicyActions) -> TLSHelloAnswer {
        var r = TLSHelloAnswer()
        r.staleTicket = a.staleTicket
        r.tls13Tickets = a.tls13Tickets
        r.sessionCacheEnabled = a.sessionCacheEnabled
        r.ticketsEnabled = a.ticketsEnabled
        return r
    }

    func ticketIssued() { metrics.ticketsIssued.increment() }

    func handshakeCompleted(_ connection: TLSConnectionState, version: Int32, outcome: TicketOutcome) {}

    func handshakeFailed(_ connection: TLSConnectionState, version: Int32, failure: TLSHandshakeFailure) {}
}
