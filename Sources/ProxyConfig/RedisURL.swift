import Foundation

/// A Redis server as written in `[redis] url` / `replica`: `redis://[user:password@]host[:port][/db]`.
///
/// The host is a DNS name, an IPv4 literal or a bracketed IPv6 literal; the port defaults to 6379, the database to 0.
/// User and password are percent-decoded; a user without a password is rejected (Redis has no password-less ACL
/// login over AUTH). `description` never shows the password.
public struct RedisURL: Sendable, Hashable, CustomStringConvertible {
    public var host: HostPort.Host
    public var port: UInt16
    public var username: String?
    public var password: String?
    public var database: Int

    public init(
        host: HostPort.Host,
        port: UInt16 = 6379,
        username: String? = nil,
        password: String? = nil,
        database: Int = 0
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
    }

    /// `redis://user:***@host:port/db` (password redacted).
    public var description: String {
        var auth = ""
        if let u = username {
            auth = u + (password != nil ? ":***" : "") + "@"
        } else if password != nil {
            auth = ":***@"
        }
        return "redis://\(auth)\(host):\(port)\(database == 0 ? "" : "/\(database)")"
    }

    static func parse(_ text: String) throws(ValueError) -> RedisURL {
        let shown = text.contains("@") ? "redis://…@" + (text.split(separator: "@").last.map(String.init) ?? "") : text
        guard text.hasPrefix("redis://") else {
            throw ValueError("\"\(shown)\" must be a URL like \"redis://127.0.0.1:6379\" (rediss:// is not supported)")
        }
        var rest = Substring(text.dropFirst("redis://".count))
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let db = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !db.isEmpty {
                guard let n = Int(db), n >= 0, n <= 1_000_000 else {
                    throw ValueError("\"\(shown)\": the database must be a number, got \"\(db)\"")
                }
                database = n
            }
        }
        var username: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let userinfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userinfo.firstIndex(of: ":") {
                let u = String(userinfo[..<colon])
                let p = String(userinfo[userinfo.index(after: colon)...])
                guard let du = u.removingPercentEncoding, let dp = p.removingPercentEncoding else {
                    throw ValueError("\"\(shown)\": bad percent-encoding in the user information")
                }
                username = du.isEmpty ? nil : du
                password = dp.isEmpty ? nil : dp
            } else {
                throw ValueError("\"\(shown)\": a user needs a password (redis://user:password@host)")
            }
        }
        guard !rest.isEmpty else { throw ValueError("\"\(shown)\": the host is missing") }
        let hp: HostPort
        do {
            if rest.hasSuffix("]") || !rest.contains(":") || (rest.hasPrefix("[") && !rest.contains("]:")) {
                hp = HostPort(host: try HostPort.Host.parse(String(rest)), port: 6379)
            } else {
                hp = try HostPort.parse(String(rest), allowPortZero: false)
            }
        } catch {
            throw ValueError("\"\(shown)\": \(error.message)")
        }
        return RedisURL(host: hp.host, port: hp.port, username: username, password: password, database: database)
    }
}
