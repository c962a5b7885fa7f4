/// Why a ClientHello could not be parsed.
///
/// The input is untrusted: callers count these and fail the connection (or fingerprint it as "unparseable"); they
/// are never `precondition`s. Offsets of record-level errors are relative to the start of the input; offsets of
/// handshake-level errors are relative to the first byte (the type byte) of the reassembled handshake message.
public enum ClientHelloParseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The part of the hello an error points at.
    public enum Field: String, Sendable, Equatable {
        case recordHeader = "record header"
        case record = "record payload"
        case handshakeHeader = "handshake header"
        case handshake = "handshake message"
        case legacyVersion = "legacy_version"
        case random = "random"
        case sessionID = "session_id"
        case cipherSuites = "cipher_suites"
        case compressionMethods = "compression_methods"
        case extensions = "extensions block"
        case extensionHeader = "extension header"
        case extensionBody = "extension body"
        case serverName = "server_name extension"
        case supportedVersions = "supported_versions extension"
        case supportedGroups = "supported_groups extension"
        case ecPointFormats = "ec_point_formats extension"
        case signatureAlgorithms = "signature_algorithms extension"
        case alpn = "application_layer_protocol_negotiation extension"
        case keyShare = "key_share extension"
        case sslv2Hello = "SSLv2-compatible ClientHello"
    }

    /// No bytes at all.
    case empty
    /// The input ends before `what` is complete: `needed` bytes were required at `offset`, `available` remained.
    case truncated(what: Field, offset: Int, needed: Int, available: Int)
    /// A length field disagrees with its container: it declares `declared` bytes where `actual` are available
    /// (the "length field lies" case; e.g. a cipher list longer than the hello, an extension longer than the block).
    case lengthMismatch(what: Field, offset: Int, declared: Int, actual: Int)
    /// A vector whose length is impossible for its element size or bounds (odd cipher list, session id > 32,
    /// empty ALPN protocol name...).
    case badVectorLength(what: Field, offset: Int, length: Int)
    /// A record whose content type is not handshake (22), or whose version is not 3.x.
    case notHandshakeRecord(contentType: UInt8, version: UInt16, offset: Int)
    /// The handshake message is not a ClientHello (type 1).
    case notClientHello(handshakeType: UInt8)
    /// A record longer than 2^14 bytes or a handshake message longer than `ClientHello.maxHandshakeLength`.
    case oversized(what: Field, length: Int, limit: Int)
    /// The same extension type appears twice (RFC 8446 §4.2 forbids it; OpenSSL rejects such hellos).
    case duplicateExtension(type: UInt16, offset: Int)
    /// Bytes follow the end of `what`.
    case trailingBytes(what: Field, offset: Int, count: Int)

    public var description: String {
        switch self {
        case .empty:
            return "ClientHello: empty input"
        case .truncated(let what, let offset, let needed, let available):
            return
                "ClientHello: truncated at offset \(offset) in \(what.rawValue): need \(needed) bytes, \(available) left"
        case .lengthMismatch(let what, let offset, let declared, let actual):
            return
                "ClientHello: length field of \(what.rawValue) at offset \(offset) lies: declares \(declared) bytes, container has \(actual)"
        case .badVectorLength(let what, let offset, let length):
            return "ClientHello: bad vector length \(length) for \(what.rawValue) at offset \(offset)"
        case .notHandshakeRecord(let contentType, let version, let offset):
            return
                "ClientHello: record at offset \(offset) is not a TLS handshake record (content type \(contentType), version 0x\(hex16(version)))"
        case .notClientHello(let type):
            return "ClientHello: handshake message type \(type) is not a ClientHello (1)"
        case .oversized(let what, let length, let limit):
            return "ClientHello: \(what.rawValue) of \(length) bytes exceeds the limit of \(limit)"
        case .duplicateExtension(let type, let offset):
            return "ClientHello: duplicate extension type \(type) (0x\(hex16(type))) at offset \(offset)"
        case .trailingBytes(let what, let offset, let count):
            return "ClientHello: \(count) trailing bytes after \(what.rawValue) at offset \(offset)"
        }
    }
}

private func hex16(_ v: UInt16) -> String {
    let digits: [Character] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f"]
    return String([digits[Int(v >> 12)], digits[Int(v >> 8 & 0xf)], digits[Int(v >> 4 & 0xf)], digits[Int(v & 0xf)]])
}
