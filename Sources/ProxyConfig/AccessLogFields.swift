/// One field of an access log line (`[access_log] fields`); the raw value is the JSON key written.
public enum AccessLogField: String, Sendable, CaseIterable {
    case time, client, sni, tls, cipher, resumed, ticket
    case ticketKey = "ticket_key"
    case ja3, ja4, policy
    case policyMode = "policy_mode"
    case policyObserved = "policy_observed"
    case tag, `protocol`, method, path
    /// The request's Host (HTTP/1) or :authority (HTTP/2).
    case host
    case userAgent = "user_agent"
    case referer
    case status
    /// Request and response body bytes (after de-chunking).
    case bytesIn = "bytes_in"
    case bytesOut = "bytes_out"
    /// The configured origin that served the request ("builtin" for the built-in page).
    case upstream
    /// The origin socket address the response came from, and the status the origin sent (null when none answered).
    case upstreamAddr = "upstream_addr"
    case upstreamStatus = "upstream_status"
    /// From the request head to the end of the response, in milliseconds.
    case durationMs = "duration_ms"
}

/// The fields of an access log line, in the order written.
public struct AccessLogFields: Sendable, Hashable {
    public var fields: [AccessLogField]

    public init(_ fields: [AccessLogField]) { self.fields = fields }

    /// What every line carried before fields were configurable (and still the default).
    public static let `default` = AccessLogFields([
        .time, .client, .sni, .tls, .cipher, .resumed, .ticket, .ticketKey, .ja3, .ja4, .policy, .policyMode,
        .policyObserved, .tag, .protocol, .method, .path, .status, .bytesIn, .bytesOut, .upstream, .durationMs,
    ])
}

extension TableReader {
    /// `[access_log] fields`: a non-empty list of known field names without repeats; errors at the element.
    mutating func accessLogFields(_ key: String) -> AccessLogFields? {
        let decoder = self.decoder
        var seen: Set<AccessLogField> = []
        guard
            let list = array(
                key,
                { item, itemPath -> AccessLogField? in
                    guard let s = item.string else {
                        decoder.report(itemPath, "\(itemPath): expected a string, found \(item.type.article)")
                        return nil
                    }
                    guard let f = AccessLogField(rawValue: s) else {
                        let known = AccessLogField.allCases.map(\.rawValue).joined(separator: ", ")
                        decoder.report(itemPath, "\(itemPath): unknown access log field \"\(s)\" (known: \(known))")
                        return nil
                    }
                    guard seen.insert(f).inserted else {
                        decoder.report(itemPath, "\(itemPath): field \"\(s)\" is listed twice")
                        return nil
                    }
                    return f
                }
            )
        else { return nil }
        if list.isEmpty {
            report(key, "list at least one field (or set path = \"off\")")
            return nil
        }
        return AccessLogFields(list)
    }
}
