/// A parsed TLS ClientHello, in wire order, GREASE values kept.
///
/// Produced by `ClientHello.parse(handshake:)` / `ClientHello.parse(records:)` from raw bytes captured on the
/// connection (OpenSSL 3.0's own extension API drops unknown extensions, so we parse ourselves).
/// Every list keeps the order and the GREASE values the client sent; `features` gives the normalised view.
public struct ClientHello: Sendable, Equatable {
    /// One extension as sent: its type and its raw body.
    public struct Extension: Sendable, Equatable {
        public var type: UInt16
        public var body: [UInt8]
        public init(type: UInt16, body: [UInt8]) {
            self.type = type
            self.body = body
        }
    }

    /// Record-layer version of the first record, when the input was a record (nil for a bare handshake message).
    public var recordVersion: UInt16?
    /// `legacy_version` of the ClientHello body.
    public var legacyVersion: UInt16
    public var sessionIDLength: Int
    public var cipherSuites: [UInt16]
    public var compressionMethods: [UInt8]
    public var extensions: [Extension]

    // Decoded extension bodies (nil / empty when the extension is absent).
    public var serverName: String?
    public var supportedVersions: [UInt16]?
    public var supportedGroups: [UInt16]
    public var ecPointFormats: [UInt8]
    public var signatureAlgorithms: [UInt16]
    public var alpn: [String]
    public var keyShareGroups: [UInt16]
    /// True when the hello arrived in the SSLv2-compatible CLIENT-HELLO format (RFC 6101 appendix E.2; old IE/Java):
    /// `cipherSuites` then holds the 3-byte specs whose first byte is 0, as 16-bit suites, and there are no extensions.
    public var isSSLv2Compatible: Bool = false

    public init(
        recordVersion: UInt16? = nil,
        legacyVersion: UInt16,
        sessionIDLength: Int = 0,
        cipherSuites: [UInt16],
        compressionMethods: [UInt8] = [0],
        extensions: [Extension],
        serverName: String? = nil,
        supportedVersions: [UInt16]? = nil,
        supportedGroups: [UInt16] = [],
        ecPointFormats: [UInt8] = [],
        signatureAlgorithms: [UInt16] = [],
        alpn: [String] = [],
        keyShareGroups: [UInt16] = []
    ) {
        self.recordVersion = recordVersion
        self.legacyVersion = legacyVersion
        self.sessionIDLength = sessionIDLength
        self.cipherSuites = cipherSuites
        self.compressionMethods = compressionMethods
        self.extensions = extensions
        self.serverName = serverName
        self.supportedVersions = supportedVersions
        self.supportedGroups = supportedGroups
        self.ecPointFormats = ecPointFormats
        self.signatureAlgorithms = signatureAlgorithms
        self.alpn = alpn
        self.keyShareGroups = keyShareGroups
    }

    /// True for the 16 reserved GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa.
    @inlinable
    public static func isGREASE(_ v: UInt16) -> Bool {
        (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff)
    }
}
