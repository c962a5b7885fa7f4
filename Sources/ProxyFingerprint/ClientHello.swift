/// A parsed TLS ClientHello, in wire order, GREASE values kept.
///
/// Produced by `ClientHello.parse(handshake:)` / `ClientHello.parse(records:)` from raw bytes captured on the
/// connection (OpenSSL 3.0's own extension API drops unknown extensions, so we parse ourselves).
/// Every list keeps the order and the GREASE values the client sent; `features` gives the normalised view.
public struct ClientHello: Sendable, Equatable {
    /// One extension as sent: its type and its raw body.
    ///
    /// A parsed hello's extensions all share one byte array (the captured message when the caller passed an array,
    /// else one copy of the extensions block) and keep only their range of it: a per-extension copy cost a malloc and
    /// a free for each of a browser's ~16 extensions on every handshake. `body` copies on read; `withBody` does not.
    public struct Extension: Sendable, Equatable {
        public var type: UInt16
        private var storage: [UInt8]
        private var range: Range<Int>

        public init(type: UInt16, body: [UInt8]) {
            self.type = type
            self.storage = body
            self.range = body.indices
        }

        /// An extension whose body is `storage[range]` (the parser's shared form).
        init(type: UInt16, storage: [UInt8], range: Range<Int>) {
            self.type = type
            self.storage = storage
            self.range = range
        }

        /// The raw body, as an array of its own.
        public var body: [UInt8] {
            get { range == storage.indices ? storage : Array(storage[range]) }
            set {
                storage = newValue
                range = newValue.indices
            }
        }

        /// The body's length, without copying it.
        public var bodyCount: Int { range.count }

        /// Calls `body` with the raw body in place (no copy); the pointer is valid only inside the call.
        public func withBody<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
            try storage.withUnsafeBytes { all in try body(UnsafeRawBufferPointer(rebasing: all[range])) }
        }

        public static func == (a: Extension, b: Extension) -> Bool {
            a.type == b.type && a.storage[a.range].elementsEqual(b.storage[b.range])
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
