import CProxyShims
import Glibc
import ProxyConfig
import ProxyCore
import ProxyEventLoop
import Synchronization

/// The access log: workers append finished JSON lines to a per-worker buffer and hand the whole buffer over once
/// per loop tick; a dedicated writer thread does the (possibly blocking) writes, so a slow stdout or disk never
/// stalls a worker. Lines beyond `maxPending` bytes are dropped and counted rather than growing memory.
///
/// Log rotation: ``reopen()`` (SIGUSR1, logrotate's `postrotate`) asks the writer thread to open the path again
/// and switch to the new file between two writes (dup3 onto the same descriptor, so no line is split or lost).
final class AccessLogSink: @unchecked Sendable {
    // SAFETY: `pending` and `dropped` are only touched under `lock`; `fd` is immutable after init (a reopen dup3s
    // the new file onto it, on the writer thread); `path` and `fields` are immutable.
    private let lock = Mutex<(pending: [UInt8], dropped: Int)>(([], 0))
    private let fd: Int32
    private let ownsFd: Bool
    private let path: String
    private let maxPending = 16 << 20
    private let stopFlag = Atomic<Bool>(false)
    private let reopenRequests = Atomic<Int>(0)
    /// The writer's wait: 20 ms between batches while lines come; after a second without any it parks (waits up to
    /// a second at a time) until `submit`, `reopen` or `stop` wakes it, so an idle proxy does not poll.
    private let sleeper = Sleeper()
    private let parked = Atomic<Bool>(false)
    private static let batchWait: Int64 = 20_000_000
    private static let parkedWait: Int64 = 1_000_000_000
    private static let passesBeforeParking = 50
    private var thread: OSThread?
    /// What each line carries (`[access_log] fields`).
    let fields: AccessLogFields
    /// Called on the writer thread after each reopen attempt with an error message, or nil on success.
    var onReopen: (@Sendable (String?) -> Void)?

    /// `path`: "stdout" or a file path (opened for append, created 0640).
    init(path: String, fields: AccessLogFields = .default) throws(SyscallErrorLike) {
        self.path = path
        self.fields = fields
        if path == "stdout" {
            fd = 1
            ownsFd = false
        } else {
            fd = try Self.openLog(path)
            ownsFd = true
        }
    }

    private static func openLog(_ path: String) throws(SyscallErrorLike) -> Int32 {
        let f = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard f >= 0 else {
            throw SyscallErrorLike("cannot open access log \(path): \(String(cString: strerror(errno)))")
        }
        return f
    }

    /// Asks the writer thread to reopen the file (after a rotation moved it away). Any thread; a no-op for stdout.
    func reopen() {
        reopenRequests.add(1, ordering: .releasing)
        sleeper.wake()
    }

    func start() {
        thread = OSThread { [self] in runWriter() }
    }

    /// Hands over a worker's finished lines (called once per loop tick when non-empty).
    func submit(_ lines: inout [UInt8]) {
        lock.withLock { st in
            if st.pending.count + lines.count > maxPending {
                st.dropped += 1
            } else {
                st.pending.append(contentsOf: lines)
            }
        }
        lines.removeAll(keepingCapacity: true)
        // A parked writer checked `pending` under the lock after parking: either it saw these lines or this sees it
        // parked (the lock orders the two), so no batch waits for a timeout.
        if parked.load(ordering: .acquiring) && parked.exchange(false, ordering: .acquiringAndReleasing) {
            sleeper.wake()
        }
    }

    /// Flushes what is pending and stops the writer thread.
    func stop() {
        stopFlag.store(true, ordering: .releasing)
        sleeper.wake()
        thread?.join()
        thread = nil
    }

    private func runWriter() {
        var out: [UInt8] = []
        var emptyPasses = 0
        while true {
            let stopping = stopFlag.load(ordering: .acquiring)
            lock.withLock { st in swap(&out, &st.pending) }
            if !out.isEmpty {
                var off = 0
                while off < out.count {
                    let n = out.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, out.count - off) }
                    if n <= 0 {
                        if errno == EINTR { continue }
                        break
                    }
                    off += n
                }
                out.removeAll(keepingCapacity: true)
                emptyPasses = 0
            } else {
                emptyPasses += 1
            }
            if reopenRequests.exchange(0, ordering: .acquiring) > 0 { reopenFile() }
            if stopping { break }
            if emptyPasses < Self.passesBeforeParking {
                sleeper.sleep(nanoseconds: Self.batchWait)
                continue
            }
            parked.store(true, ordering: .releasing)
            let idle = lock.withLock { $0.pending.isEmpty }
            if idle && reopenRequests.load(ordering: .acquiring) == 0 && !stopFlag.load(ordering: .acquiring) {
                sleeper.sleep(nanoseconds: Self.parkedWait)
            }
            parked.store(false, ordering: .releasing)
        }
        if ownsFd { close(fd) }
    }

    /// Writer thread: everything pending so far went to the old file; the next write goes to the new one.
    private func reopenFile() {
        guard ownsFd else {
            onReopen?(nil)
            return
        }
        do throws(SyscallErrorLike) {
            let f = try Self.openLog(path)
            defer { close(f) }
            guard cps_dup3_cloexec(f, fd) >= 0 else {
                throw SyscallErrorLike("cannot reopen access log \(path): \(String(cString: strerror(errno)))")
            }
            onReopen?(nil)
        } catch {
            onReopen?("\(error); still writing to the previous file")
        }
    }
}

/// An error with a message, for set-up failures outside the syscall wrapper.
struct SyscallErrorLike: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Formats the current wall-clock time as RFC 3339 UTC with milliseconds; caches the seconds part.
struct LogClock {
    private var cachedSecond: Int = -1
    private var prefix: [UInt8] = []

    mutating func appendTimestamp(into w: inout JSONWriter, key: StaticString) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let sec = Int(ts.tv_sec)
        if sec != cachedSecond {
            cachedSecond = sec
            var t = time_t(sec)
            var tmv = tm()
            gmtime_r(&t, &tmv)
            var buf = [CChar](repeating: 0, count: 32)
            strftime(&buf, 32, "%Y-%m-%dT%H:%M:%S", &tmv)
            prefix = buf.withUnsafeBufferPointer { Array(String(cString: $0.baseAddress!).utf8) }
        }
        let ms = Int(ts.tv_nsec) / 1_000_000
        w.key(key)
        w.bytes.append(34)  // "
        w.bytes.append(contentsOf: prefix)
        w.bytes.append(UInt8(ascii: "."))
        w.bytes.append(UInt8(ascii: "0") + UInt8(ms / 100))
        w.bytes.append(UInt8(ascii: "0") + UInt8(ms / 10 % 10))
        w.bytes.append(UInt8(ascii: "0") + UInt8(ms % 10))
        w.bytes.append(contentsOf: [UInt8(ascii: "Z"), 34])
        w.markValueWritten()
    }
}
