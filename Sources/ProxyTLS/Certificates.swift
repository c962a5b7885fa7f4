internal import COpenSSL
import Glibc

/// A certificate chain and key loaded into OpenSSL objects, plus the DNS names it serves (for SNI).
///
/// Owns one reference to each OpenSSL object and frees it in deinit.
final class LoadedCertificate {
    let leaf: OpaquePointer  // X509*
    let chain: [OpaquePointer]  // X509* intermediates
    let key: OpaquePointer  // EVP_PKEY*
    let names: [String]
    let keyType: String

    init(leaf: OpaquePointer, chain: [OpaquePointer], key: OpaquePointer) {
        self.leaf = leaf
        self.chain = chain
        self.key = key
        self.names = Self.dnsNames(of: leaf)
        self.keyType = EVP_PKEY_get_base_id(key) == EVP_PKEY_EC ? "ECDSA" : "RSA"
    }

    deinit {
        X509_free(leaf)
        for c in chain { X509_free(c) }
        EVP_PKEY_free(key)
    }

    /// Loads a PEM chain (leaf first) and a PEM private key; checks that they belong together.
    static func load(chainPath: String, keyPath: String) throws(TLSError) -> LoadedCertificate {
        guard let cbio = BIO_new_file(chainPath, "r") else { throw TLSError("cannot read certificate \(chainPath)") }
        defer { BIO_free(cbio) }
        var certs: [OpaquePointer] = []
        while let x = PEM_read_bio_X509(cbio, nil, nil, nil) { certs.append(x) }
        ERR_clear_error()  // the loop ends on a "no start line" error
        guard let leaf = certs.first else { throw TLSError("no PEM certificate found in \(chainPath)") }
        guard let kbio = BIO_new_file(keyPath, "r") else {
            for c in certs { X509_free(c) }
            throw TLSError("cannot read private key \(keyPath)")
        }
        defer { BIO_free(kbio) }
        guard let key = PEM_read_bio_PrivateKey(kbio, nil, nil, nil) else {
            for c in certs { X509_free(c) }
            throw TLSError("no PEM private key found in \(keyPath)")
        }
        guard X509_check_private_key(leaf, key) == 1 else {
            for c in certs { X509_free(c) }
            EVP_PKEY_free(key)
            throw TLSError("private key \(keyPath) does not match certificate \(chainPath)")
        }
        return LoadedCertificate(leaf: leaf, chain: Array(certs.dropFirst()), key: key)
    }

    /// Generates a self-signed ECDSA P-256 certificate for localhost/127.0.0.1/::1, valid for a year.
    static func selfSigned() throws(TLSError) -> LoadedCertificate {
        guard let pctx = EVP_PKEY_CTX_new_from_name(nil, "EC", nil) else { throw TLSError("EVP_PKEY_CTX_new") }
        defer { EVP_PKEY_CTX_free(pctx) }
        var pkey: OpaquePointer?
        guard EVP_PKEY_keygen_init(pctx) == 1, EVP_PKEY_CTX_set_group_name(pctx, "P-256") == 1,
            EVP_PKEY_generate(pctx, &pkey) == 1, let key = pkey
        else { throw TLSError("generating a P-256 key") }
        guard let x = X509_new() else {
            EVP_PKEY_free(key)
            throw TLSError("X509_new")
        }
        var serial: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &serial) { RAND_bytes($0.baseAddress!.assumingMemoryBound(to: UInt8.self), 8) }
        X509_set_version(x, 2)
        ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial >> 1)
        X509_gmtime_adj(X509_getm_notBefore(x), -3600)
        X509_gmtime_adj(X509_getm_notAfter(x), 365 * 86400)
        X509_set_pubkey(x, key)
        let name = X509_get_subject_name(x)
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, "EdgeProxy self-signed", -1, -1, 0)
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, "localhost", -1, -1, 0)
        X509_set_issuer_name(x, name)
        if let ext = X509V3_EXT_conf_nid(nil, nil, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1") {
            X509_add_ext(x, ext, -1)
            X509_EXTENSION_free(ext)
        }
        guard X509_sign(x, key, EVP_sha256()) > 0 else {
            X509_free(x)
            EVP_PKEY_free(key)
            throw TLSError("signing the self-signed certificate")
        }
        return LoadedCertificate(leaf: x, chain: [], key: key)
    }

    /// DNS names from subjectAltName, else the subject CN; lowercased.
    private static func dnsNames(of x: OpaquePointer) -> [String] {
        var out: [String] = []
        if let raw = X509_get_ext_d2i(x, NID_subject_alt_name, nil, nil) {
            let sk = OpaquePointer(raw)
            for i in 0..<OPENSSL_sk_num(sk) {
                guard let v = OPENSSL_sk_value(sk, i) else { continue }
                let gn = v.assumingMemoryBound(to: GENERAL_NAME.self)
                if gn.pointee.type == GEN_DNS, let s = gn.pointee.d.dNSName,
                    let d = ASN1_STRING_get0_data(s)
                {
                    let n = Int(ASN1_STRING_length(s))
                    out.append(String(decoding: UnsafeBufferPointer(start: d, count: n), as: UTF8.self).lowercased())
                }
            }
            GENERAL_NAMES_free(sk)
        }
        if out.isEmpty, let subject = X509_get_subject_name(x) {
            let idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1)
            if idx >= 0, let e = X509_NAME_get_entry(subject, idx), let d = X509_NAME_ENTRY_get_data(e),
                let p = ASN1_STRING_get0_data(d)
            {
                let n = Int(ASN1_STRING_length(d))
                out.append(String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self).lowercased())
            }
        }
        return out
    }

    /// Subject CN / first name, for logs.
    var displayName: String { names.first ?? "(unnamed)" }
}
