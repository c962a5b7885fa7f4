/// Where an error came from (pingora's `ErrorSource`): the client, the origin, or ourselves.
public enum ErrorSource: String, Sendable {
    case downstream
    case upstream
    case `internal`
}

/// A small error type for the data path: a source plus a short kind, cheap to create and to count.
public struct ProxyError: Error, Sendable, CustomStringConvertible {
    public var source: ErrorSource
    public var kind: StaticString
    public var detail: String?

    public init(_ source: ErrorSource, _ kind: StaticString, _ detail: String? = nil) {
        self.source = source
        self.kind = kind
        self.detail = detail
    }

    public var description: String {
        if let detail { return "\(source.rawValue): \(kind): \(detail)" }
        return "\(source.rawValue): \(kind)"
    }
}
