extension ClientHello {
    /// A 64-bit FNV-1a hash of exactly what ja4 is computed from (the `a` section, the sorted cipher list, the
    /// sorted extension list without SNI/ALPN, the signature algorithms; GREASE removed): equal hellos have equal
    /// keys, so a cache keyed by it can hold the ja4 string, computed once (the detector's per-handshake path;
    /// ja4 itself costs two SHA-256s). Not a fingerprint to show or store: it may change between versions.
    public var ja4InputsHash: UInt64 {
        let p = JA4Parts(self)
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        @inline(__always) func mix(_ b: UInt8) {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        @inline(__always) func mix16(_ v: UInt16) {
            mix(UInt8(v >> 8))
            mix(UInt8(v & 0xFF))
        }
        for b in p.a { mix(b) }
        mix(0x5F)
        for c in p.ciphers.sorted() { mix16(c) }
        mix(0x5F)
        for e in p.extensions.sorted() where e != 0 && e != 16 { mix16(e) }
        mix(0x5F)
        for s in p.sigalgs { mix16(s) }
        return h
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
