import Glibc
import ProxyCore
import ProxyDetector
import ProxyEventLoop
import ProxyFingerprint
import ProxyPolicy
import ProxyTLS

/// The server's per-connection TLS facts: ProxyTLS's plumbing state plus what the classifier learned from the
/// ClientHello (fingerprints, the policy that matched). One object per connection, as before the split.
final class ServerTLSState: TLSConnectionState {
    /// The client's address (the detector counts prefixes and fallbacks per address): the socket's peer, or the
    /// address a PROXY protocol header named.
    var peer: SocketAddress
    var helloParsed = false
    /// The policy that matched (enforced or observed), its mode and tag.
    var policyName: String?
    var policyEnforced = false
    /// An observe-mode policy that matched (counted and logged; it changes nothing).
    var observedPolicyName: String?
    var tag: String?
    /// The detector's view of the hello (nil labels: not observed: detector off, or the hello did not parse).
    var detectorKey: UInt64 = 0
    var detectorLabels: FingerprintLabels?
    var highestVersion: UInt16 = 0
    var fallbackSCSV = false
    /// The detector's quarantine set the fingerprint (stale tickets get a full handshake).
    var quarantined = false

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

/// Everything the classifier concludes from one ClientHello, before it is applied to a connection: a function of the
/// hello's shape, the policy set and the detector's mode, so it is cached per shape (`ShapeCache`).
struct HelloVerdict {
    var answer = TLSHelloAnswer()
    /// The policy that matched (enforced, or observed when none is enforced), as `ServerTLSState` reports it.
    var policyName: String?
    var policyEnforced = false
    var observedPolicyName: String?
    var tag: String?
    /// The detector's key and labels (nil: the detector was off).
    var detector: (key: UInt64, labels: FingerprintLabels)?
    var highestVersion: UInt16 = 0
    var fallbackSCSV = false
}

/// The worker's `TLSHandshakeDelegate`: parses and fingerprints each ClientHello, applies the policy set, and
/// turns handshake events into metrics. ProxyTLS only carries bytes in and answers out. Loop thread only.
final class HandshakeClassifier: TLSHandshakeDelegate {
    /// The compiled policy set this worker uses now (nil: no policies loaded); replaced on snapshot pick-up.
    /// A new set (another generation: a reload that loaded policies) makes every cached verdict out of date; a
    /// snapshot that only carried other news (a key rotation) keeps them.
    var policies: CompiledPolicySet? {
        didSet { if policies?.generation != oldValue?.generation { verdicts.removeAll() } }
    }
    /// The detector's mode and quarantine set (replaced on snapshot pick-up). Verdicts hold labels only while the
    /// detector is on, so a mode change forgets them; the quarantine set is read per handshake, never cached.
    var detector = DetectorPublished(mode: .observe, quarantined: []) {
        didSet { if (detector.mode == .off) != (oldValue.mode == .off) { verdicts.removeAll() } }
    }
    private unowned(unsafe) let metrics: WorkerMetrics
    private let observations: ObservationQueue
    /// ja4InputsHash → (detector key, labels): ja4 and JA3 are computed once per fingerprint, not per handshake.
    private var labelCache = FingerprintLabelCache()
    /// Verdicts by ClientHello shape: a client seen before is answered without parsing its hello again.
    let verdicts = ShapeCache<HelloVerdict>()

    /// - Parameter metrics: must outlive this classifier (the worker owns both).
    init(metrics: WorkerMetrics, observations: ObservationQueue) {
        self.metrics = metrics
        self.observations = observations
    }

    func clientHello(_ connection: TLSConnectionState) -> TLSHelloAnswer {
        // SAFETY: every connection state is created by ClientConnection as a ServerTLSState.
        let state = unsafeDowncast(connection, to: ServerTLSState.self)
        guard !state.helloBytes.isEmpty else {
            // No captured bytes (e.g. an SSLv2-format hello): nothing to fingerprint; defaults apply.
            metrics.clientHelloRejected.increment()
            return TLSHelloAnswer()
        }
        let probe = state.helloBytes.withUnsafeBytes { verdicts.probe(handshake: $0) }
        if let probe, let v = verdicts.value(for: probe) {
            // Same shape, same parse outcome (it parsed) and the same answers (ClientHelloShape).
            metrics.helloVerdictHits.increment()
            state.helloParsed = true
            return apply(v, to: state)
        }
        metrics.helloVerdictMisses.increment()
        let parsed: ClientHello
        do {
            parsed = try ClientHello.parse(handshake: state.helloBytes)
        } catch {
            metrics.clientHelloRejected.increment()
            return .reject
        }
        state.helloParsed = true
        let v = verdict(parsed)
        if let probe { verdicts.insert(v, for: probe) }
        return apply(v, to: state)
    }

    /// What the policy set and the detector make of `parsed`.
    private func verdict(_ parsed: ClientHello) -> HelloVerdict {
        var v = HelloVerdict()
        if let set = policies, !set.policies.isEmpty {
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
                v.policyName = p.name
                v.policyEnforced = true
                v.tag = p.actions.tag
            }
            if d.mode == .observe, let name = d.matchedName {
                v.observedPolicyName = name
                if d.enforcedIndex == nil { v.policyName = name }
            }
            v.answer = Self.answer(d.effective)
        }
        if detector.mode != .off {
            let h = parsed.ja4InputsHash
            if let hit = labelCache.find(h) {
                v.detector = hit
            } else {
                v.detector = labelCache.insert(
                    h,
                    FingerprintLabels(ja4: parsed.ja4Fingerprint, ja3Hash: parsed.ja3.md5, tag: v.tag)
                )
            }
            v.highestVersion = parsed.highestOfferedVersion
            v.fallbackSCSV = parsed.offersFallbackSCSV
        }
        return v
    }

    /// Applies a verdict to one connection: its state, the policy counters, the detector's quarantine.
    private func apply(_ v: HelloVerdict, to state: ServerTLSState) -> TLSHelloAnswer {
        var answer = v.answer
        state.policyName = v.policyName
        state.policyEnforced = v.policyEnforced
        state.observedPolicyName = v.observedPolicyName
        state.tag = v.tag
        if v.policyEnforced, let name = v.policyName { metrics.policyApplied(name: name, enforced: true) }
        if let name = v.observedPolicyName { metrics.policyApplied(name: name, enforced: false) }
        if detector.mode != .off, let d = v.detector {
            state.detectorKey = d.key
            state.detectorLabels = d.labels
            state.highestVersion = v.highestVersion
            state.fallbackSCSV = v.fallbackSCSV
            // Quarantine: as if a policy said `stale_ticket = "full-handshake"`; an enforced policy's choice wins.
            let policyDecidesStale = v.policyEnforced && answer.staleTicket != nil
            if !detector.quarantined.isEmpty, detector.quarantined.contains(d.key), !policyDecidesStale {
                answer.staleTicket = .fullHandshake
                state.quarantined = true
            }
        }
        return answer
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

    func handshakeCompleted(_ connection: TLSConnectionState, version: Int32, outcome: TicketOutcome) {
        observe(connection, .completed)
    }

    func handshakeFailed(_ connection: TLSConnectionState, version: Int32, failure: TLSHandshakeFailure) {
        observe(connection, failure == .peerClosed ? .aborted : .failed)
    }

    /// One observation to the control thread (a ring push: no lock, no allocation).
    private func observe(_ connection: TLSConnectionState, _ result: HandshakeObservation.Result) {
        let state = unsafeDowncast(connection, to: ServerTLSState.self)
        guard let labels = state.detectorLabels else { return }
        observations.push(
            HandshakeObservation(
                key: state.detectorKey,
                labels: labels,
                // A ticket inside the abbreviated TLS 1.2 handshake, or on a TLS 1.3 resumption.
                kind: state.ticketCallback == .resumeAndRenew ? .renewal : .baseline,
                result: result,
                address: Self.clientAddress(state.peer),
                highestVersion: state.highestVersion,
                fallbackSCSV: state.fallbackSCSV,
                time: monotonicNanos()
            )
        )
    }

    static func clientAddress(_ a: SocketAddress) -> ClientAddress {
        var s = a.storage
        return withUnsafeBytes(of: &s) { raw -> ClientAddress in
            let family = raw.load(as: sa_family_t.self)
            if Int32(family) == AF_INET {
                // sockaddr_in: family(2) port(2) addr(4), network byte order.
                return .v4(UInt32(raw[4]) << 24 | UInt32(raw[5]) << 16 | UInt32(raw[6]) << 8 | UInt32(raw[7]))
            }
            if Int32(family) == AF_INET6 {
                // sockaddr_in6: family(2) port(2) flowinfo(4) addr(16).
                var hi: UInt64 = 0
                var lo: UInt64 = 0
                for i in 8..<16 { hi = hi << 8 | UInt64(raw[i]) }
                for i in 16..<24 { lo = lo << 8 | UInt64(raw[i]) }
                return ClientAddress(high: hi, low: lo, isV4: false)
            }
            return ClientAddress(high: 0, low: 0, isV4: false)
        }
    }
}
