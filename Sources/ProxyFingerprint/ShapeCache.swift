import Glibc

/// What was decided for ClientHellos of a given `ClientHelloShape`, so the next hello of the same shape skips the
/// parse, the feature set, the policy match and the fingerprint hashes (together ~12,000 instructions per
/// handshake, against ~1,500 for shaping, hashing and comparing). One per worker, loop thread only.
///
/// Direct-mapped: a shape's slot is its hash's low bits, and a new shape takes the slot over. Bounded: `slots`
/// entries of at most `ClientHelloShape.maxLength` bytes each. A hit compares the whole shape, not only its hash,
/// so two shapes never share an entry. A client that permutes its extensions on every connection (Chrome since
/// version 110) gives a new shape each time: it misses and pays the shaping on top of the full path.
public final class ShapeCache<Value> {
    /// Where a probed shape lives: its hash and length in the scratch buffer (valid until the next probe).
    public struct Probe {
        public let hash: Int
        public let length: Int
    }

    private struct Entry {
        var hash: Int
        var shape: [UInt8]
        var value: Value
    }

    private var entries: [Entry?]
    private let mask: Int
    // SAFETY: allocated once, freed in deinit; only this object writes it, on its loop thread.
    private let scratch: UnsafeMutableRawBufferPointer

    /// - Parameter slots: rounded up to a power of two.
    public init(slots: Int = 256) {
        var n = 1
        while n < max(slots, 1) { n <<= 1 }
        entries = Array(repeating: nil, count: n)
        mask = n - 1
        scratch = .allocate(byteCount: ClientHelloShape.maxLength, alignment: 16)
    }

    deinit { scratch.deallocate() }

    /// Entries held now.
    public var count: Int { entries.reduce(0) { $0 + ($1 == nil ? 0 : 1) } }

    /// Shapes `handshake` into the scratch buffer; nil when it has no shape (then parse it in full, and do not
    /// insert).
    public func probe(handshake: UnsafeRawBufferPointer) -> Probe? {
        guard let n = ClientHelloShape.write(handshake: handshake, into: scratch) else { return nil }
        var h = Hasher()
        h.combine(bytes: UnsafeRawBufferPointer(rebasing: scratch[0..<n]))
        return Probe(hash: h.finalize(), length: n)
    }

    /// The value cached for the shape of the last `probe`, if any.
    public func value(for probe: Probe) -> Value? {
        guard let e = entries[probe.hash & mask], e.hash == probe.hash, e.shape.count == probe.length,
            e.shape.withUnsafeBytes({ memcmp($0.baseAddress!, scratch.baseAddress!, probe.length) == 0 })
        else { return nil }
        return e.value
    }

    /// Caches `value` for the shape of the last `probe` (replacing whatever held its slot).
    public func insert(_ value: Value, for probe: Probe) {
        let shape = Array(UnsafeRawBufferPointer(rebasing: scratch[0..<probe.length]))
        entries[probe.hash & mask] = Entry(hash: probe.hash, shape: shape, value: value)
    }

    /// Forgets every entry (the decisions they hold are out of date: new policies, another detector mode).
    public func removeAll() {
        for i in entries.indices { entries[i] = nil }
    }
}
