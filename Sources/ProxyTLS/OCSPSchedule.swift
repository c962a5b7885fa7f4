/// When the OCSP stapler fetches next, and whether a response may be stapled: the pure decisions its background
/// thread follows (unit-tested in ProxyTLSTests). Times are wall-clock seconds since the Unix epoch, because OCSP
/// `thisUpdate`/`nextUpdate` are wall-clock times.
///
/// - After a good (or revoked) response: halfway through its validity window (`thisUpdate` + (`nextUpdate` −
///   `thisUpdate`) / 2), so a responder outage of up to half the window never costs the staple; at most
///   ``maximumInterval`` from now (a CA can revoke between updates) and at least ``minimumInterval``.
/// - After the n-th consecutive failure: ``retryBase`` · 2^(n−1), at most ``retryCap``, and while a good staple is
///   still held, never later than halfway to its expiry (so the last tries come before it expires).
public enum OCSPSchedule {
    /// Never fetch again sooner than this after a success (a responder with a very short window).
    public static let minimumInterval: Int64 = 5
    /// Never wait longer than this between fetches after a success (nginx refreshes hourly too).
    public static let maximumInterval: Int64 = 3600
    /// First retry after a failure.
    public static let retryBase: Int64 = 5
    /// Longest wait between retries.
    public static let retryCap: Int64 = 600
    /// How long a response without `nextUpdate` counts as fresh after its `thisUpdate` (RFC 6960 allows omitting
    /// it; stapling it forever would staple a stale answer).
    public static let validityWithoutNextUpdate: Int64 = 3600

    /// The moment a response stops being stapleable: its `nextUpdate`, or ``validityWithoutNextUpdate`` after
    /// `thisUpdate` when it has none.
    public static func expiry(thisUpdate: Int64, nextUpdate: Int64?) -> Int64 {
        nextUpdate ?? thisUpdate + validityWithoutNextUpdate
    }

    /// True when a response expiring at `expiry` may be stapled at `now` (strictly before expiry: never staple an
    /// expired response).
    public static func isStapleable(expiry: Int64, now: Int64) -> Bool { now < expiry }

    /// Next fetch after a response was accepted (good or revoked) at `now`.
    public static func refreshAfterSuccess(now: Int64, thisUpdate: Int64, nextUpdate: Int64?) -> Int64 {
        let end = expiry(thisUpdate: thisUpdate, nextUpdate: nextUpdate)
        let halfway = thisUpdate + max(0, end - thisUpdate) / 2
        return min(max(halfway, now + minimumInterval), now + maximumInterval)
    }

    /// Next fetch after the `failures`-th consecutive failure (≥ 1) at `now`; `heldExpiry` is the expiry of the
    /// good staple still held, if any.
    public static func retryAfterFailure(now: Int64, failures: Int, heldExpiry: Int64?) -> Int64 {
        let shift = min(max(failures, 1) - 1, 20)
        var next = now + min(retryCap, retryBase << Int64(shift))
        if let heldExpiry, heldExpiry > now {
            next = min(next, max(now + retryBase, now + (heldExpiry - now) / 2))
        }
        return next
    }
}
