public import ProxyCore
public import ProxyTickets
import Synchronization

/// Shares the detector's flags through Redis (issue #14, "Fleet"), from a dedicated thread with its own connection
/// (never a worker's event loop, never the control loop). Every `poll` it
///   1. writes this instance's own flags (handed over by ``share(_:)``) that Redis lacks or holds with an earlier
///      expiry: `SET <prefix><ja4> sealed PX <ms to expiry>` (so a Redis that restarted empty gets them back);
///   2. reads every entry under the prefix (`SCAN` + `MGET`, bounded), opens each with the ``FleetFlagSealer``
///      (tampered, foreign or malformed entries are counted and reported once each, and ignored; expired ones are
///      ignored), and leaves the authentic ones for the control thread (``takeImported()``), calling `onImported`
///      when they changed so the control loop applies them at once.
/// Failures mark the store down (one ``Event/down(_:)`` per transition) and retry with backoff up to 30 s; the
/// instance keeps every flag it has. `share` and `takeImported` take a mutex: they run on the control thread only,
/// never on the handshake path.
public final class RedisFlagSync: Sendable {
    public enum Event: Sendable {
        case up
        case down(String)
        /// An entry that did not authenticate (or did not parse); reported once per distinct entry.
        case rejected(slot: String, reason: FleetFlagOpenError)
    }

    public let endpoint: RedisEndpoint
    /// Redis key prefix of every flag entry (`<[redis] key_prefix>detector:`).
    public let prefix: String
    public let pollNanoseconds: Int64
    /// At most this many entries are read per poll (the detector's own cap bounds what it adopts).
    public let maxEntries: Int
    private let sealer: FleetFlagSealer
    private let onEvent: @Sendable (Event) -> Void
    private let onImported: @Sendable () -> Void

    private let poller = RedisPoller()
    private let writtenTotal = Atomic<Int>(0)
    /// This instance's flags to keep in Redis (replaced whole by `share`, which wakes the thread).
    private let outgoing = Mutex<[FleetFlagEntry]>([])
    /// Authentic entries of the last cycle not yet taken by the control thread.
    private let incoming = Mutex<[FleetFlagEntry]?>(nil)
    // SAFETY: used only by the sync thread after start() (or by the caller of cycle() before it).
    private nonisolated(unsafe) let connection: RedisConnection
    private nonisolated(unsafe) var lastImported: [String: Int64] = [:]

    public init(
        endpoint: RedisEndpoint,
        connectTimeoutNanoseconds: Int64,
        commandTimeoutNanoseconds: Int64,
        pollNanoseconds: Int64,
        prefix: String,
        sealer: FleetFlagSealer,
        maxEntries: Int = 10_000,
        onEvent: @escaping @Sendable (Event) -> Void = { _ in },
        onImported: @escaping @Sendable () -> Void = {}
    ) {
        self.endpoint = endpoint
        self.prefix = prefix
        self.pollNanoseconds = max(10_000_000, pollNanoseconds)
        self.maxEntries = maxEntries
        self.sealer = sealer
        self.onEvent = onEvent
        self.onImported = onImported
        connection = RedisConnection(
            endpoint: endpoint,
            connectTimeoutNanoseconds: connectTimeoutNanoseconds,
            commandTimeoutNanoseconds: commandTimeoutNanoseconds
        )
    }

    /// Whether the last cycle succeeded (nil before the first).
    public var isUp: Bool? { poller.isUp }
    /// Entries rejected so far (each distinct entry once).
    public var rejectedEntries: Int { poller.rejectedEntries }
    /// Entries this instance wrote.
    public var writtenEntries: Int { writtenTotal.load(ordering: .relaxed) }
    public var completedCycles: Int { poller.completedCycles }

    /// The Redis key of a JA4's flag.
    public func slot(ja4: String) -> String { prefix + ja4 }

    /// Control thread: this instance's own flags, to be kept in Redis until they expire.
    public func share(_ entries: [FleetFlagEntry]) {
        outgoing.withLock { $0 = entries }
        // Written at once when the store is up (a down one waits for its backoff).
        if isUp == true { poller.wake() }
    }

    /// Control thread: the authentic entries read since the last call (nil: nothing new).
    public func takeImported() -> [FleetFlagEntry]? {
        incoming.withLock { v in
            defer { v = nil }
            return v
        }
    }

    // MARK: - one cycle

    /// One round trip set: write missing own flags, read and open all. Returns the authentic, unexpired entries.
    @discardableResult
    public func cycle(now: Timestamp) throws(RedisError) -> [FleetFlagEntry] {
        try poller.cycle(
            { () throws(RedisError) in try cycleBody(now: now) },
            closingOnDown: connection,
            transition: { up, reason in onEvent(up ? .up : .down(reason)) }
        )
    }

    private func cycleBody(now: Timestamp) throws(RedisError) -> [FleetFlagEntry] {
        let mine = outgoing.withLock { $0 }
        var slots: [String] = []
        var cursor = "0"
        repeat {
            let r = try connection.command("SCAN", cursor, "MATCH", prefix + "*", "COUNT", "1000")
            guard case .array(let parts) = r, parts.count == 2, case .bulk(let cur) = parts[0],
                case .array(let names) = parts[1]
            else { throw .protocolError(endpoint: "\(endpoint)", message: "SCAN") }
            cursor = String(decoding: cur, as: UTF8.self)
            for case .bulk(let n) in names { slots.append(String(decoding: n, as: UTF8.self)) }
        } while cursor != "0" && slots.count < maxEntries
        slots = Array(Set(slots).prefix(maxEntries))
        var found: [String: FleetFlagEntry] = [:]
        var i = 0
        while i < slots.count {
            let batch = Array(slots[i..<min(slots.count, i + 256)])
            i += batch.count
            let r = try connection.command([Array("MGET".utf8)] + batch.map { Array($0.utf8) })
            guard case .array(let items) = r, items.count == batch.count else {
                throw .protocolError(endpoint: "\(endpoint)", message: "MGET")
            }
            for (slot, item) in zip(batch, items) {
                guard case .bulk(let sealed) = item else { continue }
                switch sealer.open(sealed, slot: slot, now: now) {
                case .success(let e): found[slot] = e
                case .failure(.expired): continue
                case .failure(let why): reject(slot: slot, entry: sealed, why)
                }
            }
        }
        // Own flags Redis lacks (or holds with an earlier expiry, or in a form that did not open): write them.
        for e in mine where e.expiresAt > now {
            let slot = slot(ja4: e.ja4)
            if let there = found[slot], there.expiresAt >= e.expiresAt { continue }
            guard let sealed = sealer.seal(e, slot: slot) else {
                throw .protocolError(endpoint: "local", message: "sealing a flag failed")
            }
            let ms = max(1, (e.expiresAt.nanosecondsSinceEpoch - now.nanosecondsSinceEpoch) / 1_000_000)
            _ = try connection.command([
                Array("SET".utf8), Array(slot.utf8), sealed, Array("PX".utf8), Array("\(ms)".utf8),
            ])
            writtenTotal.add(1, ordering: .relaxed)
            found[slot] = e
        }
        return Array(found.values)
    }

    private func reject(slot: String, entry: [UInt8], _ why: FleetFlagOpenError) {
        if poller.firstRejection(slot: slot, entry: entry) { onEvent(.rejected(slot: slot, reason: why)) }
    }

    // MARK: - the thread

    /// Starts the sync thread. Call once.
    public func start() {
        poller.start(
            poll: pollNanoseconds,
            cycle: { [self] in
                guard let entries = try? cycle(now: Timestamp.wallClockNow()) else { return false }
                var seen: [String: Int64] = [:]
                for e in entries { seen[e.ja4] = e.expiresAt.nanosecondsSinceEpoch }
                if seen != lastImported {
                    lastImported = seen
                    incoming.withLock { $0 = entries }
                    onImported()
                }
                return true
            },
            finish: { [self] in connection.close() }
        )
    }

    /// Stops the thread and waits for it (at most about one command timeout).
    public func stop() { poller.stop() }
}
