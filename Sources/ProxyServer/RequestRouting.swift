import Glibc
import ProxyEventLoop
import ProxyHTTP1
import ProxyUpstreams

/// Where one request goes, decided once at request start for HTTP/1 and HTTP/2 alike.
enum RequestRoute {
    /// Forward through this pool (index in the worker's upstream snapshot), balancing with this hash key;
    /// `websocket`: the route lets upgrades through (Route.websocket).
    case pool(Int, hashKey: UInt64, websocket: Bool)
    /// Answer locally with this status (421, 404; see ProxyUpstreams.Router).
    case reject(Int)
}

extension Worker {
    /// Routes one request with the worker's current routes (ProxyUpstreams.Router) and computes the hash key when
    /// the chosen pool hashes (`balance = "hash"`): the `hash_key` header's value if present, else the client IP.
    /// - Parameters:
    ///   - sni: the TLS server name (`SSL_get_servername`), nil when the client sent none.
    ///   - host: Host / `:authority` / the absolute-form authority, as received.
    ///   - target: the origin-form target (path and query).
    func route(
        sni: UnsafePointer<CChar>?,
        host: ArraySlice<UInt8>?,
        target: ArraySlice<UInt8>,
        headers: HTTPHeaders,
        peer: SocketAddress
    ) -> RequestRoute {
        let sniBytes = sni.map { UnsafeRawBufferPointer(start: $0, count: strlen($0)) }
        let match = target.withUnsafeBytes { path in
            if let host {
                return host.withUnsafeBytes { upstreams.resolve(sni: sniBytes, host: $0, path: path) }
            }
            return upstreams.resolve(sni: sniBytes, host: nil, path: path)
        }
        let websocket = match.websocket
        switch match.decision {
        case .reject(let status):
            return .reject(Int(status))
        case .pool(let i):
            let pool = upstreams.snapshot.pools[i]
            guard pool.balance == .hash else { return .pool(i, hashKey: 0, websocket: websocket) }
            let client = peer.hostBytes
            let header = pool.hashHeader.flatMap { headers.firstIndex(of: $0) }.map { headers.value(at: $0) }
            let key = client.withUnsafeBytes { c in
                guard let header else { return UpstreamSelector.hashKey(client: c, header: nil) }
                return header.withUnsafeBytes { UpstreamSelector.hashKey(client: c, header: $0) }
            }
            return .pool(i, hashKey: key, websocket: websocket)
        }
    }
}
