public import ProxyCore
public import ProxyTickets

/// The `edgeproxy keys import` and `edgeproxy keys rotate` operations: one-shot, blocking, from the CLI.
public struct RedisKeyAdmin {
    public let plan: FleetKeyPlan
    public let wrapper: TicketKeyWrapper
    public let connection: RedisConnection

    public init(plan: FleetKeyPlan, wrapper: TicketKeyWrapper, connection: RedisConnection) {
        self.plan = plan
        self.wrapper = wrapper
        self.connection = connection
    }

    /// One imported key: its public name and where it went.
    public struct Imported: Sendable {
        public var path: String
        public var nameHex: String
        public var slot: String
        /// false when `epoch` was given and that epoch already had a key (nothing written).
        public var written: Bool
    }

    /// Seals nginx-format key files (48/80 bytes) into Redis. Without `epoch` each becomes a decrypt-only key
    /// that every instance accepts for lifetime + 2·skew from `now` (migrating tickets from an nginx fleet); with
    /// `epoch` the key becomes that epoch's shared key if the epoch has none yet (`SET NX`).
    public func importKeys(paths: [String], epoch: Int64?, now: Timestamp) throws -> [Imported] {
        var out: [Imported] = []
        for path in paths {
            let key = try FileKeySource.loadKey(path: path)
            if let n = epoch {
                let slot = plan.slot(epoch: n)
                let sealed = try wrapper.seal(key, slot: slot, created: now)
                let r = try connection.command([
                    Array("SET".utf8), Array(slot.utf8), sealed, Array("NX".utf8), Array("PX".utf8),
                    Array("\(plan.ttlMilliseconds(epoch: n, now: now))".utf8),
                ])
                if case .status = r {
                    out.append(Imported(path: path, nameHex: key.nameHex, slot: slot, written: true))
                } else {
                    out.append(Imported(path: path, nameHex: key.nameHex, slot: slot, written: false))
                }
            } else {
                let slot = plan.importedPrefix + key.nameHex
                let window = plan.schedule.lifetimeNanoseconds + 2 * plan.maxClockSkewNanoseconds
                let notAfter = now.adding(nanoseconds: window)
                let sealed = try wrapper.seal(key, slot: slot, created: now, notAfter: notAfter)
                let ttl = max(1000, (window + plan.schedule.rotationNanoseconds) / 1_000_000)
                _ = try connection.command([
                    Array("SET".utf8), Array(slot.utf8), sealed, Array("PX".utf8), Array("\(ttl)".utf8),
                ])
                out.append(Imported(path: path, nameHex: key.nameHex, slot: slot, written: true))
            }
        }
        return out
    }

    /// The outcome of ``rotate(now:)``.
    public struct Rotation: Sendable {
        public var epoch: Int64
        public var slot: String
        public var nameHex: String
        public var created: Bool
    }

    /// Creates the next epoch now: the first epoch after the current one (up to current + lookahead + 1) that has
    /// no key yet gets a fresh key with `SET NX`. If all are present, reports the furthest one (created = false).
    public func rotate(now: Timestamp) throws -> Rotation {
        let c = plan.epoch(at: now)
        var last: Rotation?
        for n in (c + 1)...(c + plan.lookahead + 1) {
            let slot = plan.slot(epoch: n)
            if case .bulk(let entry) = try connection.command("GET", slot) {
                let name = (try? wrapper.open(entry, slot: slot).key.nameHex) ?? "(does not open)"
                last = Rotation(epoch: n, slot: slot, nameHex: name, created: false)
                continue
            }
            let key = try TicketKey.random()
            let sealed = try wrapper.seal(key, slot: slot, created: now)
            let r = try connection.command([
                Array("SET".utf8), Array(slot.utf8), sealed, Array("NX".utf8), Array("PX".utf8),
                Array("\(plan.ttlMilliseconds(epoch: n, now: now))".utf8),
            ])
            if case .status = r { return Rotation(epoch: n, slot: slot, nameHex: key.nameHex, created: true) }
            if case .bulk(let entry) = try connection.command("GET", slot) {
                let name = (try? wrapper.open(entry, slot: slot).key.nameHex) ?? "(does not open)"
                return Rotation(epoch: n, slot: slot, nameHex: name, created: false)
            }
        }
        return last!
    }
}
