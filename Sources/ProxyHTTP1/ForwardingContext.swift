/// Per-connection settings for rewriting a client's request head toward the origin. Build it once when the
/// connection is accepted (the client address text is formatted then); `HTTP1Writer.appendRequestHead` reads it
/// for every request without allocating.
public struct ForwardingContext: Sendable {
    /// The client's IP address as text, without brackets or port (`192.0.2.1`, `2001:db8::1`). An address holding
    /// ":" is written as IPv6 (`for="[2001:db8::1]"` in Forwarded). Empty means unknown.
    public var clientAddress: [UInt8]
    /// The scheme the client used: `https` for TLS-terminated traffic.
    public var proto: [UInt8]
    /// Append the client address to X-Forwarded-For (merging any existing values into one line, in order).
    public var appendXForwardedFor: Bool
    /// Replace any X-Forwarded-Proto with `proto`.
    public var setXForwardedProto: Bool
    /// Append `for=...;proto=...;host=...` to Forwarded (RFC 7239), merged like X-Forwarded-For.
    public var appendForwarded: Bool
    /// Our Via entry (`1.1 edgeproxy`): added as a separate Via line after the client's (equivalent to appending).
    public var via: [UInt8]
    /// Inbound fields removed before forwarding (spoofable fingerprint headers, or X-Forwarded-For/Forwarded to
    /// distrust whatever the client claimed). Removed before the merges above.
    public var stripped: HeaderNameList
    /// Complete field lines (`Name: value\r\n`...) appended verbatim to every forwarded head.
    public var extraHeaderLines: [UInt8]
    /// Host sent when an HTTP/1.0 client sent none (HTTP/1.1 toward the origin requires one). May be empty.
    public var defaultHost: [UInt8]

    /// A context with the usual settings: X-Forwarded-For, X-Forwarded-Proto, Forwarded and Via all on.
    public init(
        clientAddress: [UInt8],
        proto: [UInt8] = Array("https".utf8),
        appendXForwardedFor: Bool = true,
        setXForwardedProto: Bool = true,
        appendForwarded: Bool = true,
        via: [UInt8] = Array("1.1 edgeproxy".utf8),
        stripped: HeaderNameList = HeaderNameList(),
        extraHeaderLines: [UInt8] = [],
        defaultHost: [UInt8] = []
    ) {
        self.clientAddress = clientAddress
        self.proto = proto
        self.appendXForwardedFor = appendXForwardedFor
        self.setXForwardedProto = setXForwardedProto
        self.appendForwarded = appendForwarded
        self.via = via
        self.stripped = stripped
        self.extraHeaderLines = extraHeaderLines
        self.defaultHost = defaultHost
    }
}
