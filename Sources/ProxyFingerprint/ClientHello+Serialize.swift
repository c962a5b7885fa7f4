extension ClientHello.Extension {
    /// server_name (0) with one host_name.
    public static func serverName(_ host: String) -> Self {
        let name = Array(host.utf8)
        var b: [UInt8] = []
        b.appendU16(UInt16(truncatingIfNeeded: name.count + 3))
        b.append(0)
        b.appendU16(UInt16(truncatingIfNeeded: name.count))
        b.append(contentsOf: name)
        return Self(type: 0, body: b)
    }

    /// supported_groups (10).
    public static func supportedGroups(_ groups: [UInt16]) -> Self {
        Self(type: 10, body: .u16Vector(groups, lengthBytes: 2))
    }

    /// ec_point_formats (11).
    public static func ecPointFormats(_ formats: [UInt8]) -> Self {
        Self(type: 11, body: [UInt8(truncatingIfNeeded: formats.count)] + formats)
    }

    /// signature_algorithms (13).
    public static func signatureAlgorithms(_ schemes: [UInt16]) -> Self {
        Self(type: 13, body: .u16Vector(schemes, lengthBytes: 2))
    }

    /// application_layer_protocol_negotiation (16).
    public static func alpn(_ protocols: [String]) -> Self {
        var list: [UInt8] = []
        for p in protocols {
            list.append(UInt8(truncatingIfNeeded: p.utf8.count))
            list.append(contentsOf: p.utf8)
        }
        var b: [UInt8] = []
        b.appendU16(UInt16(truncatingIfNeeded: list.count))
        return Self(type: 16, body: b + list)
    }

    /// supported_versions (43), ClientHello form.
    public static func supportedVersions(_ versions: [UInt16]) -> Self {
        Self(type: 43, body: .u16Vector(versions, lengthBytes: 1))
    }

    /// key_share (51), ClientHello form, with zero-filled key_exchange values of each group's usual size (the
    /// fingerprints only read the groups).
    public static func keyShare(groups: [UInt16]) -> Self {
        var shares: [UInt8] = []
        for g in groups {
            let size: Int
            switch g {
            case 0x001d: size = 32  // x25519
            case 0x001e: size = 56  // x448
            case 0x0017: size = 65  // secp256r1, uncompressed point
            case 0x0018: size = 97
            case 0x0019: size = 133
            default: size = 1  // GREASE and unknown groups: Chrome sends 1 byte for GREASE
            }
            shares.appendU16(g)
            shares.appendU16(UInt16(size))
            shares.append(contentsOf: repeatElement(0, count: size))
        }
        var b: [UInt8] = []
        b.appendU16(UInt16(truncatingIfNeeded: shares.count))
        return Self(type: 51, body: b + shares)
    }
}

extension ClientHello {
    /// Encodes this hello as a handshake message (type 1, 3-byte length, body) from `extensions`' raw bodies, so
    /// the result re-parses to the same fingerprints. ClientHello does not keep random or session id bytes: they are
    /// written as zeros (`sessionIDLength` of them, at most 32). An SSLv2-compatible hello is written in TLS form.
    ///
    /// Precondition: every list fits its wire length field (the case for anything `parse` produced).
    public func serialize() -> [UInt8] {
        var out: [UInt8] = [1, 0, 0, 0]
        out.reserveCapacity(128 + 2 * cipherSuites.count + extensions.reduce(0) { $0 + 4 + $1.bodyCount })
        out.appendU16(legacyVersion)
        out.append(contentsOf: repeatElement(0, count: 32))
        let sid = max(0, min(sessionIDLength, 32))
        out.append(UInt8(sid))
        out.append(contentsOf: repeatElement(0, count: sid))
        precondition(cipherSuites.count <= 32_767 && compressionMethods.count <= 255, "ClientHello too large to encode")
        out.append(contentsOf: [UInt8].u16Vector(cipherSuites, lengthBytes: 2))
        out.append(UInt8(compressionMethods.count))
        out.append(contentsOf: compressionMethods)
        if !extensions.isEmpty {
            let blockStart = out.count
            out.appendU16(0)
            for e in extensions {
                precondition(e.bodyCount <= 65_535, "extension body too large to encode")
                out.appendU16(e.type)
                out.appendU16(UInt16(e.bodyCount))
                e.withBody { out.append(contentsOf: $0) }
            }
            let blockLength = out.count - blockStart - 2
            precondition(blockLength <= 65_535, "extensions block too large to encode")
            out[blockStart] = UInt8(blockLength >> 8)
            out[blockStart + 1] = UInt8(blockLength & 0xff)
        }
        let length = out.count - 4
        out[1] = UInt8(length >> 16 & 0xff)
        out[2] = UInt8(length >> 8 & 0xff)
        out[3] = UInt8(length & 0xff)
        return out
    }

    /// `serialize()` wrapped in TLS records of at most `maxFragment` payload bytes each (for fragmentation tests
    /// and tools that need a record stream).
    public func serializeRecords(version: UInt16? = nil, maxFragment: Int = 16_384) -> [UInt8] {
        precondition(maxFragment >= 1 && maxFragment <= 16_384)
        let message = serialize()
        let v = version ?? recordVersion ?? 0x0301
        var out: [UInt8] = []
        out.reserveCapacity(message.count + 5 * (message.count / maxFragment + 1))
        var i = 0
        while i < message.count {
            let n = min(maxFragment, message.count - i)
            out.append(22)
            out.appendU16(v)
            out.appendU16(UInt16(n))
            out.append(contentsOf: message[i..<(i + n)])
            i += n
        }
        return out
    }
}

extension [UInt8] {
    @inline(__always)
    mutating func appendU16(_ v: UInt16) {
        append(UInt8(v >> 8))
        append(UInt8(v & 0xff))
    }

    static func u16Vector(_ values: [UInt16], lengthBytes: Int) -> [UInt8] {
        var b: [UInt8] = []
        b.reserveCapacity(lengthBytes + 2 * values.count)
        if lengthBytes == 1 {
            b.append(UInt8(truncatingIfNeeded: 2 * values.count))
        } else {
            b.appendU16(UInt16(truncatingIfNeeded: 2 * values.count))
        }
        for v in values { b.appendU16(v) }
        return b
    }
}
