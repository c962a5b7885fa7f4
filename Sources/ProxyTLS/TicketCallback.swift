internal import COpenSSL
import ProxyCore
import ProxyTickets

/// `SSL_CTX_set_tlsext_ticket_key_evp_cb`, a trampoline: seals tickets under the ring's current key, looks up the
/// key of a presented ticket, and applies `TicketDecision.decide` (ProxyTickets, the whole table and its tests).
///
/// No lock and no allocation: the ring is the worker's own snapshot; names compare as two UInt64s.
let ticketKeyCallback:
    @convention(c) (
        OpaquePointer?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt8>?, OpaquePointer?,
        OpaquePointer?, Int32
    ) -> Int32 = { ssl, keyName, iv, cipherCtx, macCtx, enc in
        guard let state = connectionState(ssl), let ring = state.worker.ring, let keyName, let iv, let cipherCtx,
            let macCtx
        else { return 0 }
        let now = Timestamp.wallClockNow()
        if enc == 1 {
            guard state.ticketsEnabled else { return 0 }
            let key = ring.encryptionKey(at: now)
            key.writeName(to: keyName)
            guard TicketCrypto.initEncrypt(key: key, iv: iv, cipherCtx: cipherCtx, macCtx: macCtx) else { return -1 }
            if !state.hasKeyName {
                state.keyNameHi = key.nameHigh
                state.keyNameLo = key.nameLow
                state.hasKeyName = true
            }
            state.worker.delegate.ticketIssued()
            return 1
        }
        guard state.ticketsEnabled else { return 0 }
        let words = TicketKey.nameWords(UnsafeRawBufferPointer(start: keyName, count: 16))
        let presented: PresentedTicketKey
        let found = ring.lookup(nameHigh: words.high, nameLow: words.low, at: now)
        if let (key, keyState) = found {
            state.keyNameHi = key.nameHigh
            state.keyNameLo = key.nameLow
            state.hasKeyName = true
            switch keyState {
            case .next: presented = .next
            case .current: presented = .current
            case .stale: presented = .stale
            case .expired: presented = .expired
            }
        } else {
            presented = ring.isExpired(nameHigh: words.high, nameLow: words.low, at: now) ? .expired : .unknown
        }
        state.presentedKey = presented
        let d = TicketDecision.decide(
            key: presented,
            stale: state.staleAction,
            tls13: SSL_version(ssl) == TLS1_3_VERSION,
            tickets: state.tls13Tickets
        )
        state.ticketOutcome = d.outcome
        state.ticketCallback = d.callback
        if d.decrypts, let (key, _) = found {
            guard TicketCrypto.initDecrypt(key: key, iv: iv, cipherCtx: cipherCtx, macCtx: macCtx) else { return -1 }
        }
        return d.callback.rawValue
    }
