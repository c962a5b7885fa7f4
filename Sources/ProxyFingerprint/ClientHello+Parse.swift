// The ClientHello parser is hand-written rather than taken from OpenSSL: OpenSSL 3.0's ClientHello API drops every
// extension type it does not know (GREASE, compress_certificate, ALPS...), which makes JA3/JA4 wrong for browsers
// (TLS-NOTES.md). It runs once per handshake, so it is an index loop over raw bytes through `ByteReader`, which
// bounds-checks every read; lengths are validated against their container before anything is allocated.

extension ClientHello {
    /// Largest ClientHello accepted (4-byte header excluded): OpenSSL 3.0's own limit (`CLIENT_HELLO_MAX_LENGTH` in
    /// `ssl/statem/statem_local.h`), so the parser never refuses a hello OpenSSL would negotiate. Real hellos are
    /// < 2 KiB, but a legal one may carry 32,767 cipher suites, a 64 KiB extensions block and 255 compression methods
    /// (tlsfuzzer's `test-client-hello-max-size.py`); an earlier 64 KiB cap here failed such handshakes with
    /// decode_error (issue 15, item 12). Everything the parser and the fingerprints do is linear in this size.
    public static let maxHandshakeLength = 131_396
    /// Largest TLS plaintext record accepted (RFC 8446 §5.1: 2^14).
    public static let maxRecordLength = 16_384

    typealias ParseError = ClientHelloParseError

    // MARK: - Entry points

    /// Parses a bare handshake message: type 0x01, 3-byte length, ClientHello body. The input must be exactly one
    /// message (trailing bytes are an error). What `SSL_CTX_set_msg_callback` hands over for content type 22.
    /// Extension bodies share `handshake`'s storage (no copy).
    public static func parse(handshake: [UInt8]) throws(ClientHelloParseError) -> ClientHello {
        try withBytes(handshake) { buf throws(ParseError) in
            try parseMessage(buf, recordVersion: nil, backing: handshake)
        }
    }

    /// `body` over the array's bytes with a typed error. (`Array.withUnsafeBytes` only `rethrows`: carrying the hello
    /// out in a `Result` to keep the error type cost one more whole-hello copy per parse.)
    @inline(__always)
    private static func withBytes<T>(
        _ bytes: [UInt8],
        _ body: (UnsafeRawBufferPointer) throws(ParseError) -> T
    ) throws(ParseError) -> T {
        try bytes.withUnsafeBufferPointer { b throws(ParseError) in try body(UnsafeRawBufferPointer(b)) }
    }

    /// Parses a bare handshake message from borrowed memory (the live path: the message callback's buffer).
    /// Nothing in the result refers to `handshake` after the call returns.
    public static func parse(handshake: UnsafeRawBufferPointer) throws(ClientHelloParseError) -> ClientHello {
        try parseMessage(handshake, recordVersion: nil)
    }

    /// Parses one or more TLS records of content type 22 carrying one ClientHello, reassembling it when it is
    /// fragmented across records. `recordVersion` is the version of the first record. The input must end with the
    /// record that completes the hello: bytes after the hello, in that record or after it, are an error.
    public static func parse(records: [UInt8]) throws(ClientHelloParseError) -> ClientHello {
        try withBytes(records) { buf throws(ParseError) in try parse(records: buf) }
    }

    /// Record-layer variant of `parse(records:)` over borrowed memory (e.g. bytes read with `MSG_PEEK`).
    public static func parse(records buf: UnsafeRawBufferPointer) throws(ClientHelloParseError) -> ClientHello {
        let (hello, consumed) = try parsePrefix(records: buf)
        if consumed < buf.count { throw .trailingBytes(what: .record, offset: consumed, count: buf.count - consumed) }
        return hello
    }

    /// Like `parse(records:)`, but stops after the record that completes the hello and returns how many bytes that
    /// was, leaving later records (a 0-RTT client's ChangeCipherSpec and early data) alone: for callers that
    /// `MSG_PEEK` the socket and cannot know record boundaries in advance. Bytes after the hello *inside* its last
    /// record are still an error (a second handshake message is never valid there).
    public static func parsePrefix(
        records buf: UnsafeRawBufferPointer
    ) throws(ClientHelloParseError) -> (hello: ClientHello, consumed: Int) {
        guard !buf.isEmpty else { throw .empty }
        var pos = 0
        var firstVersion: UInt16 = 0
        // Only a fragmented hello is copied; the usual single-record hello is parsed in place.
        var assembled: [UInt8] = []
        var inPlace: Range<Int>? = nil
        var total = -1  // handshake message length including its header, once known
        var extra = 0  // bytes after the message inside the last record
        while true {
            guard buf.count - pos >= 5 else {
                throw .truncated(what: .recordHeader, offset: pos, needed: 5, available: buf.count - pos)
            }
            let contentType = buf[pos]
            let version = UInt16(buf[pos + 1]) << 8 | UInt16(buf[pos + 2])
            let length = Int(buf[pos + 3]) << 8 | Int(buf[pos + 4])
            guard contentType == 22, version >> 8 == 3 else {
                throw .notHandshakeRecord(contentType: contentType, version: version, offset: pos)
            }
            guard length <= maxRecordLength else {
                throw .oversized(what: .record, length: length, limit: maxRecordLength)
            }
            // RFC 8446 §5.1: zero-length handshake fragments must not be sent; accepting them would let an input
            // of empty records spin this loop for free.
            guard length > 0 else { throw .badVectorLength(what: .record, offset: pos + 3, length: 0) }
            guard buf.count - pos - 5 >= length else {
                throw .truncated(what: .record, offset: pos + 5, needed: length, available: buf.count - pos - 5)
            }
            let payload = (pos + 5)..<(pos + 5 + length)
            if pos == 0 {
                firstVersion = version
                if length >= 4 {
                    let h = payload.lowerBound
                    total = try messageTotal(buf[h], buf[h + 1], buf[h + 2], buf[h + 3])
                    if total <= length {
                        inPlace = payload.lowerBound..<(payload.lowerBound + total)
                        extra = length - total
                        pos += 5 + length
                        break
                    }
                    assembled.reserveCapacity(total)
                }
            }
            pos += 5 + length
            if total < 0 && assembled.count + length >= 4 {
                // The header is complete only now: peek at it across the fragments.
                var header: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0)
                withUnsafeMutableBytes(of: &header) { h in
                    for i in 0..<4 {
                        h[i] = i < assembled.count ? assembled[i] : buf[payload.lowerBound + i - assembled.count]
                    }
                }
                total = try messageTotal(header.0, header.1, header.2, header.3)
                assembled.reserveCapacity(total)
            }
            assembled.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[payload]))
            if total >= 0 && assembled.count >= total {
                extra = assembled.count - total
                break
            }
            if pos == buf.count {
                let needed = total >= 0 ? total - assembled.count : 4 - assembled.count
                throw .truncated(
                    what: total >= 0 ? .handshake : .handshakeHeader,
                    offset: assembled.count,
                    needed: needed,
                    available: 0
                )
            }
        }
        if extra > 0 { throw .trailingBytes(what: .handshake, offset: pos - extra, count: extra) }
        let hello: ClientHello  // parseMessage sets recordVersion
        if let inPlace {
            hello = try parseMessage(UnsafeRawBufferPointer(rebasing: buf[inPlace]), recordVersion: firstVersion)
        } else {
            hello = try withBytes(assembled) { m throws(ParseError) in
                try parseMessage(UnsafeRawBufferPointer(rebasing: m[0..<total]), recordVersion: firstVersion)
            }
        }
        return (hello, pos)
    }

    /// Auto-detects the framing: a TLS record (first byte 22), a bare handshake message (first byte 1) or an
    /// SSLv2-compatible CLIENT-HELLO (high bit set, message type 1 — still accepted by OpenSSL for TLS ≤ 1.2).
    public static func parse(bytes: [UInt8]) throws(ClientHelloParseError) -> ClientHello {
        try withBytes(bytes) { buf throws(ParseError) in try parse(bytes: buf) }
    }

    /// `parse(bytes:)` over borrowed memory.
    public static func parse(bytes buf: UnsafeRawBufferPointer) throws(ClientHelloParseError) -> ClientHello {
        guard !buf.isEmpty else { throw .empty }
        switch buf[0] {
        case 22: return try parse(records: buf)
        case 1: return try parseMessage(buf, recordVersion: nil)
        case let b where b & 0x80 != 0 && buf.count >= 3 && buf[2] == 1: return try parseSSLv2(buf)
        default:
            let version = buf.count >= 3 ? UInt16(buf[1]) << 8 | UInt16(buf[2]) : 0
            throw .notHandshakeRecord(contentType: buf[0], version: version, offset: 0)
        }
    }

    // MARK: - Handshake message

    /// Checks a handshake header (type, 24-bit length) and returns the whole message length (header included).
    /// `ClientHelloShape` frames with it too.
    @inline(__always)
    static func messageTotal(_ type: UInt8, _ l0: UInt8, _ l1: UInt8, _ l2: UInt8) throws(ParseError) -> Int {
        guard type == 1 else { throw .notClientHello(handshakeType: type) }
        let length = Int(l0) << 16 | Int(l1) << 8 | Int(l2)
        guard length <= maxHandshakeLength else {
            throw .oversized(what: .handshake, length: length, limit: maxHandshakeLength)
        }
        return 4 + length
    }

    /// `backing`, when given, is the array `buf` points into (same indices): extension bodies then refer to it
    /// instead of to a copy of the extensions block.
    private static func parseMessage(
        _ buf: UnsafeRawBufferPointer,
        recordVersion: UInt16?,
        backing: [UInt8]? = nil
    ) throws(ParseError) -> ClientHello {
        guard !buf.isEmpty else { throw .empty }
        guard buf.count >= 4 else {
            if buf[0] != 1 { throw .notClientHello(handshakeType: buf[0]) }
            throw .truncated(what: .handshakeHeader, offset: 0, needed: 4, available: buf.count)
        }
        let total = try messageTotal(buf[0], buf[1], buf[2], buf[3])
        guard buf.count >= total else {
            throw .truncated(what: .handshake, offset: 4, needed: total - 4, available: buf.count - 4)
        }
        guard buf.count == total else {
            throw .trailingBytes(what: .handshake, offset: total, count: buf.count - total)
        }

        var r = ByteReader(buf, from: 4, to: total)
        let legacyVersion = try r.u16(.legacyVersion)
        try r.skip(32, .random)
        let sessionID = try r.vector(lengthBytes: 1, .sessionID)
        guard sessionID.remaining <= 32 else {
            throw .badVectorLength(what: .sessionID, offset: sessionID.pos - 1, length: sessionID.remaining)
        }
        var ciphers = try r.vector(lengthBytes: 2, .cipherSuites)
        let cipherSuites = try ciphers.u16List(.cipherSuites)
        var compression = try r.vector(lengthBytes: 1, .compressionMethods)

        let compressionMethods = compression.bytes()
        // Built once, at the end, from locals: a `var hello` filled in through the loop cost one more whole-struct
        // copy per parse (every array retained and released).
        func hello(_ d: Decoded, _ extensions: [Extension]) -> ClientHello {
            ClientHello(
                recordVersion: recordVersion,
                legacyVersion: legacyVersion,
                sessionIDLength: sessionID.remaining,
                cipherSuites: cipherSuites,
                compressionMethods: compressionMethods,
                extensions: extensions,
                serverName: d.serverName,
                supportedVersions: d.supportedVersions,
                supportedGroups: d.supportedGroups,
                ecPointFormats: d.ecPointFormats,
                signatureAlgorithms: d.signatureAlgorithms,
                alpn: d.alpn,
                keyShareGroups: d.keyShareGroups
            )
        }
        // SSLv3/TLS 1.0 hellos may end here: no extensions block at all.
        if r.isAtEnd { return hello(Decoded(), []) }

        let blockLengthOffset = r.pos
        var block = try r.vector(lengthBytes: 2, .extensions)
        if !r.isAtEnd {
            throw .lengthMismatch(
                what: .extensions,
                offset: blockLengthOffset,
                declared: block.remaining,
                actual: total - blockLengthOffset - 2
            )
        }
        if block.isAtEnd { return hello(Decoded(), []) }
        // One array holds every extension body: the caller's, or one copy of the block.
        let storage: [UInt8]
        let base: Int
        if let backing {
            storage = backing
            base = 0
        } else {
            storage = [UInt8](UnsafeRawBufferPointer(rebasing: buf[block.pos..<block.end]))
            base = block.pos
        }
        var decoded = Decoded()
        var extensions: [Extension] = []
        extensions.reserveCapacity(24)
        var seen: Set<UInt16>? = nil  // only for absurd extension counts; a linear scan is cheaper below that
        while !block.isAtEnd {
            let typeOffset = block.pos
            let type = try block.u16(.extensionHeader)
            let body = try block.vector(lengthBytes: 2, .extensionBody)
            if extensions.count < 32 {
                for e in extensions where e.type == type {
                    throw .duplicateExtension(type: type, offset: typeOffset)
                }
            } else {
                if seen == nil { seen = Set(extensions.lazy.map(\.type)) }
                if seen!.insert(type).inserted == false { throw .duplicateExtension(type: type, offset: typeOffset) }
            }
            try decode(type: type, body, into: &decoded)
            extensions.append(Extension(type: type, storage: storage, range: (body.pos - base)..<(body.end - base)))
        }
        return hello(decoded, extensions)
    }

    /// The extension bodies `decode` reads, filled in as the extensions go by.
    private struct Decoded {
        var serverName: String? = nil
        var supportedVersions: [UInt16]? = nil
        var supportedGroups: [UInt16] = []
        var ecPointFormats: [UInt8] = []
        var signatureAlgorithms: [UInt16] = []
        var alpn: [String] = []
        var keyShareGroups: [UInt16] = []
    }

    /// Decodes the bodies the fingerprints and policy read. A malformed body of one of these is an error (OpenSSL
    /// would reject the hello anyway); other extension types are kept raw only.
    private static func decode(type: UInt16, _ body: ByteReader, into found: inout Decoded) throws(ParseError) {
        var r = body
        switch type {
        case 0:  // server_name (RFC 6066). An empty body is accepted: it is the RFC's server-side form, and the
            // fixture builder emits it when only the extension's presence is known.
            if r.isAtEnd { return }
            var list = try r.exactVector(lengthBytes: 2, .serverName)
            while !list.isAtEnd {
                let nameType = try list.u8(.serverName)
                var name = try list.vector(lengthBytes: 2, .serverName)
                if nameType == 0 && found.serverName == nil {
                    guard !name.isAtEnd else {
                        throw .badVectorLength(what: .serverName, offset: name.pos - 2, length: 0)
                    }
                    found.serverName = name.string()
                }
            }
        case 43:  // supported_versions, ClientHello form: 1-byte length of 2-byte versions
            var list = try r.exactVector(lengthBytes: 1, .supportedVersions)
            found.supportedVersions = try list.u16List(.supportedVersions)
        case 10:
            var list = try r.exactVector(lengthBytes: 2, .supportedGroups)
            found.supportedGroups = try list.u16List(.supportedGroups)
        case 11:
            var list = try r.exactVector(lengthBytes: 1, .ecPointFormats)
            found.ecPointFormats = list.bytes()
        case 13:
            var list = try r.exactVector(lengthBytes: 2, .signatureAlgorithms)
            found.signatureAlgorithms = try list.u16List(.signatureAlgorithms)
        case 16:
            var list = try r.exactVector(lengthBytes: 2, .alpn)
            while !list.isAtEnd {
                var name = try list.vector(lengthBytes: 1, .alpn)
                // RFC 7301: ProtocolName<1..2^8-1>
                guard !name.isAtEnd else { throw .badVectorLength(what: .alpn, offset: name.pos - 1, length: 0) }
                found.alpn.append(name.string())
            }
        case 51:  // key_share, ClientHello form: client_shares<0..2^16-1> of (group, key_exchange<1..2^16-1>)
            var list = try r.exactVector(lengthBytes: 2, .keyShare)
            while !list.isAtEnd {
                let group = try list.u16(.keyShare)
                _ = try list.vector(lengthBytes: 2, .keyShare)
                found.keyShareGroups.append(group)
            }
        default:
            break
        }
    }

    // MARK: - SSLv2-compatible CLIENT-HELLO

    private static func parseSSLv2(_ buf: UnsafeRawBufferPointer) throws(ParseError) -> ClientHello {
        guard buf.count >= 2 else { throw .truncated(what: .sslv2Hello, offset: 0, needed: 2, available: buf.count) }
        let length = Int(buf[0] & 0x7f) << 8 | Int(buf[1])
        guard buf.count - 2 >= length else {
            throw .truncated(what: .sslv2Hello, offset: 2, needed: length, available: buf.count - 2)
        }
        guard buf.count - 2 == length else {
            throw .trailingBytes(what: .sslv2Hello, offset: 2 + length, count: buf.count - 2 - length)
        }
        var r = ByteReader(buf, from: 2, to: buf.count)
        let type = try r.u8(.sslv2Hello)
        guard type == 1 else { throw .notClientHello(handshakeType: type) }
        let version = try r.u16(.sslv2Hello)
        let specsOffset = r.pos
        let specsLength = Int(try r.u16(.sslv2Hello))
        let sessionIDLength = Int(try r.u16(.sslv2Hello))
        let challengeLength = Int(try r.u16(.sslv2Hello))
        guard specsLength % 3 == 0 else {
            throw .badVectorLength(what: .sslv2Hello, offset: specsOffset, length: specsLength)
        }
        guard sessionIDLength <= 32 else {
            throw .badVectorLength(what: .sslv2Hello, offset: specsOffset + 2, length: sessionIDLength)
        }
        guard (16...32).contains(challengeLength) else {
            throw .badVectorLength(what: .sslv2Hello, offset: specsOffset + 4, length: challengeLength)
        }
        let declared = specsLength + sessionIDLength + challengeLength
        guard declared == r.remaining else {
            throw .lengthMismatch(what: .sslv2Hello, offset: specsOffset, declared: declared, actual: r.remaining)
        }
        var suites: [UInt16] = []
        suites.reserveCapacity(specsLength / 3)
        var i = r.pos
        while i < r.pos + specsLength {
            // Only specs of the form 00 xx yy name TLS cipher suites (what OpenSSL keeps, RFC 5246 E.2).
            if buf[i] == 0 { suites.append(UInt16(buf[i + 1]) << 8 | UInt16(buf[i + 2])) }
            i += 3
        }
        var hello = ClientHello(
            legacyVersion: version,
            sessionIDLength: sessionIDLength,
            cipherSuites: suites,
            compressionMethods: [0],
            extensions: []
        )
        hello.isSSLv2Compatible = true
        return hello
    }
}
