// The renewal-intolerance detector's input: one record per finished handshake (issue #14, §2).
//
// Sans-IO and lock-free: workers append `HandshakeObservation`s to their own `ObservationQueue` (a fixed-size
// single-producer/single-consumer ring, two atomics, no lock, no allocation); the control thread drains every queue
// into the one `Detector` once a second (or when the admin API asks). Hand-written: no package in Package.swift or on
// the mirror offers an SPSC ring, and it is forty lines.
import ProxyCore
import Synchronization

/// What the detector shows for a fingerprint besides its key: created once per fingerprint per worker (a worker
/// caches them), immutable, shared by reference.
public final class FingerprintLabels: Sendable {
    /// The JA4 fingerprint (`t12d1209h2_...`); the detector's key is `DetectorKey.of(ja4:)`.
    public let ja4: String
    /// The first JA3 hash seen with this JA4 (JA3 varies where JA4 does not, e.g. Chrome's extension shuffling).
    public let ja3Hash: String
    /// The tag of the policy that matched the first hello seen, if any.
    public let tag: String?

    public init(ja4: String, ja3Hash: String, tag: String?) {
        self.ja4 = ja4
        self.ja3Hash = ja3Hash
        self.tag = tag
    }
}

/// The detector's 64-bit key for a JA4 string (FNV-1a): equal on every instance, so fleet entries and state files
/// carry the JA4 text and the key is recomputed from it.
public enum DetectorKey {
    public static func of(ja4: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in ja4.utf8 {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return h
    }
}

/// A worker's cache of fingerprint keys and labels, by a hash of the JA4 inputs (`ClientHello.ja4InputsHash`): JA4
/// and the JA3 hash are computed once per fingerprint per worker, not per handshake. Bounded (cleared when full).
/// One owner (a worker's loop thread); no lock.
public struct FingerprintLabelCache {
    public static let capacity = 4096
    private var map: [UInt64: (key: UInt64, labels: FingerprintLabels)] = [:]

    public init() {}

    /// Fingerprints cached now.
    public var count: Int { map.count }

    /// The detector key and labels cached for a hello whose JA4 inputs hash to `inputsHash`, if any. (No closure
    /// computing the labels on a miss: capturing the parsed hello in one would copy it on every handshake.)
    @inline(__always)
    public func find(_ inputsHash: UInt64) -> (key: UInt64, labels: FingerprintLabels)? { map[inputsHash] }

    /// Caches `labels` (computed once, on a miss) for `inputsHash`; returns them with their detector key.
    public mutating func insert(
        _ inputsHash: UInt64,
        _ labels: FingerprintLabels
    ) -> (
        key: UInt64, labels: FingerprintLabels
    ) {
        if map.count >= Self.capacity { map.removeAll(keepingCapacity: true) }
        let entry = (key: DetectorKey.of(ja4: labels.ja4), labels: labels)
        map[inputsHash] = entry
        return entry
    }
}

/// A client address as the detector needs it: whole (fallback tracking) and its /24 (IPv4) or /64 (IPv6) prefix.
public struct ClientAddress: Sendable, Hashable {
    public var high: UInt64
    public var low: UInt64
    public var isV4: Bool

    public init(high: UInt64, low: UInt64, isV4: Bool) {
        self.high = high
        self.low = low
        self.isV4 = isV4
    }

    /// An IPv4 address in host byte order.
    public static func v4(_ a: UInt32) -> ClientAddress { ClientAddress(high: 0, low: UInt64(a), isV4: true) }

    /// The /24 (IPv4) or /64 (IPv6) prefix, as one word (distinct prefixes are what a flag needs).
    public var prefix: UInt64 { isV4 ? (low & 0xFFFF_FF00) | (1 << 63) : high }
}

/// One finished handshake of a fingerprinted hello.
public struct HandshakeObservation: Sendable {
    public enum Kind: UInt8, Sendable, CaseIterable {
        /// The server sent a ticket inside or right after a resumption: TLS 1.2 NewSessionTicket before CCS (the
        /// ticket callback returned 2), or TLS 1.3 a ticket on a resumption.
        case renewal
        /// Every other handshake (full handshakes, resumptions without a new ticket): the baseline.
        case baseline
    }

    public enum Result: UInt8, Sendable, CaseIterable {
        case completed
        /// The client closed or reset the connection before its Finished, without an alert.
        case aborted
        /// The handshake failed otherwise (an alert from either side, a protocol error).
        case failed
    }

    public var key: UInt64
    public var labels: FingerprintLabels
    public var kind: Kind
    public var result: Result
    public var address: ClientAddress
    /// The highest protocol version the hello offered (supported_versions, else legacy_version).
    public var highestVersion: UInt16
    /// The hello carried TLS_FALLBACK_SCSV (RFC 7507).
    public var fallbackSCSV: Bool
    /// Monotonic nanoseconds when the handshake ended.
    public var time: UInt64

    public init(
        key: UInt64,
        labels: FingerprintLabels,
        kind: Kind,
        result: Result,
        address: ClientAddress,
        highestVersion: UInt16,
        fallbackSCSV: Bool,
        time: UInt64
    ) {
        self.key = key
        self.labels = labels
        self.kind = kind
        self.result = result
        self.address = address
        self.highestVersion = highestVersion
        self.fallbackSCSV = fallbackSCSV
        self.time = time
    }
}

/// A bounded single-producer (one worker) / single-consumer (the control thread) ring of observations.
/// `push` never blocks or allocates; when the ring is full the observation is dropped and counted.
public final class ObservationQueue: @unchecked Sendable {
    // SAFETY: slots in [head, tail) belong to the consumer, the others to the producer; the indices are atomics
    // (release on publish, acquire on read), so a slot is never touched by both threads at once.
    private let slots: UnsafeMutablePointer<HandshakeObservation>
    private let mask: Int
    private let head = Atomic<Int>(0)
    private let tail = Atomic<Int>(0)
    private let droppedCount = Atomic<Int>(0)

    /// - Parameter capacity: rounded up to a power of two.
    public init(capacity: Int = 4096) {
        var c = 1
        while c < max(2, capacity) { c <<= 1 }
        mask = c - 1
        slots = .allocate(capacity: c)
    }

    deinit {
        let h = head.load(ordering: .relaxed)
        let t = tail.load(ordering: .relaxed)
        for i in h..<t { (slots + (i & mask)).deinitialize(count: 1) }
        slots.deallocate()
    }

    public var capacity: Int { mask + 1 }
    /// Observations dropped because the ring was full (the control thread fell behind).
    public var dropped: Int { droppedCount.load(ordering: .relaxed) }

    /// Producer side (the worker's thread only).
    @discardableResult
    public func push(_ o: HandshakeObservation) -> Bool {
        let t = tail.load(ordering: .relaxed)
        if t &- head.load(ordering: .acquiring) > mask {
            droppedCount.wrappingAdd(1, ordering: .relaxed)
            return false
        }
        (slots + (t & mask)).initialize(to: o)
        tail.store(t &+ 1, ordering: .releasing)
        return true
    }

    /// Consumer side (one thread only): hands every queued observation to `body`, oldest first.
    public func drain(_ body: (HandshakeObservation) -> Void) {
        let h = head.load(ordering: .relaxed)
        let t = tail.load(ordering: .acquiring)
        var i = h
        while i != t {
            body((slots + (i & mask)).move())
            i &+= 1
        }
        head.store(t, ordering: .releasing)
    }
}
