/// IANA names accepted in policy files in place of numeric code points, and used when printing features.
/// Names are the IANA registry names (lower-case as registered for extensions, groups and signature schemes).
enum TLSNames {
    static let extensions: [String: UInt16] = [
        "server_name": 0, "max_fragment_length": 1, "status_request": 5, "supported_groups": 10,
        "ec_point_formats": 11, "srp": 12, "signature_algorithms": 13, "use_srtp": 14, "heartbeat": 15,
        "application_layer_protocol_negotiation": 16, "alpn": 16, "status_request_v2": 17,
        "signed_certificate_timestamp": 18, "padding": 21, "encrypt_then_mac": 22, "extended_master_secret": 23,
        "token_binding": 24, "compress_certificate": 27, "record_size_limit": 28, "delegated_credentials": 34,
        "session_ticket": 35, "pre_shared_key": 41, "early_data": 42, "supported_versions": 43, "cookie": 44,
        "psk_key_exchange_modes": 45, "certificate_authorities": 47, "oid_filters": 48,
        "post_handshake_auth": 49, "signature_algorithms_cert": 50, "key_share": 51, "next_protocol_negotiation": 13172,
        "application_settings": 17513, "encrypted_client_hello": 65037, "renegotiation_info": 65281,
        // Draft token binding as sent by Windows 10 (Edge 13-14, IE 11 on Win10): 0x5500.
        "token_binding_draft": 21760,
    ]

    static let groups: [String: UInt16] = [
        "sect163k1": 1, "sect163r1": 2, "sect163r2": 3, "sect193r1": 4, "sect193r2": 5, "sect233k1": 6,
        "sect233r1": 7, "sect239k1": 8, "sect283k1": 9, "sect283r1": 10, "sect409k1": 11, "sect409r1": 12,
        "sect571k1": 13, "sect571r1": 14, "secp160k1": 15, "secp160r1": 16, "secp160r2": 17, "secp192k1": 18,
        "secp192r1": 19, "secp224k1": 20, "secp224r1": 21, "secp256k1": 22, "secp256r1": 23, "secp384r1": 24,
        "secp521r1": 25, "brainpoolP256r1": 26, "brainpoolP384r1": 27, "brainpoolP512r1": 28, "x25519": 29,
        "x448": 30, "ffdhe2048": 256, "ffdhe3072": 257, "ffdhe4096": 258, "ffdhe6144": 259, "ffdhe8192": 260,
        "X25519MLKEM768": 0x11ec, "SecP256r1MLKEM768": 0x11eb, "X25519Kyber768Draft00": 0x6399,
    ]

    static let signatureSchemes: [String: UInt16] = [
        "rsa_pkcs1_sha1": 0x0201, "dsa_sha1": 0x0202, "ecdsa_sha1": 0x0203, "rsa_pkcs1_sha224": 0x0301,
        "ecdsa_sha224": 0x0303, "rsa_pkcs1_sha256": 0x0401, "dsa_sha256": 0x0402,
        "ecdsa_secp256r1_sha256": 0x0403, "rsa_pkcs1_sha384": 0x0501, "ecdsa_secp384r1_sha384": 0x0503,
        "rsa_pkcs1_sha512": 0x0601, "ecdsa_secp521r1_sha512": 0x0603, "rsa_pss_rsae_sha256": 0x0804,
        "rsa_pss_rsae_sha384": 0x0805, "rsa_pss_rsae_sha512": 0x0806, "ed25519": 0x0807, "ed448": 0x0808,
        "rsa_pss_pss_sha256": 0x0809, "rsa_pss_pss_sha384": 0x080a, "rsa_pss_pss_sha512": 0x080b,
    ]

    /// Cipher suites: only the ones that policy files commonly name; hex is always accepted.
    static let ciphers: [String: UInt16] = [
        "TLS_AES_128_GCM_SHA256": 0x1301, "TLS_AES_256_GCM_SHA384": 0x1302, "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": 0xc02c, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": 0xc02b,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": 0xc030, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": 0xc02f,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": 0xcca9, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": 0xcca8,
        "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256": 0xccaa, "TLS_EMPTY_RENEGOTIATION_INFO_SCSV": 0x00ff,
        "TLS_FALLBACK_SCSV": 0x5600, "TLS_RSA_WITH_AES_128_CBC_SHA": 0x002f, "TLS_RSA_WITH_AES_256_CBC_SHA": 0x0035,
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA": 0x000a,
    ]

    static let versions: [String: UInt16] = [
        "ssl3": 0x0300, "1.0": 0x0301, "1.1": 0x0302, "1.2": 0x0303, "1.3": 0x0304,
    ]

    static func versionName(_ v: UInt16) -> String {
        versions.first { $0.value == v }.map(\.key) ?? hex4(v)
    }

    static func reverse(_ table: [String: UInt16], _ v: UInt16) -> String? {
        // Prefer the longest name (e.g. "application_layer_protocol_negotiation" over "alpn") for stability.
        table.filter { $0.value == v }.map(\.key).max { ($0.count, $0) < ($1.count, $1) }
    }
}

/// "0x" + 4 lower-case hex digits.
func hex4(_ v: UInt16) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: 4 - s.count) + s
}

func hex2(_ v: UInt8) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: 2 - s.count) + s
}
