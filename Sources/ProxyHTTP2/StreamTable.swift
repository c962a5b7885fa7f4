/// The open streams of one HTTP/2 connection, by stream ID.
///
/// A `Dictionary<Int32, Value>` hashed every ID with SipHash: four or five lookups per request (~400 instructions of
/// hashing alone, callgrind, HTTP/2 64 B row). Stream IDs need no such hashing: a client numbers its streams with
/// consecutive odd integers (RFC 9113 §5.1.1), so `id >> 1` modulo a power of two spreads the open ones over
/// consecutive slots. Linear probing, at most half full, with backward-shift deletion (no tombstones).
///
/// Hand-written: no collection on the mirror offers an integer-keyed table without a general-purpose hasher.
public struct StreamTable<Value: AnyObject> {
    /// Stream IDs (0: empty; 0 is never a stream's ID) and their values, slot by slot.
    private var ids: [Int32]
    private var values: [Value?]
    private var mask: Int
    public private(set) var count = 0

    public init() {
        ids = Array(repeating: 0, count: 16)
        values = Array(repeating: nil, count: 16)
        mask = 15
    }

    public var isEmpty: Bool { count == 0 }

    @inline(__always)
    private func home(_ id: Int32) -> Int { Int(truncatingIfNeeded: id >> 1) & mask }

    /// The slot holding `id`, or nil.
    @inline(__always)
    private func slot(of id: Int32) -> Int? {
        guard id > 0 else { return nil }
        var i = home(id)
        while true {
            let k = ids[i]
            if k == id { return i }
            if k == 0 { return nil }
            i = (i &+ 1) & mask
        }
    }

    public subscript(id: Int32) -> Value? {
        guard let i = slot(of: id) else { return nil }
        return values[i]
    }

    /// Stores `value` for `id` (> 0), replacing any value it had.
    public mutating func insert(_ value: Value, for id: Int32) {
        precondition(id > 0, "stream IDs are positive")
        if let i = slot(of: id) {
            values[i] = value
            return
        }
        if (count &+ 1) * 2 > ids.count { grow() }
        var i = home(id)
        while ids[i] != 0 { i = (i &+ 1) & mask }
        ids[i] = id
        values[i] = value
        count &+= 1
    }

    /// Removes `id` and returns its value, or nil when it is not in the table.
    @discardableResult
    public mutating func removeValue(forKey id: Int32) -> Value? {
        guard var hole = slot(of: id) else { return nil }
        let removed = values[hole]
        ids[hole] = 0
        values[hole] = nil
        count &-= 1
        // Backward shift: move later members of the probe run into the hole when their home allows it.
        var i = (hole &+ 1) & mask
        while ids[i] != 0 {
            let h = home(ids[i])
            // `i` may move to `hole` unless its home lies cyclically in (hole, i].
            let distanceFromHome = (i &- h) & mask
            let distanceFromHole = (i &- hole) & mask
            if distanceFromHome >= distanceFromHole {
                ids[hole] = ids[i]
                values[hole] = values[i]
                ids[i] = 0
                values[i] = nil
                hole = i
            }
            i = (i &+ 1) & mask
        }
        return removed
    }

    public mutating func removeAll() {
        ids = Array(repeating: 0, count: 16)
        values = Array(repeating: nil, count: 16)
        mask = 15
        count = 0
    }

    private mutating func grow() {
        let oldIDs = ids
        let oldValues = values
        let n = oldIDs.count * 2
        ids = Array(repeating: 0, count: n)
        values = Array(repeating: nil, count: n)
        mask = n - 1
        count = 0
        for i in 0..<oldIDs.count where oldIDs[i] != 0 {
            var j = home(oldIDs[i])
            while ids[j] != 0 { j = (j &+ 1) & mask }
            ids[j] = oldIDs[i]
            values[j] = oldValues[i]
            count &+= 1
        }
    }
}

/// Iterating walks the values in no particular order, as they were when the loop began: the table may change while
/// the caller walks it (the iterator holds the slot array, copied only if the table is written meanwhile).
extension StreamTable: Sequence {
    public struct Iterator: IteratorProtocol {
        fileprivate let values: [Value?]
        fileprivate var i = 0

        public mutating func next() -> Value? {
            while i < values.count {
                defer { i += 1 }
                if let v = values[i] { return v }
            }
            return nil
        }
    }

    public func makeIterator() -> Iterator { Iterator(values: values) }
}
