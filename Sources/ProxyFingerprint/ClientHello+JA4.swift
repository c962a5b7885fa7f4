/// A JA4 TLS client fingerprint (FoxIO, `technical_details/JA4.md`) in its four forms.
///
/// `fingerprint` (ja4) and `original` (ja4_o) hash their lists; `raw` (ja4_r) and `rawOriginal` (ja4_ro) show
/// them. Sorted forms drop SNI (0000) and ALPN (0010) from the extension list; original forms keep wire order and
/// keep them. GREASE is removed everywhere. Transport is always `t` (EdgeProxy terminates TLS over TCP only).
public struct JA4: Sendable, Equatable, CustomStringConvertible {
    /// ja4, e.g. `t13d1516h2_8daaf6152771_e5627efa2ab1`.
    public var fingerprint: String
    /// ja4_r: sorted lists in clear.
    public var raw: String
    /// ja4_o: original order, hashed.
    public var original: String
    /// ja4_ro: original order, in clear.
    public var rawOriginal: String

    public init(fingerprint: String, raw: String, original: String, rawOriginal: String) {
        self.fingerprint = fingerprint
        self.raw = raw
        self.original = original
        self.rawOriginal = rawOriginal
    }

    public var description: String { fingerprint }
}

extension ClientHello {
    /// All four JA4 forms. Computed on each access (4 short SHA-256s); use `ja4Fingerprint` when only ja4 is needed.
    public var ja4: JA4 {
        let p = JA4Parts(self)
        return JA4(
            fingerprint: p.render(sorted: true, hashed: true),
            raw: p.render(sorted: true, hashed: false),
            original: p.render(sorted: false, hashed: true),
            rawOriginal: p.render(sorted: false, hashed: false)
        )
    }

    /// Only the ja4 form (two SHA-256s).
    public var ja4Fingerprint: String { JA4Parts(self).render(sorted: true, hashed: true) }

    /// The JA4 version code of the highest offered version: supported_versions (GREASE ignored) when present and
    /// non-empty, else `legacy_version`.
    static func ja4VersionCode(_ v: UInt16) -> (UInt8, UInt8) {
        switch v {
        case 0x0304: return (UInt8(ascii: "1"), UInt8(ascii: "3"))
        case 0x0303: return (UInt8(ascii: "1"), UInt8(ascii: "2"))
        case 0x0302: return (UInt8(ascii: "1"), UInt8(ascii: "1"))
        case 0x0301: return (UInt8(ascii: "1"), UInt8(ascii: "0"))
        case 0x0300: return (UInt8(ascii: "s"), UInt8(ascii: "3"))
        case 0x0200: return (UInt8(ascii: "s"), UInt8(ascii: "2"))
        case 0x0100: return (UInt8(ascii: "s"), UInt8(ascii: "1"))
        case 0xfeff: return (UInt8(ascii: "d"), UInt8(ascii: "1"))
        case 0xfefd: return (UInt8(ascii: "d"), UInt8(ascii: "2"))
        case 0xfefc: return (UInt8(ascii: "d"), UInt8(ascii: "3"))
        default: return (UInt8(ascii: "0"), UInt8(ascii: "0"))
        }
    }

    /// The first protocol name of the ALPN extension as sent: read from the raw body (so non-UTF-8 names keep their
    /// bytes for the hex rule), falling back to `alpn` for a hello built without consistent bodies.
    var firstALPNBytes: [UInt8]? {
        if let ext = extensions.first(where: { $0.type == 16 }) {
            let name = ext.withBody { b -> [UInt8]? in
                guard b.count >= 3 else { return nil }
                let n = Int(b[2])
                return n > 0 && b.count >= 3 + n ? Array(b[3..<(3 + n)]) : nil
            }
            if let name { return name }
        }
        return alpn.first.map { Array($0.utf8) }
    }
}

/// The pieces JA4 is built from, GREASE already removed.
struct JA4Parts {
    var a: [UInt8]  // t13d1516h2
    var ciphers: [UInt16]  // wire order
    var extensions: [UInt16]  // wire order, SNI/ALPN kept
    var sigalgs: [UInt16]

    init(_ hello: ClientHello) {
        ciphers = hello.cipherSuites.filter { !ClientHello.isGREASE($0) }
        extensions = []
        extensions.reserveCapacity(hello.extensions.count)
        var sni = false
        for e in hello.extensions where !ClientHello.isGREASE(e.type) {
            extensions.append(e.type)
            if e.type == 0 { sni = true }
        }
        sigalgs = hello.signatureAlgorithms.filter { !ClientHello.isGREASE($0) }

        var version = hello.legacyVersion
        if let sv = hello.supportedVersions {
            var best: UInt16? = nil
            for v in sv where !ClientHello.isGREASE(v) { best = max(best ?? v, v) }
            if let best { version = best }
        }
        a = []
        a.reserveCapacity(10)
        a.append(UInt8(ascii: "t"))
        let (v0, v1) = ClientHello.ja4VersionCode(version)
        a.append(v0)
        a.append(v1)
        a.append(UInt8(ascii: sni ? "d" : "i"))
        Self.appendCount(&a, ciphers.count)
        Self.appendCount(&a, extensions.count)
        let (c0, c1) = Self.alpnCode(hello.firstALPNBytes)
        a.append(c0)
        a.append(c1)
    }

    private static func appendCount(_ a: inout [UInt8], _ n: Int) {
        let n = min(n, 99)
        a.append(UInt8(ascii: "0") + UInt8(n / 10))
        a.append(UInt8(ascii: "0") + UInt8(n % 10))
    }

    /// First and last character of the first ALPN value; "00" without one; when either end is not ASCII
    /// alphanumeric, the first and last characters of the value's hex form instead (JA4.md, ALPN section).
    static func alpnCode(_ name: [UInt8]?) -> (UInt8, UInt8) {
        guard let name, let f = name.first, let l = name.last else { return (UInt8(ascii: "0"), UInt8(ascii: "0")) }
        return alpnCode(first: f, last: l)
    }

    /// ``alpnCode(_:)`` from the name's first and last bytes.
    static func alpnCode(first f: UInt8, last l: UInt8) -> (UInt8, UInt8) {
        func alnum(_ c: UInt8) -> Bool {
            (0x30...0x39).contains(c) || (0x41...0x5a).contains(c) || (0x61...0x7a).contains(c)
        }
        if alnum(f) && alnum(l) { return (f, l) }
        let digits: StaticString = "0123456789abcdef"
        return (digits.utf8Start[Int(f >> 4)], digits.utf8Start[Int(l & 0xf)])
    }

    func render(sorted: Bool, hashed: Bool) -> String {
        var out = a
        out.reserveCapacity(hashed ? 36 : 10 + 5 * (ciphers.count + extensions.count + sigalgs.count) + 3)
        let c = sorted ? ciphers.sorted() : ciphers
        let e = sorted ? extensions.filter { $0 != 0 && $0 != 16 }.sorted() : extensions

        out.append(UInt8(ascii: "_"))
        var list: [UInt8] = []
        list.reserveCapacity(5 * (c.count + e.count + sigalgs.count) + 1)
        list.appendHex4List(c)
        append(list, empty: c.isEmpty, hashed: hashed, to: &out)

        out.append(UInt8(ascii: "_"))
        list.removeAll(keepingCapacity: true)
        list.appendHex4List(e)
        if !sigalgs.isEmpty {
            list.append(UInt8(ascii: "_"))
            list.appendHex4List(sigalgs)
        }
        append(list, empty: e.isEmpty, hashed: hashed, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    private func append(_ list: [UInt8], empty: Bool, hashed: Bool, to out: inout [UInt8]) {
        if !hashed {
            out.append(contentsOf: list)
        } else if empty {
            // JA4.md: an empty list hashes to twelve zeros, not to sha256("").
            out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: 12))
        } else {
            out.append(contentsOf: Digest.sha256Hex(list, prefix: 12).utf8)
        }
    }
}
