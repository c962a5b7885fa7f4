// ProxyTicketStore: the Redis side of fleet-wide ticket keys — a blocking hiredis connection, the sync thread that
// feeds a FleetKeySource, and the `edgeproxy keys` operations.
// Its own target (not inside ProxyTickets) so that ProxyTickets stays sans-IO and testable with values only, and so
// hiredis is imported privately from exactly this one target. hiredis rather than a hand-written RESP client: it is
// the reference C client, packaged by Debian, and its blocking API with timeouts is what a dedicated thread wants.
internal import CHiredis
import Glibc

/// Where a Redis server is and how to log in (from `redis://[user:password@]host:port[/db]`).
public struct RedisEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// ACL user (Redis 6+); nil means `AUTH password` (or no AUTH without a password).
    public var username: String?
    public var password: String?
    public var database: Int

    public init(host: String, port: Int, username: String? = nil, password: String? = nil, database: Int = 0) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
    }

    /// `host:port/db`, never the password.
    public var description: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "\(username.map { "\($0)@" } ?? "")\(h):\(port)\(database == 0 ? "" : "/\(database)")"
    }
}

/// A failure talking to Redis. Messages never contain the password or key material.
public enum RedisError: Error, Sendable, CustomStringConvertible {
    /// Could not connect (refused, timeout, resolution); carries hiredis' message.
    case connect(endpoint: String, message: String)
    /// The connection broke or timed out during a command.
    case io(endpoint: String, message: String)
    /// Redis answered with an error reply (e.g. `WRONGPASS`, `NOAUTH`, `READONLY`).
    case reply(endpoint: String, message: String)
    /// A reply of an unexpected shape.
    case protocolError(endpoint: String, message: String)

    public var description: String {
        switch self {
        case .connect(let e, let m): "cannot connect to redis \(e): \(m)"
        case .io(let e, let m): "redis \(e): \(m)"
        case .reply(let e, let m): "redis \(e) replied: \(m)"
        case .protocolError(let e, let m): "redis \(e): unexpected reply: \(m)"
        }
    }
}

/// A decoded Redis reply (RESP2).
public indirect enum RedisReply: Sendable, Equatable {
    case null
    case status(String)
    case integer(Int64)
    case bulk([UInt8])
    case array([RedisReply])
}

/// One blocking connection with connect and command timeouts. Not thread-safe: one owner thread (the sync thread,
/// or the CLI). After any I/O error the connection is closed; the next ``command(_:)`` reconnects.
public final class RedisConnection {
    public let endpoint: RedisEndpoint
    let connectTimeout: timeval
    let commandTimeout: timeval
    private var context: UnsafeMutablePointer<redisContext>?

    public init(endpoint: RedisEndpoint, connectTimeoutNanoseconds: Int64, commandTimeoutNanoseconds: Int64) {
        self.endpoint = endpoint
        connectTimeout = Self.tv(connectTimeoutNanoseconds)
        commandTimeout = Self.tv(commandTimeoutNanoseconds)
    }

    deinit { close() }

    public var isConnected: Bool { context != nil }

    public func close() {
        if let c = context { redisFree(c) }
        context = nil
    }

    /// Connects (if needed), authenticates and selects the database.
    public func connect() throws(RedisError) {
        if context != nil { return }
        guard let c = redisConnectWithTimeout(endpoint.host, Int32(endpoint.port), connectTimeout) else {
            throw .connect(endpoint: "\(endpoint)", message: "out of memory")
        }
        if c.pointee.err != 0 {
            let m = Self.errstr(c)
            redisFree(c)
            throw .connect(endpoint: "\(endpoint)", message: m)
        }
        _ = redisSetTimeout(c, commandTimeout)
        context = c
        if let pw = endpoint.password {
            var args = ["AUTH"]
            if let u = endpoint.username { args.append(u) }
            args.append(pw)
            _ = try commandOrThrow(args.map { Array($0.utf8) }, what: "AUTH")
        }
        if endpoint.database != 0 {
            _ = try commandOrThrow([Array("SELECT".utf8), Array("\(endpoint.database)".utf8)], what: "SELECT")
        }
    }

    /// Sends one command (binary-safe arguments) and returns the reply; an error reply is returned as a thrown
    /// ``RedisError/reply(endpoint:message:)``.
    public func command(_ args: [[UInt8]]) throws(RedisError) -> RedisReply {
        try connect()
        return try commandOrThrow(args, what: args.first.map { String(decoding: $0, as: UTF8.self) } ?? "")
    }

    /// Convenience for text arguments.
    public func command(_ args: String...) throws(RedisError) -> RedisReply {
        try command(args.map { Array($0.utf8) })
    }

    private func commandOrThrow(_ args: [[UInt8]], what: String) throws(RedisError) -> RedisReply {
        guard let c = context else { throw .io(endpoint: "\(endpoint)", message: "not connected") }
        // Build argv/argvlen pointing into stable copies (redisCommandArgv copies them into its output buffer).
        let storage = args.map { a -> UnsafeMutablePointer<CChar> in
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: max(1, a.count))
            a.withUnsafeBytes {
                if $0.count > 0 { UnsafeMutableRawPointer(p).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            }
            return p
        }
        defer {
            // Arguments may hold sealed entries (not secret) or a password: wipe before freeing anyway.
            for (p, a) in zip(storage, args) {
                explicit_bzero(p, max(1, a.count))
                p.deallocate()
            }
        }
        var argv: [UnsafePointer<CChar>?] = storage.map { UnsafePointer($0) }
        var lens: [Int] = args.map(\.count)
        let raw = argv.withUnsafeMutableBufferPointer { av in
            lens.withUnsafeMutableBufferPointer { lv in
                redisCommandArgv(c, Int32(args.count), av.baseAddress, lv.baseAddress)
            }
        }
        guard let raw else {
            let m = c.pointee.err != 0 ? Self.errstr(c) : "no reply"
            close()
            throw .io(endpoint: "\(endpoint)", message: "\(what): \(m)")
        }
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        defer { freeReplyObject(raw) }
        if reply.pointee.type == REDIS_REPLY_ERROR {
            throw .reply(endpoint: "\(endpoint)", message: "\(what): \(Self.text(reply))")
        }
        return Self.decode(reply)
    }

    private static func decode(_ r: UnsafeMutablePointer<redisReply>) -> RedisReply {
        switch r.pointee.type {
        case REDIS_REPLY_NIL: return .null
        case REDIS_REPLY_STATUS: return .status(text(r))
        case REDIS_REPLY_INTEGER: return .integer(Int64(r.pointee.integer))
        case REDIS_REPLY_STRING:
            guard let s = r.pointee.str else { return .bulk([]) }
            return .bulk([UInt8](UnsafeRawBufferPointer(start: s, count: Int(r.pointee.len))))
        case REDIS_REPLY_ARRAY:
            var out: [RedisReply] = []
            for i in 0..<Int(r.pointee.elements) {
                if let e = r.pointee.element[i] { out.append(decode(e)) } else { out.append(.null) }
            }
            return .array(out)
        default: return .null
        }
    }

    private static func text(_ r: UnsafeMutablePointer<redisReply>) -> String {
        guard let s = r.pointee.str else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: s, count: Int(r.pointee.len)), as: UTF8.self)
    }

    private static func errstr(_ c: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: c.pointee.errstr) { b in
            String(decoding: b.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    private static func tv(_ ns: Int64) -> timeval {
        timeval(tv_sec: Int(ns / 1_000_000_000), tv_usec: Int((ns % 1_000_000_000) / 1000))
    }
}
