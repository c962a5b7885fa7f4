/// A fixed set of field names, matched case-insensitively: the inbound fields the proxy strips (spoofable
/// fingerprint or identity headers). Build it once from configuration; lookups do not allocate.
public struct HeaderNameList: Sendable, Equatable {
    private var bytes: [UInt8] = []
    private var ranges: [Range<Int>] = []

    /// The empty list.
    public init() {}

    /// A list of the given names (ASCII, any case; stored lowercased).
    public init(_ names: [[UInt8]]) {
        for name in names { insert(name) }
    }

    /// A list from ASCII strings, for configuration code (not for the request path).
    public init(_ names: [String]) {
        self.init(names.map { Array($0.utf8) })
    }

    /// Adds one name.
    public mutating func insert(_ name: [UInt8]) {
        let start = bytes.count
        for b in name { bytes.append(ASCII.lower(b)) }
        ranges.append(start..<bytes.count)
    }

    /// Number of names.
    public var count: Int { ranges.count }

    /// Whether `count` bytes at `p` equal one of the names, ignoring case.
    func contains(_ p: UnsafePointer<UInt8>, _ count: Int) -> Bool {
        if ranges.isEmpty { return false }
        return bytes.withUnsafeBufferPointer { buf in
            for r in ranges where r.count == count {
                if ASCII.equalsIgnoringCase(p, count, buf.baseAddress! + r.lowerBound, count) { return true }
            }
            return false
        }
    }

    /// Whether `name` (ASCII, any case) is in the list.
    public func contains(_ name: [UInt8]) -> Bool {
        name.withUnsafeBufferPointer { $0.isEmpty ? false : contains($0.baseAddress!, $0.count) }
    }
}
