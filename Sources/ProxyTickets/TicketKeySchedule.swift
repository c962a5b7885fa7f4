public import ProxyCore

/// The rotation schedule: pure arithmetic on a ``Timestamp``, no state, no clock.
///
/// With rotation period R and lifetime L, the key of epoch `n = floor(t / R)`:
/// - is `next` during `[(n-1)R, nR)` — it exists one period before it encrypts, so every worker already holds it
///   when the boundary passes and switches exactly on time without waiting for a new ring;
/// - encrypts (is `current`) during `[nR, (n+1)R)`;
/// - decrypts (is `stale`) until `(n+1)R + L`, then is `expired`.
///
/// Decision: a `next` key is accepted for decryption. A fleet member whose clock runs slightly ahead may already
/// seal tickets with it; refusing them would cost a full handshake per such ticket for no security gain (the key
/// is as secret as the current one).
///
/// Promises: epochs use floor division, so they are correct for negative times too; boundaries are exact in
/// nanoseconds (start inclusive, end exclusive).
public struct TicketKeySchedule: Sendable, Hashable, CustomStringConvertible {
    /// Largest ring a schedule may need (`ceil(L/R) + 2`); bounds memory and the linear lookup.
    public static let maxRingSize = 64

    /// Rotation period R in nanoseconds (> 0).
    public let rotationNanoseconds: Int64
    /// Lifetime L in nanoseconds (>= 0): how long a key keeps decrypting after it stopped encrypting.
    public let lifetimeNanoseconds: Int64

    /// R = 3600 s, L = 18 h.
    public static let `default` = try! TicketKeySchedule(rotationSeconds: 3600, lifetimeSeconds: 18 * 3600)

    /// Errors for a schedule that cannot work.
    public enum Invalid: Error, Equatable, CustomStringConvertible {
        case nonPositiveRotation
        case negativeLifetime
        /// `ceil(L/R) + 2` exceeds ``TicketKeySchedule/maxRingSize``.
        case ringTooLarge(needed: Int)

        public var description: String {
            switch self {
            case .nonPositiveRotation: return "ticket key rotation period must be > 0"
            case .negativeLifetime: return "ticket key lifetime must be >= 0"
            case .ringTooLarge(let n):
                return "ticket key lifetime/rotation needs \(n) keys; at most \(TicketKeySchedule.maxRingSize)"
            }
        }
    }

    /// A schedule in nanoseconds. Throws ``Invalid`` for R <= 0, L < 0 or a ring above ``maxRingSize``.
    public init(rotationNanoseconds: Int64, lifetimeNanoseconds: Int64) throws(Invalid) {
        guard rotationNanoseconds > 0 else { throw .nonPositiveRotation }
        guard lifetimeNanoseconds >= 0 else { throw .negativeLifetime }
        let (q, r) = lifetimeNanoseconds.quotientAndRemainder(dividingBy: rotationNanoseconds)
        let needed = q + (r > 0 ? 1 : 0) + 2
        guard needed <= Int64(Self.maxRingSize) else { throw .ringTooLarge(needed: Int(clamping: needed)) }
        self.rotationNanoseconds = rotationNanoseconds
        self.lifetimeNanoseconds = lifetimeNanoseconds
    }

    /// A schedule in whole seconds (same rules as ``init(rotationNanoseconds:lifetimeNanoseconds:)``).
    public init(rotationSeconds: Int64, lifetimeSeconds: Int64) throws(Invalid) {
        let (r, o1) = rotationSeconds.multipliedReportingOverflow(by: 1_000_000_000)
        let (l, o2) = lifetimeSeconds.multipliedReportingOverflow(by: 1_000_000_000)
        if o1 || o2 { throw .ringTooLarge(needed: Int.max) }
        try self.init(rotationNanoseconds: r, lifetimeNanoseconds: l)
    }

    /// The number of keys that exist at any time: `ceil(L/R) + 2` (stale keys still decrypting, the current key,
    /// the next key). ``epochs(at:)`` never returns more.
    public var ringSize: Int {
        let (q, r) = lifetimeNanoseconds.quotientAndRemainder(dividingBy: rotationNanoseconds)
        return Int(q) + (r > 0 ? 1 : 0) + 2
    }

    /// `floor(t / R)`: the epoch whose key encrypts at `t`.
    public func epoch(at t: Timestamp) -> Int64 {
        Self.floorDiv(t.nanosecondsSinceEpoch, rotationNanoseconds)
    }

    /// `nR`: when epoch `n`'s key starts encrypting.
    public func encryptFrom(epoch n: Int64) -> Timestamp { Timestamp(nanosecondsSinceEpoch: n * rotationNanoseconds) }
    /// `(n+1)R`: when epoch `n`'s key stops encrypting.
    public func encryptUntil(epoch n: Int64) -> Timestamp { encryptFrom(epoch: n + 1) }
    /// `(n+1)R + L`: when epoch `n`'s key stops decrypting.
    public func decryptUntil(epoch n: Int64) -> Timestamp {
        encryptUntil(epoch: n).adding(nanoseconds: lifetimeNanoseconds)
    }

    /// The epochs whose keys must exist at `t`: from the oldest key still decrypting (`floor((t - L) / R)`) to
    /// `epoch(at: t) + 1` (the next key), inclusive. Its count is at most ``ringSize``.
    public func epochs(at t: Timestamp) -> ClosedRange<Int64> {
        let current = epoch(at: t)
        let oldest = Self.floorDiv(t.nanosecondsSinceEpoch - lifetimeNanoseconds, rotationNanoseconds)
        return oldest...(current + 1)
    }

    /// The state of epoch `n`'s key at `t` under this schedule.
    public func state(ofEpoch n: Int64, at t: Timestamp) -> KeyState {
        if t < encryptFrom(epoch: n) { return .next }
        if t < encryptUntil(epoch: n) { return .current }
        if t < decryptUntil(epoch: n) { return .stale }
        return .expired
    }

    public var description: String {
        "TicketKeySchedule(rotation: \(Timestamp(nanosecondsSinceEpoch: rotationNanoseconds))s, "
            + "lifetime: \(Timestamp(nanosecondsSinceEpoch: lifetimeNanoseconds))s, ring: \(ringSize))"
    }

    private static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let (q, r) = a.quotientAndRemainder(dividingBy: b)
        return (r != 0 && (r < 0) != (b < 0)) ? q - 1 : q
    }
}
