/// Sealing of serialized TLS sessions for the fleet session store (`[sessions] cache = "redis"`), under the same
/// wrapping keys as the ticket keys: Redis only ever holds ciphertext.
///
/// Entry layout: `"EPS1" | idLen u8 | wrapping key id | nonce (12) | AES-256-GCM(session) | tag (16)`, with
/// `"EPS1" | wrapping key id | session ID` as associated data, so an entry cannot be replayed under another session ID.
extension TicketKeyWrapper {
    static let sessionMagic: [UInt8] = Array("EPS1".utf8)

    /// Seals `session` (an `i2d_SSL_SESSION` encoding) for the store key of `sessionID`; nil if OpenSSL fails.
    public func sealSession(_ session: UnsafeRawBufferPointer, sessionID: UnsafeRawBufferPointer) -> [UInt8]? {
        sealEnvelope(magic: Self.sessionMagic, context: Array(sessionID), plain: session)
    }

    /// Opens an entry stored for `sessionID` and calls `body` with the plaintext, which lives in a temporary buffer
    /// wiped right after `body` returns. Nil when the entry is malformed, under an unknown wrapping key, or tampered.
    public func openSession<R>(
        _ entry: [UInt8],
        sessionID: UnsafeRawBufferPointer,
        _ body: (UnsafeRawBufferPointer) -> R
    ) -> R? {
        try? openEnvelope(entry, magic: Self.sessionMagic, context: Array(sessionID), minPlain: 1, body).get()
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
