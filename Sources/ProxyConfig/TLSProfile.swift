/// `[tls] profile`: Mozilla's Server Side TLS recommendations, **version 5.7** (2023-05-15,
/// https://ssl-config.mozilla.org/guidelines/5.7.json), as OpenSSL settings. A profile supplies the defaults of
/// `min_version`, `max_version`, `ciphers`, `ciphersuites` and `groups`; any of those keys written in `[tls]` still
/// overrides it. DHE suites use the RFC 7919 ffdhe2048 group (ProxyTLS), never hand-made DH parameters (5.7 allows
/// 1024-bit DH in "old"; ffdhe2048 is used there too). 3DES (in "old") is absent from Debian's OpenSSL 3 build
/// (`no-weak-ssl-ciphers`); OpenSSL skips names it does not know, so the list works either way.
///
/// Two deliberate deviations:
/// - "intermediate" appends ECDHE-RSA-AES128-SHA256 (forward secret, CBC + HMAC-SHA256, TLS 1.2) to Mozilla's list:
///   IE 11 on Windows Phone 8.1 offers no AEAD suite an RSA certificate can serve (ECDHE-RSA only with CBC, no DHE),
///   and letting every IE 11 in is this profile's purpose. With the server's order (below) only a client with no
///   AEAD suite in common ever gets it.
/// - The server's cipher order is always preferred (5.7 leaves the order to the client in "modern" and
///   "intermediate"): it keeps ECDHE before the slower DHE, and AEAD before the one CBC suite above.
public enum TLSProfile: String, Sendable, CaseIterable {
    /// TLS 1.3 only (Firefox 63, Chrome 70, Edge 75, Safari 12.1, Java 11, OpenSSL 1.1.1 and newer).
    case modern
    /// TLS 1.2 and 1.3, AEAD suites with ECDHE or DHE: IE 11 on Windows 7 and 8.1, Edge 12+, Firefox 27, Java 8u31.
    case intermediate
    /// TLS 1.0–1.3 with CBC, static-RSA and 3DES suites: IE 8–10 (Windows XP/Vista/7), Java 6, OpenSSL 0.9.8.
    case old

    public var minVersion: TLSVersion {
        switch self {
        case .modern: .v1_3
        case .intermediate: .v1_2
        case .old: .v1_0
        }
    }

    public var maxVersion: TLSVersion { .v1_3 }

    /// The 5.7 "openssl" cipher list (TLS ≤ 1.2), with one addition to "intermediate" (see the type's comment).
    /// "modern" has none; OpenSSL needs a non-empty string, and with TLS 1.3 as the minimum the list is never used,
    /// so it repeats the intermediate one.
    public var ciphers: String {
        switch self {
        case .modern, .intermediate:
            return Self.intermediateCiphers
        case .old:
            return Self.mozillaIntermediate + ":"
                + [
                    "ECDHE-ECDSA-AES128-SHA256", "ECDHE-RSA-AES128-SHA256", "ECDHE-ECDSA-AES128-SHA",
                    "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES256-SHA384",
                    "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA", "DHE-RSA-AES128-SHA256", "DHE-RSA-AES256-SHA256",
                    "AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA256", "AES256-SHA256", "AES128-SHA",
                    "AES256-SHA", "DES-CBC3-SHA",
                ].joined(separator: ":")
        }
    }

    /// TLS 1.3 suites: the same three in every 5.7 profile.
    public var ciphersuites: String { "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256" }

    /// 5.7 `tls_curves` (X25519, prime256v1, secp384r1) in OpenSSL's spelling.
    public var groups: String { "X25519:P-256:P-384" }

    /// Mozilla 5.7 "intermediate", exactly.
    static let mozillaIntermediate = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    /// EdgeProxy's "intermediate": Mozilla's list plus ECDHE-RSA-AES128-SHA256, last.
    static let intermediateCiphers = mozillaIntermediate + ":ECDHE-RSA-AES128-SHA256"
}

extension ProxyConfiguration.TLS {
    /// Sets the five profile-controlled keys from `p` (explicit keys are applied after this by the reader).
    public mutating func apply(profile p: TLSProfile) {
        profile = p
        minVersion = p.minVersion
        maxVersion = p.maxVersion
        ciphers = p.ciphers
        ciphersuites = p.ciphersuites
        groups = p.groups
    }
}
