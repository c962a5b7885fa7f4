/// A JA3 fingerprint (salesforce/ja3): `SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats`,
/// decimal values joined by `-`, GREASE (RFC 8701) removed from every list; `md5` is its lowercase hex MD5.
public struct JA3: Sendable, Equatable, CustomStringConvertible {
    /// The JA3 string, e.g. `771,4865-4866,0-23-65281,29-23,0`.
    public var string: String
    /// Lowercase hex MD5 of `string` ("" only when the OpenSSL configuration has no MD5, e.g. FIPS-only).
    public var md5: String

    public init(string: String, md5: String) {
        self.string = string
        self.md5 = md5
    }

    public var description: String { md5 }
}

extension ClientHello {
    /// JA3 of this hello. Computed on each access (the policy engine usually needs only `features`); cache it if
    /// you read it more than once.
    ///
    /// SSLVersion is `legacy_version` (not supported_versions), per the reference implementation.
    public var ja3: JA3 {
        var s: [UInt8] = []
        s.reserveCapacity(
            64 + 6 * (cipherSuites.count + extensions.count + supportedGroups.count) + 2 * ecPointFormats.count
        )
        s.appendDecimal(legacyVersion)
        s.append(UInt8(ascii: ","))
        s.appendDecimalList(cipherSuites)
        s.append(UInt8(ascii: ","))
        var first = true
        for e in extensions where !Self.isGREASE(e.type) {
            if !first { s.append(UInt8(ascii: "-")) }
            s.appendDecimal(e.type)
            first = false
        }
        s.append(UInt8(ascii: ","))
        s.appendDecimalList(supportedGroups)
        s.append(UInt8(ascii: ","))
        for (i, f) in ecPointFormats.enumerated() {
            if i > 0 { s.append(UInt8(ascii: "-")) }
            s.appendDecimal(UInt16(f))
        }
        return JA3(string: String(decoding: s, as: UTF8.self), md5: Digest.md5Hex(s))
    }
}

extension [UInt8] {
    @inline(__always)
    mutating func appendDecimal(_ v: UInt16) {
        var divisor: UInt16 = 10_000
        while divisor > 1 && v < divisor { divisor /= 10 }
        while divisor > 0 {
            append(UInt8(ascii: "0") + UInt8(v / divisor % 10))
            divisor /= 10
        }
    }

    /// Appends `values` without GREASE, in order, joined by `-`.
    mutating func appendDecimalList(_ values: [UInt16]) {
        var first = true
        for v in values where !ClientHello.isGREASE(v) {
            if !first { append(UInt8(ascii: "-")) }
            appendDecimal(v)
            first = false
        }
    }

    @inline(__always)
    mutating func appendHex4(_ v: UInt16) {
        let digits: StaticString = "0123456789abcdef"
        append(digits.utf8Start[Int(v >> 12)])
        append(digits.utf8Start[Int(v >> 8 & 0xf)])
        append(digits.utf8Start[Int(v >> 4 & 0xf)])
        append(digits.utf8Start[Int(v & 0xf)])
    }

    /// Appends `values` as 4-digit lowercase hex joined by `,` (JA4 lists).
    mutating func appendHex4List(_ values: [UInt16]) {
        for (i, v) in values.enumerated() {
            if i > 0 { append(UInt8(ascii: ",")) }
            appendHex4(v)
        }
    }
}
