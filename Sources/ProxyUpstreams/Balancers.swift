/// Smooth weighted round-robin (nginx `ngx_http_upstream_round_robin.c`): each pick adds every candidate's weight
/// to its running score, takes the highest and subtracts the total from it. Weights 5,1,1 give `a a b a c a a`
/// rather than `a a a a a b c`, and every candidate gets exactly its share over one cycle of `Σ weights` picks.
///
/// One instance per worker and pool (not shared: no atomics on the request path). Candidates that are not usable
/// are skipped for this pick and keep their score.
public struct SmoothWeightedRoundRobin: Sendable {
    private(set) var current: [Int]

    public init(count: Int) { current = Array(repeating: 0, count: count) }

    /// The chosen index among `weights.indices` whose `usable(i)` is true; nil when none is.
    public mutating func pick(weights: [Int], usable: (Int) -> Bool) -> Int? {
        if current.count != weights.count { current = Array(repeating: 0, count: weights.count) }
        var best = -1
        var total = 0
        for i in weights.indices where usable(i) {
            current[i] &+= weights[i]
            total &+= weights[i]
            if best < 0 || current[i] > current[best] { best = i }
        }
        guard best >= 0 else { return nil }
        current[best] &-= total
        return best
    }
}

/// Least outstanding requests, weighted: the usable candidate with the smallest `(outstanding + 1) / weight`
/// (Envoy's and HAProxy's `leastconn` idea applied to requests). Ties go to the first candidate at or after
/// `start`, so a caller rotating `start` spreads equal loads round-robin instead of piling onto index 0.
public enum LeastOutstanding {
    public static func pick(
        weights: [Int],
        start: Int,
        outstanding: (Int) -> Int,
        usable: (Int) -> Bool
    ) -> Int? {
        let n = weights.count
        guard n > 0 else { return nil }
        var best = -1
        var bestLoad = 0
        var bestWeight = 1
        for step in 0..<n {
            let i = (start &+ step) % n
            guard usable(i) else { continue }
            let load = max(0, outstanding(i)) &+ 1
            // load_i / w_i < bestLoad / bestWeight, in integers.
            if best < 0 || load &* bestWeight < bestLoad &* weights[i] {
                best = i
                bestLoad = load
                bestWeight = weights[i]
            }
        }
        return best >= 0 ? best : nil
    }
}

/// Weighted rendezvous (highest random weight) hashing: every candidate scores `-weight / ln(u)` where `u` in
/// (0, 1) is derived from the key and the candidate's identity; the highest score wins. The distribution follows
/// the weights, and when a candidate leaves only the keys it held move (each to its own runner-up) — no ring to
/// rebuild, no virtual nodes. O(candidates) per pick, which is fine for pools of up to a few hundred addresses.
///
/// The hash is fixed (FNV-1a + a 64-bit finalizer), never Swift's per-process seeded `Hasher`, so every worker
/// and every restart agrees on where a key goes.
public enum RendezvousHash {
    /// The score of `(key, id)` with `weight`; exposed for tests.
    public static func score(key: UInt64, id: UInt64, weight: Int) -> Double {
        let h = mix(key ^ mix(id))
        // 53 random bits → u in (0, 1), never 0 or 1.
        let u = (Double(h >> 11) + 0.5) / 9_007_199_254_740_992.0
        return -Double(weight) / _log(u)
    }

    /// The chosen index, or nil when no candidate is usable.
    public static func pick(key: UInt64, ids: [UInt64], weights: [Int], usable: (Int) -> Bool) -> Int? {
        var best = -1
        var bestScore = -Double.infinity
        for i in ids.indices where usable(i) {
            let s = score(key: key, id: ids[i], weight: weights[i])
            if s > bestScore {
                best = i
                bestScore = s
            }
        }
        return best >= 0 ? best : nil
    }

    /// FNV-1a 64 of `bytes`.
    public static func fnv1a<C: Collection>(_ bytes: C) -> UInt64 where C.Element == UInt8 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return h
    }

    /// MurmurHash3's 64-bit finalizer: spreads FNV's weak low bits over the whole word.
    @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 {
        var k = x
        k ^= k >> 33
        k = k &* 0xff51_afd7_ed55_8ccd
        k ^= k >> 33
        k = k &* 0xc4ce_b9fe_1a85_ec53
        k ^= k >> 33
        return k
    }
}

@inline(__always)
private func _log(_ x: Double) -> Double {
    // Natural logarithm without Foundation on the request path.
    #if canImport(Glibc)
    return Glibc.log(x)
    #else
    return Foundation.log(x)
    #endif
}

#if canImport(Glibc)
import Glibc
#endif
