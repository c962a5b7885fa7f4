extension ClientHello {
    /// A 64-bit hash of exactly what ja4 is computed from (the `a` section's inputs: highest version, SNI present,
    /// cipher and extension counts, the ends of the first ALPN name; the cipher and extension sets, SNI/ALPN left out
    /// of the latter; the signature algorithms in order; GREASE removed): hellos with equal inputs have equal keys, so
    /// a cache keyed by it can hold the ja4 string, computed once (the detector's per-handshake path; ja4 itself
    /// costs two SHA-256s). JA4 sorts ciphers and extensions, so they enter as order-independent sums of mixed
    /// values instead of being sorted: no allocation, no sort. Not a fingerprint to show or store: it may change
    /// between versions.
    public var ja4InputsHash: UInt64 {
        /// The splitmix64 finalizer: a bijective 64-bit mix (for the combination of the parts).
        @inline(__always) func mix(_ v: UInt64) -> UInt64 {
            var z = v &+ 0x9e37_79b9_7f4a_7c15
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        /// One multiply and a shift: spreads a 16-bit value (plus a tag) over 64 bits before it is summed.
        @inline(__always) func spread(_ v: UInt64) -> UInt64 {
            let z = v &* 0x9e37_79b9_7f4a_7c15
            return z ^ (z >> 29)
        }
        var ciphers: UInt64 = 0
        var cipherCount: UInt64 = 0
        for c in cipherSuites where !ClientHello.isGREASE(c) {
            ciphers &+= spread(UInt64(c) | 1 << 16)
            cipherCount += 1
        }
        var exts: UInt64 = 0
        var extCount: UInt64 = 0
        var sni: UInt64 = 0
        var alpn: (UInt8, UInt8) = (UInt8(ascii: "0"), UInt8(ascii: "0"))
        var alpnFromBody = false
        // By index: a `for e in extensions` copy would retain and release every extension's body.
        for i in extensions.indices {
            let type = extensions[i].type
            if ClientHello.isGREASE(type) { continue }
            extCount += 1
            switch type {
            case 0: sni = 1
            case 16:
                // As firstALPNBytes reads it, without copying the name: only its first and last bytes matter.
                extensions[i].withBody { b in
                    if b.count >= 3, b[2] > 0, b.count >= 3 + Int(b[2]) {
                        alpn = JA4Parts.alpnCode(first: b[3], last: b[2 + Int(b[2])])
                        alpnFromBody = true
                    }
                }
            default: exts &+= spread(UInt64(type) | 2 << 16)
            }
        }
        if !alpnFromBody, let name = self.alpn.first, let f = name.utf8.first, let l = name.utf8.last {
            alpn = JA4Parts.alpnCode(first: f, last: l)
        }
        var sigalgs: UInt64 = 0x5349_4741_4c47_5321
        for s in signatureAlgorithms where !ClientHello.isGREASE(s) {
            sigalgs = (sigalgs ^ UInt64(s)) &* 0x0000_0100_0000_01b3
        }
        var h = mix(
            UInt64(highestOfferedVersion) | sni << 16 | UInt64(alpn.0) << 24 | UInt64(alpn.1) << 32
                | min(cipherCount, 0xFFF) << 40 | min(extCount, 0xFFF) << 52
        )
        h = mix(h ^ ciphers)
        h = mix(h ^ exts)
        return mix(h ^ sigalgs)
    }

    /// The highest protocol version offered: supported_versions (GREASE ignored) when present and non-empty, else
    /// `legacy_version`.
    public var highestOfferedVersion: UInt16 {
        if let sv = supportedVersions {
            var best: UInt16? = nil
            for v in sv where !ClientHello.isGREASE(v) { best = max(best ?? v, v) }
            if let best { return best }
        }
        return legacyVersion
    }

    /// The hello carries TLS_FALLBACK_SCSV (0x5600, RFC 7507): a client retrying with a lower version.
    public var offersFallbackSCSV: Bool { cipherSuites.contains(0x5600) }
}
