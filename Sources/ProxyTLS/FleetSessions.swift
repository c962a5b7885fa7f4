import ProxyTickets

/// The fleet tier behind the local session cache (`[sessions] cache = "redis"`): sessions sealed under the wrapping key
/// (AES-256-GCM, ``TicketKeyWrapper/sealSession(_:sessionID:)``) in a shared store, so an instance resumes sessions
/// another instance created. The local cache in front keeps them briefly (its own TTL) so repeated resumptions on one
/// instance do not go to the store.
public struct FleetSessions: Sendable {
    public let store: any SealedSessionStore
    public let wrapper: TicketKeyWrapper
    /// Prepended to the hex session ID to form the store key.
    public let keyPrefix: String
    /// How long the store keeps an entry (`[sessions] timeout`).
    public let ttlMilliseconds: Int

    public init(store: any SealedSessionStore, wrapper: TicketKeyWrapper, keyPrefix: String, ttlMilliseconds: Int) {
        self.store = store
        self.wrapper = wrapper
        self.keyPrefix = keyPrefix
        self.ttlMilliseconds = ttlMilliseconds
    }

    /// The store key for a session ID: the prefix and the ID in lowercase hex.
    func key(for id: UnsafeRawBufferPointer) -> [UInt8] {
        let digits = Array("0123456789abcdef".utf8)
        var out = Array(keyPrefix.utf8)
        out.reserveCapacity(out.count + 2 * id.count)
        for b in id {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return out
    }
}
