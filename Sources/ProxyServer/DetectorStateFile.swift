import Glibc
import ProxyDetector

/// `[detector] state_file`: the flags, one per line, so a restart keeps protecting flagged clients. Tab-separated
/// text (no JSON reader in this module): ja4, ja3 hash, tag, flagged at, expires at (Unix seconds), then the evidence
/// (aborts, abort rate, baseline abort rate, prefixes, fallbacks). Lines starting with `#` are comments; a line that
/// does not parse is skipped (and counted), never fatal: the file is a cache of evidence, not configuration.
enum DetectorStateFile {
    static func render(_ flags: [FlaggedFingerprint]) -> String {
        var out = "# edgeproxy detector flags: ja4, ja3_hash, tag, flagged_at, expires_at, aborts, abort_rate, "
        out += "baseline_abort_rate, prefixes, fallbacks\n"
        for f in flags.sorted(by: { $0.flaggedAt < $1.flaggedAt }) {
            let fields = [
                clean(f.labels.ja4), clean(f.labels.ja3Hash), clean(f.labels.tag ?? ""), "\(f.flaggedAt)",
                "\(f.expiresAt)", "\(f.aborts)", "\(f.abortRate)", "\(f.baselineAbortRate)", "\(f.prefixes)",
                "\(f.fallbacks)",
            ]
            out += fields.joined(separator: "\t") + "\n"
        }
        return out
    }

    private static func clean(_ s: String) -> String {
        String(s.map { $0 == "\t" || $0 == "\n" || $0 == "\r" ? " " : $0 })
    }

    /// Parses `text`; returns the flags and how many lines were skipped.
    static func parse(_ text: String) -> (flags: [FlaggedFingerprint], skipped: Int) {
        var flags: [FlaggedFingerprint] = []
        var skipped = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) where !line.hasPrefix("#") {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 10, !f[0].isEmpty, let at = Double(f[3]), let until = Double(f[4]),
                let aborts = Double(f[5]), let rate = Double(f[6]), let base = Double(f[7]), let prefixes = Int(f[8]),
                let fallbacks = Double(f[9])
            else {
                skipped += 1
                continue
            }
            flags.append(
                FlaggedFingerprint(
                    key: DetectorKey.of(ja4: f[0]),
                    labels: FingerprintLabels(ja4: f[0], ja3Hash: f[1], tag: f[2].isEmpty ? nil : f[2]),
                    flaggedAt: at,
                    expiresAt: until,
                    aborts: aborts,
                    abortRate: rate,
                    baselineAbortRate: base,
                    prefixes: prefixes,
                    fallbacks: fallbacks,
                    local: false
                )
            )
        }
        return (flags, skipped)
    }

    /// The file's text, or nil when it does not exist or cannot be read.
    static func read(_ path: String) -> String? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n > 0 { bytes.append(contentsOf: buf[0..<n]) }
            if n < buf.count { break }
            if bytes.count > 64 << 20 { return nil }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Writes `text` to a temporary file beside `path` and renames it over `path`. Returns an error text on failure.
    static func write(_ text: String, to path: String) -> String? {
        let tmp = path + ".tmp"
        guard let f = fopen(tmp, "w") else { return "cannot write \(tmp): \(String(cString: strerror(errno)))" }
        let bytes = Array(text.utf8)
        let ok = fwrite(bytes, 1, bytes.count, f) == bytes.count
        let closed = fclose(f) == 0
        guard ok && closed else {
            unlink(tmp)
            return "cannot write \(tmp)"
        }
        guard rename(tmp, path) == 0 else { return "cannot rename \(tmp): \(String(cString: strerror(errno)))" }
        return nil
    }
}
