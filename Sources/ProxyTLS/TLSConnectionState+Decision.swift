internal import COpenSSL
import CProxyShims
import ProxyCore
import ProxyFingerprint
import ProxyPolicy

extension TLSConnectionState {
    /// Parses the captured ClientHello, fingerprints it and applies the worker's policy set. Runs once per
    /// connection inside the ClientHello callback, i.e. before the ticket callback reads the decision.
    /// Returns false when the hello cannot be parsed (counted; the handshake then fails with decode_error).
    func decideFromClientHello(ssl: OpaquePointer) -> Bool {
        guard helloCaptured else {
            // No captured bytes (e.g. an SSLv2-format hello): nothing to fingerprint; defaults apply.
            worker.observer.clientHelloRejected(reason: "no ClientHello captured")
            return true
        }
        let parsed: ClientHello
        do {
            parsed = try ClientHello.parse(handshake: helloBytes)
        } catch {
            worker.observer.clientHelloRejected(reason: error.description)
            helloBytes = []
            return false
        }
        helloParsed = true
        if let set = worker.policies, !set.policies.isEmpty {
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
                policyName = p.name
                policyEnforced = true
                tag = p.actions.tag
                worker.observer.policyApplied(name: p.name, enforced: true)
            }
            if d.mode == .observe, let name = d.matchedName {
                observedPolicyName = name
                worker.observer.policyApplied(name: name, enforced: false)
                if d.enforcedIndex == nil {
                    policyName = name
                    policyEnforced = false
                }
            }
            apply(d.effective, ssl: ssl)
        }
        return true
    }

    private func apply(_ a: PolicyActions, ssl: OpaquePointer) {
        if let s = a.staleTicket { staleAction = s }
        if let t = a.tls13Tickets {
            tls13Tickets = t
            SSL_set_num_tickets(ssl, t)
        }
        // Without a cache there is nothing to switch on; the callbacks are not even installed.
        if let on = a.sessionCacheEnabled, contextSet.settings.sessionCache != nil { sessionCacheEnabled = on }
        if let on = a.ticketsEnabled, !on {
            ticketsEnabled = false
            SSL_set_options(ssl, cps_SSL_OP_NO_TICKET())
            SSL_set_num_tickets(ssl, 0)
        }
    }
}
