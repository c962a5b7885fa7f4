internal import COpenSSL

extension TLSContextSet {
    /// Gives `ctx` the RFC 7919 ffdhe2048 group for the DHE suites of the Mozilla "intermediate" and "old" profiles
    /// (IE 11 on Windows 7/8.1 with an RSA certificate negotiates DHE-RSA-AES-GCM). 2048 bits in every profile:
    /// Mozilla 5.7 allows 1024 for "old", but every client that needs DHE there accepts 2048.
    static func installFFDHE2048(_ ctx: OpaquePointer) -> Bool {
        guard let pctx = EVP_PKEY_CTX_new_from_name(nil, "DH", nil) else { return false }
        defer { EVP_PKEY_CTX_free(pctx) }
        var params: OpaquePointer? = nil
        guard EVP_PKEY_paramgen_init(pctx) == 1, EVP_PKEY_CTX_set_dh_nid(pctx, NID_ffdhe2048) == 1,
            EVP_PKEY_paramgen(pctx, &params) == 1, let params
        else { return false }
        // set0: the context takes the reference on success.
        guard SSL_CTX_set0_tmp_dh_pkey(ctx, params) == 1 else {
            EVP_PKEY_free(params)
            return false
        }
        return true
    }
}
