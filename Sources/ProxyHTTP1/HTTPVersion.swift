/// The HTTP/1 versions this module accepts. Anything else on a request is 505 (well-formed) or 400.
public enum HTTPVersion: Sendable, Equatable {
    /// HTTP/1.0: connections close after each exchange unless `Connection: keep-alive`.
    case http1_0
    /// HTTP/1.1: persistent connections, Host required.
    case http1_1
}
