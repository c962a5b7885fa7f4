import ProxyHTTP1

/// A request head received on one stream: the pseudo-header fields and the regular fields, validated by
/// nghttp2's HTTP messaging rules (RFC 9113 §8: lowercase names, no connection-specific fields, required and
/// non-repeated pseudo-fields, `content-length` consistent with DATA). Reused between streams (capacity kept).
public struct H2RequestHead: Sendable {
    /// `:method`, `:scheme`, `:authority`, `:path` values back to back.
    var pseudo: [UInt8] = []
    var methodRange = 0..<0
    var schemeRange = 0..<0
    var authorityRange = 0..<0
    var pathRange = 0..<0
    var protocolRange = 0..<0
    /// `:method` classified once when it arrives (the checks below run several times per request).
    public internal(set) var methodKind = HTTPMethod.other
    /// Regular fields in arrival order, names lowercase.
    public internal(set) var headers: HTTPHeaders
    /// The `content-length` value, when present.
    public internal(set) var contentLength: Int?
    /// The RFC 9113 §6.5.2 size of the list so far.
    var listSize = 0

    public init() {
        headers = HTTPHeaders(reservingBytes: 1024)
    }

    /// An empty head that allocates nothing (a placeholder to swap with).
    init(unreserved: Void) {
        headers = HTTPHeaders()
    }

    public var method: ArraySlice<UInt8> { pseudo[methodRange] }
    public var scheme: ArraySlice<UInt8> { pseudo[schemeRange] }
    /// Empty when absent (the client may send `host` instead).
    public var authority: ArraySlice<UInt8> { pseudo[authorityRange] }
    /// Empty for CONNECT.
    public var path: ArraySlice<UInt8> { pseudo[pathRange] }
    /// `:protocol` of an extended CONNECT (RFC 8441 §4), empty otherwise.
    public var protocolName: ArraySlice<UInt8> { pseudo[protocolRange] }

    public var isHEAD: Bool { methodKind == .head }
    public var isCONNECT: Bool { methodKind == .connect }
    /// RFC 8441 extended CONNECT: CONNECT with `:protocol` (nghttp2 required `:scheme` and `:path` with it).
    public var isExtendedCONNECT: Bool { !protocolRange.isEmpty && isCONNECT }

    mutating func reset() {
        pseudo.removeAll(keepingCapacity: true)
        methodRange = 0..<0
        schemeRange = 0..<0
        authorityRange = 0..<0
        pathRange = 0..<0
        protocolRange = 0..<0
        methodKind = .other
        headers.removeAllKeepingCapacity()
        contentLength = nil
        listSize = 0
    }

    /// Value of the first field named `name` (lowercase), or nil.
    public func first(_ name: StaticString) -> ArraySlice<UInt8>? { headers.first(name) }
}
