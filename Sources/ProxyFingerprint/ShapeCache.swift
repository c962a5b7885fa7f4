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
    /// Per cache, so slot positions differ between processes and workers.
    private let seed = UInt64.random(in: .min ... .max)
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
        let shape = UnsafeRawBufferPointer(rebasing: scratch[0..<n])
        return Probe(hash: Int(truncatingIfNeeded: Self.hash(shape, seed)), length: n)
    }

    /// A seeded multiply-xorshift hash, 8 bytes a step (SipHash, `Hasher`, cost ~830 instructions per hello here,
    /// this ~150). Its quality only spreads shapes over slots: a hit compares the whole shape. A client that makes
    /// shapes collide on purpose only evicts entries, which sending new shapes does anyway.
    @inline(__always)
    static func hash(_ b: UnsafeRawBufferPointer, _ seed: UInt64) -> UInt64 {
        @inline(__always) func mix(_ h: UInt64, _ v: UInt64) -> UInt64 {
            let m = (h ^ v) &* 0x9E37_79B9_7F4A_7C15
            return m ^ (m >> 29)
        }
        let n = b.count
        var h = seed ^ UInt64(n)
        var i = 0
        while n - i >= 8 {
            h = mix(h, b.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            i += 8
        }
        if i < n {
            var tail: UInt64 = 0
            while i < n {
                tail = tail << 8 | UInt64(b[i])
                i += 1
            }
            h = mix(h, tail)
        }
        // MurmurHash3's finaliser: every input bit reaches the low bits that pick the slot.
        h = (h ^ (h >> 33)) &* 0xff51_afd7_ed55_8ccd
        h = (h ^ (h >> 33)) &* 0xc4ce_b9fe_1a85_ec53
        return h ^ (h >> 33)
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
