/// One field line: offsets into `HTTPHeaders.bytes`. 16 bytes per field; values have OWS trimmed.
public struct HeaderField: Sendable, Equatable {
    @usableFromInline var nameStart: UInt32
    @usableFromInline var nameEnd: UInt32
    @usableFromInline var valueStart: UInt32
    @usableFromInline var valueEnd: UInt32

    /// Offsets of the name in `HTTPHeaders.bytes`.
    public var nameRange: Range<Int> { Int(nameStart)..<Int(nameEnd) }
    /// Offsets of the value (leading and trailing SP/HTAB removed) in `HTTPHeaders.bytes`.
    public var valueRange: Range<Int> { Int(valueStart)..<Int(valueEnd) }
}

/// A parsed header (or trailer) section stored compactly: the raw bytes of the whole head in one array plus one
/// `HeaderField` of offsets per field line, in wire order. No per-field allocation; lookups are case-insensitive
/// ASCII comparisons. Duplicate names are kept as separate entries, as received.
public struct HTTPHeaders: Sendable {
    /// The raw head bytes (for a request: request line, field lines and the final CRLF).
    public internal(set) var bytes: [UInt8]
    /// The field lines, in order.
    public internal(set) var fields: [HeaderField]

    /// An empty section that has allocated nothing.
    public init() {
        bytes = []
        fields = []
    }

    /// Clears for reuse, keeping capacity (the per-connection allocation).
    mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
        fields.removeAll(keepingCapacity: true)
    }

    /// Number of field lines.
    public var count: Int { fields.count }

    /// The name bytes of field `i`, as received (original case).
    public func name(at i: Int) -> ArraySlice<UInt8> { bytes[fields[i].nameRange] }

    /// The value bytes of field `i`, without surrounding whitespace.
    public func value(at i: Int) -> ArraySlice<UInt8> { bytes[fields[i].valueRange] }

    /// Index of the first field whose name equals `name` ignoring ASCII case, or nil.
    public func firstIndex(of name: StaticString) -> Int? {
        firstIndex(from: 0, name.utf8Start, name.utf8CodeUnitCount)
    }

    /// Index of the first field whose name equals `name` (ASCII bytes, any case), or nil.
    public func firstIndex(of name: [UInt8]) -> Int? {
        name.withUnsafeBufferPointer { firstIndex(from: 0, $0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
    }

    /// Index of the next field at or after `start` whose name equals `name`; iterate duplicates with it.
    public func nextIndex(of name: StaticString, from start: Int) -> Int? {
        firstIndex(from: start, name.utf8Start, name.utf8CodeUnitCount)
    }

    /// The value of the first field named `name`, or nil.
    public func first(_ name: StaticString) -> ArraySlice<UInt8>? {
        firstIndex(of: name).map { value(at: $0) }
    }

    /// Whether a field named `name` is present.
    public func contains(_ name: StaticString) -> Bool { firstIndex(of: name) != nil }

    /// Whether field `i` has name `name` (any case).
    public func nameEquals(at i: Int, _ name: StaticString) -> Bool {
        let f = fields[i]
        return bytes.withUnsafeBufferPointer {
            ASCII.equalsIgnoringCase($0.baseAddress! + Int(f.nameStart), Int(f.nameEnd - f.nameStart), name)
        }
    }

    func firstIndex(from start: Int, _ q: UnsafePointer<UInt8>, _ qCount: Int) -> Int? {
        guard start < fields.count else { return nil }
        return bytes.withUnsafeBufferPointer { buf -> Int? in
            let p = buf.baseAddress!
            for i in start..<fields.count {
                let f = fields[i]
                let len = Int(f.nameEnd &- f.nameStart)
                if len == qCount && ASCII.equalsIgnoringCase(p + Int(f.nameStart), len, q, qCount) { return i }
            }
            return nil
        }
    }
}
