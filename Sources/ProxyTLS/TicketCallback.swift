internal import COpenSSL
import ProxyCore
import ProxyTickets

/// `SSL_CTX_set_tlsext_ticket_key_evp_cb`: seals tickets under the ring's current key and decides, per
/// connection, what a presented ticket leads to (see the table in TLS-NOTES.md):
///
/// | key state | TLS 1.2 | TLS 1.3 |
/// |---|---|---|
/// | unknown / expired | 0: full handshake + fresh ticket | same |
/// | current (or next) | 1: resume, no new ticket | 2: resume + 1 ticket (1 when tls13 tickets = 0) |
/// | stale, renew-inline | 2: resume + NewSessionTicket before CCS | 2 |
/// | stale, full-handshake | 0 | 0 |
/// | stale, resume-without-renewal | 1 | 1 |
///
/// No lock and no allocation: the ring is the worker's own snapshot; names compare as two UInt64s.
let ticketKeyCallback:
    @convention(c) (
        OpaquePointer?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt8>?, OpaquePointer?,
        OpaquePointer?, Int32
    ) -> Int32 = { ssl, keyName, iv, cipherCtx, macCtx, enc in
        guard let state = connectionState(ssl), let ring = state.worker.ring, let keyName, let iv, let cipherCtx,
            let macCtx
        else { return enc == 1 ? 0 : 0 }
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
            state.worker.observer.ticketIssued()
            return 1
        }
        guard state.ticketsEnabled else { return 0 }
        let words = TicketKey.nameWords(UnsafeRawBufferPointer(start: keyName, count: 16))
        guard let (key, keyState) = ring.lookup(nameHigh: words.high, nameLow: words.low, at: now) else {
            state.ticketOutcome =
                ring.isExpired(nameHigh: words.high, nameLow: words.low, at: now) ? .expiredKey : .unknownKey
            return 0
        }
        state.keyNameHi = key.nameHigh
        state.keyNameLo = key.nameLow
        state.hasKeyName = true
        let tls13 = SSL_version(ssl) == TLS1_3_VERSION
        switch keyState {
        case .expired:
            state.ticketOutcome = .expiredKey
            return 0
        case .current, .next:
            guard TicketCrypto.initDecrypt(key: key, iv: iv, cipherCtx: cipherCtx, macCtx: macCtx) else { return -1 }
            state.ticketOutcome = .resumed
            // OpenSSL 3.0 sends no TLS 1.3 ticket at all on a resumption unless the callback returns 2.
            return tls13 && state.tls13Tickets > 0 ? 2 : 1
        case .stale:
            switch state.staleAction {
            case .fullHandshake:
                state.ticketOutcome = .staleForcedFull
                return 0
            case .resumeWithoutRenewal:
                guard TicketCrypto.initDecrypt(key: key, iv: iv, cipherCtx: cipherCtx, macCtx: macCtx) else {
                    return -1
                }
                state.ticketOutcome = .staleResumedNoRenewal
                return 1
            case .renewInline:
                guard TicketCrypto.initDecrypt(key: key, iv: iv, cipherCtx: cipherCtx, macCtx: macCtx) else {
                    return -1
                }
                state.ticketOutcome = .resumedRenewedInline
                return tls13 && state.tls13Tickets == 0 ? 1 : 2
            }
        }
    }
