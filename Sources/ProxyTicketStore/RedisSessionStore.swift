import Dispatch
import Glibc
public import ProxyTickets
import Synchronization

/// The fleet session store on Redis (`[sessions] cache = "redis"`): a dedicated thread with its own connection serves
/// GETs for handshakes and SETs (`PX` = the session timeout) queued by them. Values are sealed by the caller
/// (``TicketKeyWrapper/sealSession(_:sessionID:)``); this type only moves bytes.
///
/// The bound: a handshake waits for a GET at most ``fetchTimeoutNanoseconds`` (default 5 ms, far above a loopback or
/// same-rack round trip of ~0.1 ms), and not at all while the store is down or reconnecting; a late answer is
/// dropped and the handshake completes as a full one. Stores never wait: the queue holds at most ``queueLimit``
/// requests and drops new ones beyond it (counted).
public final class RedisSessionStore: SealedSessionStore, Sendable {
    public static let queueLimit = 4096

    public let endpoint: RedisEndpoint
    public let fetchTimeoutNanoseconds: UInt64
    private let queue = Mutex<[Request]>([])
    private let wake = DispatchSemaphore(value: 0)
    private let up = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    private let droppedTotal = Atomic<Int>(0)
    private let timedOutTotal = Atomic<Int>(0)
    private let errorsTotal = Atomic<Int>(0)
    private let thread = Mutex<pthread_t?>(nil)
    // SAFETY: used only by the store's thread (created in start(), which happens-before its first use).
    private nonisolated(unsafe) let connection: RedisConnection

    /// One GET waiting for its answer; the handshake side may give up (``abandoned``) before it arrives.
    private final class Pending: Sendable {
        let done = DispatchSemaphore(value: 0)
        let value = Mutex<[UInt8]?>(nil)
    }

    private enum Request: Sendable {
        case get(key: [UInt8], pending: Pending)
        case set(key: [UInt8], value: [UInt8], ttlMilliseconds: Int)
    }

    public init(
        endpoint: RedisEndpoint,
        connectTimeoutNanoseconds: Int64,
        commandTimeoutNanoseconds: Int64,
        fetchTimeoutNanoseconds: UInt64 = 5_000_000
    ) {
        self.endpoint = endpoint
        self.fetchTimeoutNanoseconds = fetchTimeoutNanoseconds
        connection = RedisConnection(
            endpoint: endpoint,
            connectTimeoutNanoseconds: connectTimeoutNanoseconds,
            commandTimeoutNanoseconds: commandTimeoutNanoseconds
        )
    }

    /// Whether the last command succeeded.
    public var isUp: Bool { up.load(ordering: .relaxed) }
    /// Requests dropped because the queue was full.
    public var dropped: Int { droppedTotal.load(ordering: .relaxed) }
    /// Fetches that did not get an answer within the bound.
    public var timedOut: Int { timedOutTotal.load(ordering: .relaxed) }
    /// Commands that failed (connection or reply errors).
    public var errors: Int { errorsTotal.load(ordering: .relaxed) }

    public func fetch(key: [UInt8]) -> [UInt8]? {
        guard up.load(ordering: .relaxed) else { return nil }
        let pending = Pending()
        guard enqueue(.get(key: key, pending: pending)) else { return nil }
        if pending.done.wait(timeout: .now() + .nanoseconds(Int(fetchTimeoutNanoseconds))) == .timedOut {
            timedOutTotal.add(1, ordering: .relaxed)
            return nil
        }
        return pending.value.withLock { $0 }
    }

    public func store(key: [UInt8], value: [UInt8], ttlMilliseconds: Int) {
        _ = enqueue(.set(key: key, value: value, ttlMilliseconds: ttlMilliseconds))
    }

    private func enqueue(_ r: Request) -> Bool {
        let ok = queue.withLock { q -> Bool in
            guard q.count < Self.queueLimit else { return false }
            q.append(r)
            return true
        }
        if ok { wake.signal() } else { droppedTotal.add(1, ordering: .relaxed) }
        return ok
    }

    // MARK: - the thread

    /// Starts the store's thread. Call once.
    public func start() {
        let box = Unmanaged.passRetained(self)
        var t = pthread_t()
        let rc = pthread_create(
            &t,
            nil,
            { arg in
                // SAFETY: retained above; this thread owns that reference until run() returns.
                let s = Unmanaged<RedisSessionStore>.fromOpaque(arg!).takeRetainedValue()
                s.run()
                return nil
            },
            box.toOpaque()
        )
        precondition(rc == 0, "pthread_create failed")
        thread.withLock { $0 = t }
    }

    /// Stops the thread and waits for it (at most about one command timeout).
    public func stop() {
        stopping.store(true, ordering: .relaxed)
        wake.signal()
        if let t = thread.withLock({ v -> pthread_t? in
            defer { v = nil }
            return v
        }) {
            pthread_join(t, nil)
        }
    }

    private func run() {
        var nextConnect: UInt64 = 0
        while !stopping.load(ordering: .relaxed) {
            // Wake at least every 250 ms to reconnect in the background (fetches are refused while down).
            _ = wake.wait(timeout: .now() + .milliseconds(250))
            if !connection.isConnected {
                let now = DispatchTime.now().uptimeNanoseconds
                if now >= nextConnect {
                    do {
                        try connection.connect()
                        up.store(true, ordering: .relaxed)
                    } catch {
                        errorsTotal.add(1, ordering: .relaxed)
                        up.store(false, ordering: .relaxed)
                        nextConnect = now + 1_000_000_000
                    }
                }
            }
            let batch = queue.withLock { q -> [Request] in
                defer { q.removeAll(keepingCapacity: true) }
                return q
            }
            for r in batch { execute(r) }
        }
        connection.close()
    }

    private func execute(_ r: Request) {
        switch r {
        case .get(let key, let pending):
            defer { pending.done.signal() }
            guard connection.isConnected else { return }
            do {
                if case .bulk(let v) = try connection.command([Array("GET".utf8), key]) {
                    pending.value.withLock { $0 = v }
                }
                up.store(true, ordering: .relaxed)
            } catch {
                failed()
            }
        case .set(let key, let value, let ttl):
            guard connection.isConnected else { return }
            do {
                _ = try connection.command([
                    Array("SET".utf8), key, value, Array("PX".utf8), Array(String(max(1, ttl)).utf8),
                ])
                up.store(true, ordering: .relaxed)
            } catch {
                failed()
            }
        }
    }

    private func failed() {
        errorsTotal.add(1, ordering: .relaxed)
        if !connection.isConnected { up.store(false, ordering: .relaxed) }
    }
}
