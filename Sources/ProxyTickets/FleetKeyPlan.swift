// Fleet-wide epoch keys: which shared keys an instance must hold at a time, what they are called in the store,
// how long the store keeps them, and the times each key gets in the ring. Pure arithmetic, no I/O, no clock.
//
// Epochs. Time is cut into rotation periods R; epoch n = floor(t / R). The key of epoch n is created once in the
// store by whichever instance first needs it (atomic create-if-absent: `SET slot value NX PX ttl`); an instance
// that loses the race reads the winner's key from the primary. Every instance therefore uses the same key for n.
//
// Clock skew. Instances' wall clocks may differ from true time by up to S (`redis.max_clock_skew`, default 1 min),
// so two instances differ by up to 2S. Key n's ring times on every instance are:
//   - encrypts during local [nR, (n+1)R) — each instance switches on its own clock, no coordination;
//   - decrypts from the moment it is held (a `next` key already decrypts) until local (n+1)R + L + 2S.
// Why that is enough:
//   1. Held before anyone encrypts with it. The earliest true time any instance encrypts with n is nR - S (its
//      clock runs S ahead). At that true time a reader whose clock runs S behind reads nR - 2S. Instances fetch
//      (and create if absent) epochs up to epoch(now) + `lookahead`, so a reader holds key n from local time
//      (n - lookahead)R plus one poll. `lookahead = max(1, ceil((2S + poll) / R))` makes (n - lookahead)R + poll
//      <= nR - 2S. With R = 1 h and S = 1 min that is 1: "create epoch n+1 at least one period ahead".
//   2. Still held when the last ticket under it arrives. The last ticket under n is issued at true time
//      (n+1)R + S (issuer S behind) and honoured for L; a reader S ahead sees that moment as (n+1)R + L + 2S,
//      hence the 2S in the decrypt window and in the store's expiry.
//   3. Renewal: with skew, a ticket from a lagging instance may look `stale` to one that already switched; it
//      still resumes (renewed per `stale_action`), and the `next`-state acceptance covers the opposite direction.
//      So skew up to S costs at most a renewal within 2S of a boundary, never a failed resumption.
// Store expiry (PX): decryptUntil(n) + one period of margin, measured from the creator's clock (which itself may be S
// off, covered by the margin as long as S < R; config validation enforces 2S < R + L).
//
// Store down. If the next epoch's key cannot be fetched or created by the time it should encrypt, the current key
// keeps encrypting for `grace` past its period (sessions keep resuming fleet-wide); after that the instance makes a
// local random key (it resumes only its own tickets; service continues). When the store returns the shared key
// wins and local keys only decrypt until their window ends.
public import ProxyCore

/// The shared-key arithmetic for one fleet (all instances must agree on rotation, lifetime and prefix).
public struct FleetKeyPlan: Sendable, Hashable {
    /// Rotation period and lifetime.
    public let schedule: TicketKeySchedule
    /// S: the largest difference between an instance clock and true time that must not break resumption.
    public let maxClockSkewNanoseconds: Int64
    /// How long the current key keeps encrypting past its period when the next shared key is not held.
    public let graceNanoseconds: Int64
    /// How often the store is polled (bounds propagation time; enters `lookahead`).
    public let pollNanoseconds: Int64
    /// Prefix of every store key (`redis.key_prefix`).
    public let prefix: String

    public init(
        schedule: TicketKeySchedule,
        maxClockSkewNanoseconds: Int64,
        graceNanoseconds: Int64,
        pollNanoseconds: Int64,
        prefix: String
    ) {
        precondition(maxClockSkewNanoseconds >= 0 && graceNanoseconds >= 0 && pollNanoseconds > 0)
        self.schedule = schedule
        self.maxClockSkewNanoseconds = maxClockSkewNanoseconds
        self.graceNanoseconds = graceNanoseconds
        self.pollNanoseconds = pollNanoseconds
        self.prefix = prefix
    }

    var r: Int64 { schedule.rotationNanoseconds }
    var skew2: Int64 { 2 * maxClockSkewNanoseconds }

    /// How many epochs beyond the current one an instance holds: `max(1, ceil((2S + poll) / R))`.
    public var lookahead: Int64 {
        let need = skew2 + pollNanoseconds
        return max(1, (need + r - 1) / r)
    }

    /// Keys an instance may hold at once: epochs still decrypting, the current one and the look-ahead.
    public var ringSize: Int {
        let back = (schedule.lifetimeNanoseconds + skew2 + r - 1) / r
        return Int(back + 1 + lookahead)
    }

    /// The store key of epoch `n`. The period is part of the name so instances configured with different periods
    /// never share (and misread) an epoch number.
    public func slot(epoch n: Int64) -> String { "\(prefix)epoch:\(r / 1_000_000):\(n)" }

    /// Prefix of keys imported with `edgeproxy keys import` (decrypt-only, own expiry).
    public var importedPrefix: String { "\(prefix)imported:" }

    /// The epoch a slot name belongs to, if it is an epoch slot of this plan.
    public func epoch(ofSlot s: String) -> Int64? {
        let head = "\(prefix)epoch:\(r / 1_000_000):"
        guard s.hasPrefix(head) else { return nil }
        return Int64(s.dropFirst(head.count))
    }

    /// The current epoch at `t`.
    public func epoch(at t: Timestamp) -> Int64 { schedule.epoch(at: t) }

    /// Epochs whose keys must be held at `now`: from the oldest still decrypting to current + ``lookahead``.
    public func epochsToHold(at now: Timestamp) -> ClosedRange<Int64> {
        let oldest = Self.floorDiv(now.nanosecondsSinceEpoch - schedule.lifetimeNanoseconds - skew2, r)
        return oldest...(epoch(at: now) + lookahead)
    }

    /// Epochs an instance creates when absent at `now`: the current one through current + ``lookahead``. (Older
    /// epochs are not minted after the fact: nobody encrypts with them any more.)
    public func epochsToCreate(at now: Timestamp) -> ClosedRange<Int64> {
        let c = epoch(at: now)
        return c...(c + lookahead)
    }

    /// Start of epoch `n`'s encrypting period.
    public func encryptFrom(epoch n: Int64) -> Timestamp { Timestamp(nanosecondsSinceEpoch: n * r) }
    /// End of epoch `n`'s encrypting period (without grace).
    public func encryptUntil(epoch n: Int64) -> Timestamp { Timestamp(nanosecondsSinceEpoch: (n + 1) * r) }
    /// End of epoch `n`'s decrypting window: `(n+1)R + L + 2S`.
    public func decryptUntil(epoch n: Int64) -> Timestamp {
        Timestamp(nanosecondsSinceEpoch: (n + 1) * r + schedule.lifetimeNanoseconds + skew2)
    }

    /// Store expiry for epoch `n` written at `now`, in milliseconds: until ``decryptUntil(epoch:)`` plus one
    /// period of margin; at least one second.
    public func ttlMilliseconds(epoch n: Int64, now: Timestamp) -> Int64 {
        let ns = decryptUntil(epoch: n).nanosecondsSinceEpoch + r - now.nanosecondsSinceEpoch
        return max(1000, ns / 1_000_000)
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let (q, rem) = a.quotientAndRemainder(dividingBy: b)
        return (rem != 0 && (rem < 0) != (b < 0)) ? q - 1 : q
    }
}
