// Shared by the micro-benchmarks bench/fingerprint and bench/detector (their scripts compile it in): the clock and
// the fixtures' ClientHellos file that bench/lib/micro.sh writes.
import Glibc

/// `clock` (CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, ...) in nanoseconds.
func now(_ clock: clockid_t) -> UInt64 {
    var ts = timespec()
    clock_gettime(clock, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// The ClientHellos of a file of "name hex" lines, one handshake message each (malformed lines are skipped).
func readHelloFile(_ path: String) -> [(name: String, bytes: [UInt8])] {
    guard let fp = fopen(path, "r") else {
        print("cannot open \(path)")
        exit(2)
    }
    defer { fclose(fp) }
    var out: [(name: String, bytes: [UInt8])] = []
    var line: UnsafeMutablePointer<CChar>? = nil
    var cap = 0
    while getline(&line, &cap, fp) > 0 {
        let s = String(cString: line!).split(separator: " ")
        guard s.count == 2 else { continue }
        out.append((String(s[0]), hexBytes(s[1].prefix { $0 != "\n" })))
    }
    free(line)
    return out
}

private func hexBytes(_ s: Substring) -> [UInt8] {
    var out: [UInt8] = []
    var it = s.utf8.makeIterator()
    func v(_ c: UInt8) -> UInt8 { c <= 57 ? c - 48 : (c | 0x20) - 87 }
    while let a = it.next(), let b = it.next() { out.append(v(a) << 4 | v(b)) }
    return out
}
