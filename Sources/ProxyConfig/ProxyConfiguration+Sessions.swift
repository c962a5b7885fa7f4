import ProxyCore
import ProxyTOMLSupport

/// Where TLS sessions are cached for session-ID resumption (`[sessions] cache`).
public enum SessionCacheMode: String, Sendable, CaseIterable {
    /// No cache: clients without tickets always get a full handshake.
    case off
    /// One cache shared by all workers of this process.
    case local
    /// Shared by the fleet through Redis (`[redis]`: url, wrapping key, key prefix), sealed with AES-256-GCM, with a
    /// short local cache in front.
    case redis
}

extension ProxyConfiguration {
    /// `[sessions]`: the server-side session cache (session-ID resumption, RFC 5246 §7.4.1.2) for clients that send
    /// no session ticket extension (SChannel on Windows 7/8) or whose tickets a policy turned off.
    public struct Sessions: Sendable, Equatable {
        public var cache = SessionCacheMode.local
        /// Entries at most (each takes one 512-byte slot; see the README for the memory bound).
        public var size = 20_000
        /// How long a session can be resumed after the full handshake that made it. Written explicitly it must not
        /// exceed `tickets.lifetime`; the default is cut to it (see ``ProxyConfiguration/effectiveSessionTimeout``).
        public var timeout = ConfigDuration.minutes(5)
        /// `timeout` was written in the file (a value above `tickets.lifetime` is then an error, not cut).
        var timeoutWasSet = false

        public init() {}

        /// Equal settings, whether or not `timeout` was written (a file with the default value equals the default).
        public static func == (a: Sessions, b: Sessions) -> Bool {
            a.cache == b.cache && a.size == b.size && a.timeout == b.timeout
        }
    }

    /// The session timeout in force: `sessions.timeout`, at most `tickets.lifetime` (a session must not outlive what
    /// tickets promise; a short ticket lifetime cuts the default).
    public var effectiveSessionTimeout: ConfigDuration { min(sessions.timeout, tickets.lifetime) }

    /// Reads `[sessions]` (called from the schema reader).
    mutating func readSessions(_ t: inout TableReader) {
        if let v: SessionCacheMode = t.choice("cache") { sessions.cache = v }
        if let v = t.int("size") { sessions.size = v }
        if let v = t.duration("timeout") {
            sessions.timeout = v
            sessions.timeoutWasSet = true
        }
        t.finish()
    }

    /// The `[sessions]` rules.
    func sessionProblems(_ add: ([TOMLPath], String) -> Void) {
        if sessions.cache == .redis && redis == nil {
            add(
                [["sessions", "cache"]],
                "sessions.cache = \"redis\" needs a [redis] section with url and a wrapping key"
            )
        }
        if !(1...10_000_000).contains(sessions.size) {
            add([["sessions", "size"]], "sessions.size must be between 1 and 10000000 (got \(sessions.size))")
        }
        if sessions.timeout < .seconds(1) {
            add([["sessions", "timeout"]], "sessions.timeout must be at least 1s (got \(sessions.timeout))")
        } else if sessions.timeoutWasSet && sessions.timeout > tickets.lifetime {
            add(
                [["sessions", "timeout"], ["tickets", "lifetime"]],
                "sessions.timeout (\(sessions.timeout)) must not exceed tickets.lifetime (\(tickets.lifetime)): a "
                    + "session must not outlive the lifetime tickets promise"
            )
        }
    }
}
