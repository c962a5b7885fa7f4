/// Request method, recognised without allocation for the registered common methods.
///
/// Deviation from a `.other(bytes)` payload: `.other` carries nothing and the exact bytes of any method are in
/// `RequestHead.methodBytes`. A payload slice would hold a second reference to the parser's head storage and force
/// a copy of it on the next request (copy-on-write), breaking "allocate per connection, not per request".
public enum HTTPMethod: Sendable, Equatable {
    /// The RFC 9110 methods plus PATCH, matched case-sensitively.
    case get, head, post, put, delete, connect, options, trace, patch
    /// A syntactically valid method token that is none of the above (method names are case-sensitive).
    case other

    /// Classifies method bytes without copying them (HTTP/2 `:method`, a forwarder's method slice).
    @inline(__always)
    public static func classify(_ bytes: UnsafeRawBufferPointer) -> HTTPMethod {
        guard let base = bytes.baseAddress else { return .other }
        return classify(base.assumingMemoryBound(to: UInt8.self), bytes.count)
    }

    /// `classify` of a slice.
    @inline(__always)
    public static func classify(_ bytes: ArraySlice<UInt8>) -> HTTPMethod {
        bytes.withUnsafeBytes { classify($0) }
    }

    /// RFC 9110 §9.2.2 idempotent methods.
    public var isIdempotent: Bool {
        switch self {
        case .get, .head, .put, .delete, .options, .trace: return true
        case .post, .connect, .patch, .other: return false
        }
    }

    /// Classifies a method token. `p` points at `count` bytes already checked to be token characters.
    @inline(__always)
    static func classify(_ p: UnsafePointer<UInt8>, _ count: Int) -> HTTPMethod {
        switch count {
        case 3:
            if p[0] == 0x47, p[1] == 0x45, p[2] == 0x54 { return .get }  // GET
            if p[0] == 0x50, p[1] == 0x55, p[2] == 0x54 { return .put }  // PUT
        case 4:
            if p[0] == 0x50, p[1] == 0x4F, p[2] == 0x53, p[3] == 0x54 { return .post }  // POST
            if p[0] == 0x48, p[1] == 0x45, p[2] == 0x41, p[3] == 0x44 { return .head }  // HEAD
        case 5:
            if matches(p, "PATCH") { return .patch }
            if matches(p, "TRACE") { return .trace }
        case 6:
            if matches(p, "DELETE") { return .delete }
        case 7:
            if matches(p, "OPTIONS") { return .options }
            if matches(p, "CONNECT") { return .connect }
        default:
            break
        }
        return .other
    }

    @inline(__always)
    private static func matches(_ p: UnsafePointer<UInt8>, _ s: StaticString) -> Bool {
        let q = s.utf8Start
        for i in 0..<s.utf8CodeUnitCount where p[i] != q[i] { return false }
        return true
    }
}
