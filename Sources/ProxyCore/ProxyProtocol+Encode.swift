import Glibc

// The sending side of the PROXY protocol (`proxy_protocol = "v1" | "v2"` on an upstream pool): the header EdgeProxy
// writes first on a new origin connection so the origin (nginx `listen ... proxy_protocol`, HAProxy `accept-proxy`)
// learns the real client. Same spec and same reasons for hand-writing as the parser in ProxyProtocol.swift.

extension ProxyProtocol {
    /// The PROXY protocol version a pool sends.
    public enum Version: String, Sendable, CaseIterable {
        case v1
        case v2
    }

    /// v2 TLV types EdgeProxy sends (HAProxy's spec, section 2.2).
    public enum TLV {
        /// PP2_TYPE_ALPN: the protocol the client negotiated (`h2`, `http/1.1`).
        public static let alpn: UInt8 = 0x01
        /// PP2_TYPE_AUTHORITY: the host name the client sent in SNI.
        public static let authority: UInt8 = 0x02
        /// PP2_TYPE_SSL: client flags, verify result, then sub-TLVs.
        public static let ssl: UInt8 = 0x20
        /// PP2_SUBTYPE_SSL_VERSION: the TLS version as text (`TLSv1.3`).
        public static let sslVersion: UInt8 = 0x21
        /// PP2_SUBTYPE_SSL_CIPHER: the cipher suite name (OpenSSL's).
        public static let sslCipher: UInt8 = 0x23
        /// The first of the spec's custom types (0xE0...0xEF): EdgeProxy puts the client's JA4 fingerprint here.
        public static let ja4: UInt8 = 0xE0
        /// PP2_CLIENT_SSL: the client connected over TLS.
        public static let clientSSL: UInt8 = 0x01
    }

    /// Which v2 TLVs a pool sends (`proxy_protocol_tlvs`; HAProxy's `proxy-v2-options`). None by default: nginx up to
    /// at least 1.22 refuses a v2 header longer than 107 bytes on a TLS listener ("header is too large").
    public struct TLVSet: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let alpn = TLVSet(rawValue: 1)
        public static let authority = TLVSet(rawValue: 2)
        public static let ssl = TLVSet(rawValue: 4)
        public static let ja4 = TLVSet(rawValue: 8)
        public static let all: TLVSet = [.alpn, .authority, .ssl, .ja4]
        /// The configuration names, in the order they are written.
        public static let names: [(String, TLVSet)] = [
            ("alpn", .alpn), ("authority", .authority), ("ssl", .ssl), ("ja4", .ja4),
        ]
    }

    /// What the TLS layer knew about the client, for the v2 TLVs (empty fields are left out).
    public struct TLSDetails: Equatable, Sendable {
        public var sni: String
        public var alpn: String
        public var version: String
        public var cipher: String
        public var ja4: String
        public init(sni: String = "", alpn: String = "", version: String = "", cipher: String = "", ja4: String = "") {
            self.sni = sni
            self.alpn = alpn
            self.version = version
            self.cipher = cipher
            self.ja4 = ja4
        }
    }

    /// The header of `version`; v1 carries no TLS details.
    public static func header(
        _ version: Version,
        source: Source?,
        destination: Source?,
        tls: TLSDetails? = nil,
        tlvs: TLVSet = .all
    ) -> [UInt8] {
        switch version {
        case .v1: encodeV1(source: source, destination: destination)
        case .v2: encodeV2(source: source, destination: destination, tls: tls, tlvs: tlvs)
        }
    }

    /// A v1 header (`PROXY TCP4 src dst sport dport\r\n`). Both addresses are written in one family: when they
    /// differ (an IPv4 client on an IPv6 listener), the IPv4 one is written IPv4-mapped. nil addresses (unknown)
    /// give `PROXY UNKNOWN\r\n`, which receivers accept and ignore (what health checks send).
    public static func encodeV1(source: Source?, destination: Source?) -> [UInt8] {
        guard let (src, dst) = sameFamily(source, destination) else { return Array("PROXY UNKNOWN\r\n".utf8) }
        let proto = src.address.count == 4 ? "TCP4" : "TCP6"
        return Array("PROXY \(proto) \(src.host) \(dst.host) \(src.port) \(dst.port)\r\n".utf8)
    }

    /// A v2 header: PROXY over TCP with both addresses, or LOCAL (no addresses: health checks) when either is
    /// unknown. `tls` adds those of ALPN, AUTHORITY (SNI), SSL (version and cipher) and the JA4 in custom type 0xE0
    /// that `tlvs` selects.
    public static func encodeV2(
        source: Source?,
        destination: Source?,
        tls: TLSDetails? = nil,
        tlvs: TLVSet = .all
    ) -> [UInt8] {
        var out = v2Signature
        guard let (src, dst) = sameFamily(source, destination) else {
            out += [0x20, 0x00, 0x00, 0x00]  // version 2, LOCAL; UNSPEC; no payload
            return out
        }
        var payload: [UInt8] = []
        payload += src.address
        payload += dst.address
        payload += [UInt8(src.port >> 8), UInt8(src.port & 0xFF), UInt8(dst.port >> 8), UInt8(dst.port & 0xFF)]
        if let tls {
            func tlv(_ type: UInt8, _ value: [UInt8], into bytes: inout [UInt8]) {
                let n = min(value.count, 0xFFFF)
                bytes += [type, UInt8(n >> 8), UInt8(n & 0xFF)]
                bytes += value.prefix(n)
            }
            if tlvs.contains(.alpn) && !tls.alpn.isEmpty { tlv(TLV.alpn, Array(tls.alpn.utf8), into: &payload) }
            if tlvs.contains(.authority) && !tls.sni.isEmpty {
                tlv(TLV.authority, Array(tls.sni.utf8), into: &payload)
            }
            if tlvs.contains(.ssl) {
                // PP2_TYPE_SSL: client (1 byte: PP2_CLIENT_SSL), verify (4 bytes: 0 = no client certificate
                // failed), then the sub-TLVs.
                var ssl: [UInt8] = [TLV.clientSSL, 0, 0, 0, 0]
                if !tls.version.isEmpty { tlv(TLV.sslVersion, Array(tls.version.utf8), into: &ssl) }
                if !tls.cipher.isEmpty { tlv(TLV.sslCipher, Array(tls.cipher.utf8), into: &ssl) }
                tlv(TLV.ssl, ssl, into: &payload)
            }
            if tlvs.contains(.ja4) && !tls.ja4.isEmpty { tlv(TLV.ja4, Array(tls.ja4.utf8), into: &payload) }
        }
        let familyProto: UInt8 = src.address.count == 4 ? 0x11 : 0x21  // TCP over IPv4 / IPv6
        // SNI is at most 255 bytes and the rest is short: far below the 65,535 the length field holds.
        out += [0x21, familyProto, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        out += payload
        return out
    }

    /// Both addresses in one family (IPv4 mapped into IPv6 when they differ), or nil when either is unknown.
    private static func sameFamily(_ a: Source?, _ b: Source?) -> (Source, Source)? {
        guard var a, var b, [4, 16].contains(a.address.count), [4, 16].contains(b.address.count) else { return nil }
        if a.address.count != b.address.count {
            func mapped(_ s: Source) -> Source {
                s.address.count == 16
                    ? s : Source(address: [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF] + s.address, port: s.port)
            }
            a = mapped(a)
            b = mapped(b)
        }
        return (a, b)
    }
}
