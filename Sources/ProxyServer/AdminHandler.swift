/// What the admin listener (AdminServer) asks of the process: the server implements it; the admin server knows
/// nothing else of it. Called on the control thread.
protocol AdminHandler: AnyObject {
    /// `GET /metrics`: the Prometheus text exposition.
    func metricsText() -> [UInt8]
    /// `GET /upstreams`: every pool, server and address with its state.
    func upstreamsJSON() -> [UInt8]
    /// `GET /keys`: the ticket key ring.
    func keysJSON() -> [UInt8]
    /// Test hook (``TicketKeyMaterialTestHook``): the ring's key material; nil when the hook is off.
    func keyMaterialJSON() -> [UInt8]?
    /// `GET /certificates`: the certificates and their OCSP staples.
    func certificatesJSON() -> [UInt8]
    /// `GET /detector`: the renewal-intolerance detector's fingerprints, evidence and flags.
    func detectorJSON() -> [UInt8]
    /// `POST /keys/rotate`.
    func rotateKeys() -> (ok: Bool, message: String)
    /// `POST /reload`.
    func reload() -> (ok: Bool, message: String)
}

extension EdgeProxyServer: AdminHandler {
    func metricsText() -> [UInt8] {
        var buf: [UInt8] = []
        registry.emit(into: &buf)
        buf = MetricHelp.annotate(buf)
        latency.emit(into: &buf)
        return buf
    }

    /// `GET /upstreams`: every pool, server and address with its state (ProxyUpstreams.UpstreamsReport).
    func upstreamsJSON() -> [UInt8] { Array(upstreamRuntime.reportJSON().utf8) }

    func keysJSON() -> [UInt8] { tickets.keysJSON(tickets: config.tickets) }

    func keyMaterialJSON() -> [UInt8]? { tickets.keyMaterialJSON() }

    func certificatesJSON() -> [UInt8] { ocsp.certificatesJSON() }

    func rotateKeys() -> (ok: Bool, message: String) {
        let r = tickets.rotate()
        if r.ok { for w in workers { w.messenger.send {} } }
        return r
    }
}
