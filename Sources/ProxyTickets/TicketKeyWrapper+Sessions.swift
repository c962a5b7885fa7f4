internal import COpenSSL
public import ProxyCore

/// Sealing of serialized TLS sessions for the fleet session store (`[sessions] cache = "redis"`), under the same
/// wrapping keys as the ticket keys: Redis only ever holds ciphertext.
///
/// Entry layout: `"EPS1" | idLen u8 | wrapping key id | nonce (12) | AES-256-GCM(session) | tag (16)`, with
/// `"EPS1" | wrapping key id | session ID` as associated data, so an entry cannot be replayed under another session ID.
extension TicketKeyWrapper {
    static let sessionMagic: [UInt8] = Array("EPS1".utf8)

    /// Seals `session` (an `i2d_SSL_SESSION` encoding) for the store key of `sessionID`; nil if OpenSSL fails.
    public func sealSession(_ session: UnsafeRawBufferPointer, sessionID: UnsafeRawBufferPointer) -> [UInt8]? {
        guard let gcm = fetchedAES256GCM, session.count > 0 else { return nil }
        let id = Array(current.id.utf8)
        var nonce = [UInt8](repeating: 0, count: 12)
        guard RAND_bytes(&nonce, 12) == 1 else { return nil }
        let aad = Self.sessionMagic + id + Array(sessionID)
        var out = Self.sessionMagic + [UInt8(id.count)] + id + nonce
        let header = out.count
        out += [UInt8](repeating: 0, count: session.count + 16)
        let ok = current.secret.withUnsafeBytes { wk -> Bool in
            guard let ctx = EVP_CIPHER_CTX_new() else { return false }
            defer { EVP_CIPHER_CTX_free(ctx) }
            var len: Int32 = 0
            guard EVP_EncryptInit_ex2(ctx, gcm, wk.baseAddress, nonce, nil) == 1,
                EVP_EncryptUpdate(ctx, nil, &len, aad, Int32(aad.count)) == 1
            else { return false }
            return out.withUnsafeMutableBufferPointer { o -> Bool in
                let ct = o.baseAddress! + header
                guard
                    EVP_EncryptUpdate(
                        ctx,
                        ct,
                        &len,
                        session.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        Int32(session.count)
                    ) == 1
                else { return false }
                var total = len
                guard EVP_EncryptFinal_ex(ctx, ct + Int(total), &len) == 1 else { return false }
                total += len
                return Int(total) == session.count
                    && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, ct + Int(total)) == 1
            }
        }
        return ok ? out : nil
    }

    /// Opens an entry stored for `sessionID` and calls `body` with the plaintext, which lives in a temporary buffer
    /// wiped right after `body` returns. Nil when the entry is malformed, under an unknown wrapping key, or tampered.
    public func openSession<R>(
        _ entry: [UInt8],
        sessionID: UnsafeRawBufferPointer,
        _ body: (UnsafeRawBufferPointer) -> R
    ) -> R? {
        guard let gcm = fetchedAES256GCM, entry.count > 5 + 12 + 16, Array(entry[0..<4]) == Self.sessionMagic
        else { return nil }
        let idLen = Int(entry[4])
        guard idLen >= 1, entry.count > 5 + idLen + 12 + 16 else { return nil }
        let idBytes = Array(entry[5..<(5 + idLen)])
        guard let wk = ([current] + previous).first(where: { Array($0.id.utf8) == idBytes }) else { return nil }
        let nonce = Array(entry[(5 + idLen)..<(5 + idLen + 12)])
        let ctStart = 5 + idLen + 12
        let ctLen = entry.count - ctStart - 16
        var tag = Array(entry[(entry.count - 16)...])
        let aad = Self.sessionMagic + idBytes + Array(sessionID)
        // SAFETY: owned here, wiped and freed by the defer.
        let plain = UnsafeMutableRawBufferPointer.allocate(byteCount: ctLen + 16, alignment: 8)
        defer {
            SecretBytes.secureZero(plain)
            plain.deallocate()
        }
        let ok = wk.secret.withUnsafeBytes { k -> Bool in
            guard let ctx = EVP_CIPHER_CTX_new() else { return false }
            defer { EVP_CIPHER_CTX_free(ctx) }
            var len: Int32 = 0
            let p = plain.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let updated = entry.withUnsafeBufferPointer { e -> Bool in
                EVP_DecryptInit_ex2(ctx, gcm, k.baseAddress, nonce, nil) == 1
                    && EVP_DecryptUpdate(ctx, nil, &len, aad, Int32(aad.count)) == 1
                    && EVP_DecryptUpdate(ctx, p, &len, e.baseAddress! + ctStart, Int32(ctLen)) == 1
            }
            guard updated, EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, &tag) == 1 else { return false }
            var fin: Int32 = 0
            return EVP_DecryptFinal_ex(ctx, p + Int(len), &fin) == 1
        }
        guard ok else { return nil }
        return body(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(plain)[0..<ctLen]))
    }
}

/// The fleet tier of the session cache: sealed sessions by key, on some shared store (Redis:
/// `ProxyTicketStore.RedisSessionStore`). Called from worker threads inside OpenSSL's session callbacks.
public protocol SealedSessionStore: AnyObject, Sendable {
    /// The value stored under `key`, or nil when there is none, the store is unreachable, or it did not answer within
    /// the implementation's bound (the handshake then completes as a full one).
    func fetch(key: [UInt8]) -> [UInt8]?
    /// Queues `value` under `key` for `ttlMilliseconds`; never blocks (dropped when the queue is full).
    func store(key: [UInt8], value: [UInt8], ttlMilliseconds: Int)
}
