import ProxyHTTP1
import ProxyTLS

/// The page served when no origin is configured: what this TLS connection looks like from the server's side
/// (version, cipher, ALPN, SNI, resumption and ticket outcome, fingerprints and policy). HTML for browsers, JSON
/// for `Accept: application/json`.
enum BuiltinPage {
    struct Rendered {
        var contentType: StaticString
        var bytes: [UInt8]
    }

    static func render(connection c: ClientConnection, head: RequestHead) -> Rendered {
        render(
            connection: c,
            method: head.methodBytes,
            path: head.target,
            accept: head.headers.first("accept"),
            protocolName: head.version == .http1_0 ? "HTTP/1.0" : "HTTP/1.1"
        )
    }

    /// The page for a request given by its parts (HTTP/2 streams have no `RequestHead`).
    static func render(
        connection c: ClientConnection,
        method: ArraySlice<UInt8>,
        path: ArraySlice<UInt8>,
        accept: ArraySlice<UInt8>?,
        protocolName: StaticString
    ) -> Rendered {
        let json = describe(c, method: method, path: path, protocolName: protocolName)
        if let accept, contains(accept, "application/json") {
            return Rendered(contentType: "application/json", bytes: json.bytes + [10])
        }
        return Rendered(contentType: "text/html; charset=utf-8", bytes: html(c, protocolName: protocolName))
    }

    static func describe(_ c: ClientConnection, head: RequestHead) -> JSONWriter {
        describe(
            c,
            method: head.methodBytes,
            path: head.target,
            protocolName: head.version == .http1_0 ? "HTTP/1.0" : "HTTP/1.1"
        )
    }

    static func describe(
        _ c: ClientConnection,
        method: ArraySlice<UInt8>,
        path: ArraySlice<UInt8>,
        protocolName: StaticString
    ) -> JSONWriter {
        var w = JSONWriter(reserving: 1024)
        let s = c.tlsState
        w.beginObject()
        w.field("client", c.peer.description)
        w.field("tls_version", c.tlsVersionName)
        w.field("cipher", c.cipherName)
        w.field("alpn", c.alpnName)
        w.field("sni", c.serverName)
        w.field(
            "resumed",
            c.outcome != .full && c.outcome != .staleForcedFull && c.outcome != .unknownKey && c.outcome != .expiredKey
        )
        w.field("ticket_outcome", c.outcome.label)
        w.field("ticket_key", s.keyName)
        w.field("ja3", s.ja3String)
        w.field("ja3_hash", s.ja3Hash)
        w.field("ja4", s.ja4)
        w.field("policy", s.policyName)
        w.field("policy_mode", s.policyName == nil ? nil : (s.policyEnforced ? "enforce" : "observe"))
        w.field("policy_observed", s.observedPolicyName)
        w.field("tag", s.tag)
        w.field("stale_ticket_action", s.staleAction.rawValue)
        w.field("protocol", static: protocolName)
        w.field("method", bytes: method)
        w.field("path", bytes: path)
        w.endObject()
        return w
    }

    private static func html(_ c: ClientConnection, protocolName: StaticString) -> [UInt8] {
        var out: [UInt8] = Array(
            """
            <!doctype html><html><head><meta charset="utf-8"><title>EdgeProxy</title>
            <style>body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}
            td{padding:.2rem .8rem;border-bottom:1px solid #ddd;font-family:monospace}</style></head><body>
            <h1>EdgeProxy</h1><p>No origin is configured, so this is what your TLS connection looks like from here.
            Send <code>Accept: application/json</code> for the same data as JSON.</p><table>

            """.utf8
        )
        let s = c.tlsState
        let rows: [(String, String)] = [
            ("Client", c.peer.description),
            ("Protocol", protocolName.description),
            ("TLS version", c.tlsVersionName),
            ("Cipher", c.cipherName ?? "-"),
            ("ALPN", c.alpnName ?? "-"),
            ("SNI", c.serverName ?? "-"),
            ("Ticket outcome", c.outcome.label),
            ("Ticket key", s.keyName ?? "-"),
            ("JA3", s.ja3Hash ?? "-"),
            ("JA4", s.ja4 ?? "-"),
            ("Policy", s.policyName.map { "\($0) (\(s.policyEnforced ? "enforce" : "observe"))" } ?? "none"),
            ("Tag", s.tag ?? "-"),
            ("Stale-ticket action", s.staleAction.rawValue),
        ]
        for (k, v) in rows {
            out += Array("<tr><td>\(escape(k))</td><td>\(escape(v))</td></tr>\n".utf8)
        }
        out += Array("</table></body></html>\n".utf8)
        return out
    }

    private static func escape(_ s: String) -> String {
        var r = ""
        for ch in s {
            switch ch {
            case "<": r += "&lt;"
            case ">": r += "&gt;"
            case "&": r += "&amp;"
            case "\"": r += "&quot;"
            default: r.append(ch)
            }
        }
        return r
    }

    private static func contains(_ hay: ArraySlice<UInt8>, _ needle: StaticString) -> Bool {
        let n = needle.utf8CodeUnitCount
        guard hay.count >= n else { return false }
        let p = needle.utf8Start
        var i = hay.startIndex
        while i + n <= hay.endIndex {
            var ok = true
            for k in 0..<n {
                var b = hay[i + k]
                if b >= 65 && b <= 90 { b += 32 }
                if b != p[k] {
                    ok = false
                    break
                }
            }
            if ok { return true }
            i += 1
        }
        return false
    }
}
