/// The HTTP/1 versions this module accepts. Anything else on a request is 505 (well-formed) or 400.
public enum HTTPVersion: Sendable, Equatable {
    case http1_0
    case http1_1
}
