import Glibc
import ProxyCore
import ProxyEventLoop
import Synchronization

/// The access log: workers append finished JSON lines to a per-worker buffer and hand the whole buffer over once
/// per loop tick; a dedicated writer thread does the (possibly blocking) writes, so a slow stdout or disk never
/// stalls a worker. Lines beyond `maxPending` bytes are dropped and counted rather than growing memory.
final class AccessLogSink: @unchecked Sendable {
    // SAFETY: `pending` and `dropped` are only touched under `lock`; `fd` is immutable after init.
    private let lock = Mutex<(pending: [UInt8], dropped: Int)>(([], 0))
    private let fd: Int32
    private let ownsFd: Bool
    private let maxPending = 16 << 20
    private let stopFlag = Atomic<Bool>(false)
    private var thread: OSThread?

    /// `path`: "stdout" or a file path (opened for append, created 0640).
    init(path: String) throws(SyscallErrorLike) {
        if path == "stdout" {
            fd = 1
            ownsFd = false
        } else {
            let f = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            guard f >= 0 else {
                throw SyscallErrorLike("cannot open access log \(path): \(String(cString: strerror(errno)))")
            }
            fd = f
            ownsFd = true
        }
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
    }

    /// Flushes what is pending and stops the writer thread.
    func stop() {
        stopFlag.store(true, ordering: .releasing)
        thread?.join()
        thread = nil
    }

    private func runWriter() {
        var out: [UInt8] = []
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
            }
            if stopping { break }
            usleep(20_000)
        }
        if ownsFd { close(fd) }
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
            prefix = Array(String(cString: buf).utf8)
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
