import Glibc
import ProxyCore
import ProxyEventLoop
import ProxyForwarder

/// What the origin connector needs to know of the client connection: its identity for private origin connections
/// and the PROXY protocol header naming it (`proxy_protocol` pools).
extension ClientConnection: OriginClient {
    var originClientID: UInt64 { serial }

    /// Source: the client (the socket's peer, or what an inbound PROXY header named). Destination: the address
    /// the client connected to (this socket's local address; behind an inbound PROXY header, the balancer's
    /// connection to us, as HAProxy also reports it). v2 adds SNI, ALPN, TLS version and cipher, and the JA4.
    func proxyProtocolHeader(_ version: ProxyProtocol.Version, tlvs: ProxyProtocol.TLVSet) -> [UInt8] {
        hasPrivateOrigins = true
        func source(_ a: SocketAddress?) -> ProxyProtocol.Source? {
            guard let a, a.family == AF_INET || a.family == AF_INET6 else { return nil }
            return ProxyProtocol.Source(address: a.addressBytes, port: UInt16(truncatingIfNeeded: a.port))
        }
        var details: ProxyProtocol.TLSDetails?
        if version == .v2, !tlvs.isEmpty, let tls {
            details = ProxyProtocol.TLSDetails(
                sni: tls.serverName ?? "",
                alpn: tls.alpn ?? "",
                version: tls.versionName.description,
                cipher: tls.cipherName.map { String(cString: $0) } ?? "",
                ja4: tlsState.ja4 ?? ""
            )
        }
        return ProxyProtocol.header(
            version,
            source: source(peer),
            destination: source(Socket.localAddress(fd)),
            tls: details,
            tlvs: tlvs
        )
    }
}
