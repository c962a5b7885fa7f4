// The renewal-intolerance detector's cost per handshake (issue #14, "Cost"), on the code the proxy runs:
//   worker side (HandshakeClassifier.noteForDetector + the quarantine check + observe, per handshake, on the loop
//     thread): ClientHello.ja4InputsHash, FingerprintLabelCache.lookup, highestOfferedVersion, offersFallbackSCSV,
//     Set<UInt64>.contains on the published quarantine set, one HandshakeObservation, monotonicNanos(),
//     ObservationQueue.push;
//   control side (DetectorRuntime.tick, once a second, on the control thread): ObservationQueue.drain into
//     Detector.record.
// The ClientHello parse is not counted: the proxy parses every hello whatever the detector's mode (policies,
// rejection of malformed hellos). Hellos: the fixtures' real ClientHellos, client addresses spread over 2,000 /24s,
// a mix of kinds and results like a busy listener's (90 % baseline, 10 % renewal, 2 % aborts), 8 flagged keys.
// Built and run by bench/detector-bench.sh; prints one markdown table of ns per handshake (CPU time).
import Glibc
import ProxyCore
import ProxyDetector
import ProxyFingerprint

let args = CommandLine.arguments
guard args.count >= 2 else {
    print("usage: detector-bench HELLOS_FILE [HANDSHAKES]")
    exit(2)
}
let total = args.count > 2 ? Int(args[2])! : 2_000_000
let hellos = readHelloFile(args[1]).compactMap { try? ClientHello.parse(handshake: $0.bytes) }

/// What a worker holds (HandshakeClassifier): the label cache, the published quarantine set, its ring.
final class WorkerSide {
    var cache = FingerprintLabelCache()
    let quarantined: Set<UInt64>
    let queue = ObservationQueue(capacity: 8192)
    init(quarantined: Set<UInt64>) { self.quarantined = quarantined }

    /// One handshake: the hello's detector note and quarantine answer, then its observation.
    /// (The hello is read in place through a pointer, as the classifier reads its local parsed hello: a by-value
    /// parameter here made the compiler copy the whole ClientHello per call, which the proxy never does.)
    @inline(never)
    func handshake(
        _ hello: UnsafePointer<ClientHello>,
        address: ClientAddress,
        renewal: Bool,
        aborted: Bool
    ) -> Bool {
        // As HandshakeClassifier.noteForDetector does it.
        let h = hello.pointee.ja4InputsHash
        let entry: (key: UInt64, labels: FingerprintLabels)
        if let hit = cache.find(h) {
            entry = hit
        } else {
            entry = cache.insert(
                h,
                FingerprintLabels(ja4: hello.pointee.ja4Fingerprint, ja3Hash: hello.pointee.ja3.md5, tag: nil)
            )
        }
        let (key, labels) = entry
        let highest = hello.pointee.highestOfferedVersion
        let scsv = hello.pointee.offersFallbackSCSV
        let quarantine = !quarantined.isEmpty && quarantined.contains(key)
        queue.push(
            HandshakeObservation(
                key: key,
                labels: labels,
                kind: renewal ? .renewal : .baseline,
                result: aborted ? .aborted : .completed,
                address: address,
                highestVersion: highest,
                fallbackSCSV: scsv,
                time: monotonicNanos()
            )
        )
        return quarantine
    }
}

// The workload, precomputed so the loop measures only the detector: hello index, address, kind, result.
var rng = SystemRandomNumberGenerator()
struct Shake {
    var hello: Int
    var address: ClientAddress
    var renewal: Bool
    var aborted: Bool
}
let plan: [Shake] = (0..<65536).map { _ in
    let r = Int.random(in: 0..<1000, using: &rng)
    return Shake(
        hello: Int.random(in: 0..<hellos.count, using: &rng),
        address: .v4(0x0A00_0000 | UInt32.random(in: 0..<2000, using: &rng) << 8 | UInt32.random(in: 1..<255)),
        renewal: r < 100,
        aborted: r % 50 == 0
    )
}
var flagged: Set<UInt64> = [DetectorKey.of(ja4: hellos[0].ja4Fingerprint)]
while flagged.count < 8 { flagged.insert(UInt64.random(in: 1...UInt64.max, using: &rng)) }

/// One run: `total` handshakes, drained every 4096 (the control thread drains once a second; a bigger batch only
/// helps it). Returns (worker CPU ns/handshake, control CPU ns/handshake), thread CPU time.
func run(_ n: Int) -> (Double, Double) {
    let w = WorkerSide(quarantined: flagged)
    let detector = Detector(settings: DetectorSettings())
    let wall = Double(Timestamp.wallClockNow().nanosecondsSinceEpoch) / 1e9
    var workerNs: UInt64 = 0
    var controlNs: UInt64 = 0
    var sink = 0
    var i = 0
    while i < n {
        let batch = min(4096, n - i)
        let t0 = now(CLOCK_THREAD_CPUTIME_ID)
        // Through a buffer pointer: the hello is borrowed as the classifier borrows its parsed hello, not copied.
        hellos.withUnsafeBufferPointer { hs in
            for j in 0..<batch {
                let s = plan[(i + j) & 65535]
                if w.handshake(hs.baseAddress! + s.hello, address: s.address, renewal: s.renewal, aborted: s.aborted) {
                    sink += 1
                }
            }
        }
        let t1 = now(CLOCK_THREAD_CPUTIME_ID)
        w.queue.drain { o in if detector.record(o, wall: wall) != nil { sink += 1 } }
        _ = detector.expire(wall: wall)
        let t2 = now(CLOCK_THREAD_CPUTIME_ID)
        workerNs += t1 - t0
        controlNs += t2 - t1
        i += batch
    }
    precondition(w.queue.dropped == 0, "the ring overflowed")
    if sink == -1 { print("") }
    return (Double(workerNs) / Double(n), Double(controlNs) / Double(n))
}

/// The worker side's parts, cumulative, to show where its time goes (CPU ns per handshake).
func stages(_ n: Int) -> [(String, Double)] {
    let w = WorkerSide(quarantined: flagged)
    hellos.withUnsafeBufferPointer { hs in
        for i in hs.indices { _ = w.handshake(hs.baseAddress! + i, address: .v4(1), renewal: false, aborted: false) }
    }
    w.queue.drain { _ in }
    var out: [(String, Double)] = []
    var sink: UInt64 = 0
    func time(_ label: String, _ body: (UnsafePointer<ClientHello>) -> UInt64) {
        let t0 = now(CLOCK_THREAD_CPUTIME_ID)
        hellos.withUnsafeBufferPointer { hs in
            for j in 0..<n { sink &+= body(hs.baseAddress! + plan[j & 65535].hello) }
        }
        out.append((label, Double(now(CLOCK_THREAD_CPUTIME_ID) - t0) / Double(n)))
    }
    time("ja4InputsHash") { p in p.pointee.ja4InputsHash }
    time("+ label cache lookup") { p in w.cache.find(p.pointee.ja4InputsHash)?.key ?? 0 }
    time("+ highest version, SCSV, quarantine check") { p in
        let k = w.cache.find(p.pointee.ja4InputsHash)?.key ?? 0
        return k &+ UInt64(p.pointee.highestOfferedVersion) &+ (p.pointee.offersFallbackSCSV ? 1 : 0)
            &+ (w.quarantined.contains(k) ? 1 : 0)
    }
    if sink == 42 { print("") }
    return out
}

_ = run(total / 10)  // warm-up (caches, the label cache, the detector's table)
var workers: [Double] = []
var controls: [Double] = []
for _ in 0..<7 {
    let (wk, ct) = run(total)
    workers.append(wk)
    controls.append(ct)
}
func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
func fmt(_ v: Double) -> String { String(Int(v.rounded())) }
let wk = workers.sorted()
let ct = controls.sorted()
let sums = zip(workers, controls).map { $0 + $1 }.sorted()
print("| detector path (CPU ns per handshake, 7 runs of \(total)) | median | min | max |")
print("|---|---|---|---|")
print("| worker side: note + quarantine check + observe | \(fmt(median(wk))) | \(fmt(wk[0])) | \(fmt(wk.last!)) |")
print("| control side: drain + Detector.record | \(fmt(median(ct))) | \(fmt(ct[0])) | \(fmt(ct.last!)) |")
print("| total | \(fmt(median(sums))) | \(fmt(sums[0])) | \(fmt(sums.last!)) |")
for (label, ns) in stages(total) { print("| worker side, cumulative: \(label) | \(fmt(ns)) | | |") }
print("")
print("hellos: \(hellos.count) fixtures; addresses over 2000 /24 prefixes; 10 % renewals, 2 % aborts; 8 flagged keys")
print("DETECTOR_NS_WORKER=\(fmt(median(wk)))")
print("DETECTOR_NS_TOTAL=\(fmt(median(sums)))")
