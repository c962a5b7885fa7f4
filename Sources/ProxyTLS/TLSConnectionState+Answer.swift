internal import COpenSSL
import CProxyShims
import ProxyCore

extension TLSConnectionState {
    /// Applies the delegate's answer to the ClientHello: the connection's ticket behaviour, read later by the
    /// ticket callback (which runs after the ClientHello callback). Returns false when the hello is rejected.
    final func apply(_ a: TLSHelloAnswer, ssl: OpaquePointer) -> Bool {
        if a.reject { return false }
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
        return true
    }
}
