#!/usr/bin/env bash
# The renewal-intolerance detector's cost per handshake against the cost of a resumed handshake, in one run
# (issue #14: target < 1 % of a resumed handshake).
#   bench/detector-bench.sh [HANDSHAKES]     (default 2,000,000 per micro-benchmark run)
# 1. Micro-benchmark (bench/detector/main.swift): the detector's per-handshake code path as the proxy runs it —
#    worker side (fingerprint key lookup, quarantine check, observation push) and control side (drain + record) —
#    compiled with `swiftc -O -wmo` from Sources/ProxyCore, ProxyFingerprint and ProxyDetector (one module each, as
#    SwiftPM's release build does); CPU ns per handshake, median/min/max of 7 runs.
# 2. Resumed handshakes end to end: bench/run TESTS="res12 res13" with DETECTOR_OFF=1, i.e. EdgeProxy with the
#    default detector ("observe") next to the same build with `[detector] mode = "off"`: proxy CPU µs per resumed
#    handshake (medians over REPS, with the per-rep spread).
# Prints a markdown page (stdout); `PUBLISH=1` also writes it to bench/results/detector-cost.md.
# Knobs: REPS [5] DUR [3] (passed to bench/run), SKIP_BUILD [0], MICRO_ONLY [0] (stop after part 1, print its table).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
handshakes="${1:-2000000}"
out=bench/out/detector
rm -rf "$out"
mkdir -p "$out/mods"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    swift build -c release --product edgeproxy >/dev/null && swift build -c release --product edgeproxy-bench >/dev/null
fi

. bench/lib/micro.sh
build_module ProxyCore Sources/ProxyCore/*.swift
build_module ProxyFingerprint Sources/ProxyFingerprint/*.swift -- -I Sources/COpenSSL -enforce-exclusivity=unchecked
build_module ProxyDetector Sources/ProxyDetector/*.swift -- -enforce-exclusivity=unchecked
# "No lock on the handshake path": the modules the detector's per-handshake code lives in must not reference any
# lock (pthread mutexes/rwlocks, Synchronization.Mutex and its slow path, futex). The ProxyServer side (the
# classifier's three calls into them) is read in review: see the README.
locks=$(nm "$out/ProxyDetector.o" "$out/ProxyFingerprint.o" | grep -Ei 'pthread_(mutex|rwlock|spin)|Mutex|lockSlow|futex|unfair_lock' || true)
if [ -n "$locks" ]; then echo "lock symbols in the detector path's modules:" >&2; echo "$locks" >&2; exit 1; fi
swiftc -O -wmo -j1 -module-name DetectorBench -I "$out/mods" -I Sources/COpenSSL bench/detector/main.swift \
    bench/common/HelloFile.swift "$out"/ProxyCore.o "$out"/ProxyFingerprint.o "$out"/ProxyDetector.o -lssl -lcrypto -o "$out/detector-bench"

write_hellos "$out/hellos.txt"

# Pinned like bench/run's proxies (CPU 0), so both measurements see the same core.
taskset -c 0 "$out/detector-bench" "$out/hellos.txt" "$handshakes" >"$out/micro.md"
if [ "${MICRO_ONLY:-0}" = 1 ]; then grep -v '^DETECTOR_NS' "$out/micro.md"; exit 0; fi

REPS=${REPS:-5} DUR=${DUR:-3} TESTS="res12 res13" PEERS=" " DETECTOR_OFF=1 SKIP_BUILD=1 PUBLISH=0 OUT="$root/$out/run" \
    bench/run >"$out/run.log" 2>&1 || { tail -30 "$out/run.log" >&2; exit 1; }

python3 - "$out" <<'PY' >"$out/page.md"
import csv, re, statistics, subprocess, sys
out = sys.argv[1]
micro = open(f"{out}/micro.md").read()
ns_total = int(re.search(r"DETECTOR_NS_TOTAL=(\d+)", micro).group(1))
ns_worker = int(re.search(r"DETECTOR_NS_WORKER=(\d+)", micro).group(1))
rows = list(csv.DictReader(open(f"{out}/run/results.tsv"), delimiter="\t"))
env = open(f"{out}/run/env.txt").read()
print("# Detector cost per handshake (issue #14)\n")
print("Made by `bench/detector-bench.sh` (one run: the micro-benchmark, then bench/run's resumed-handshake rows).\n")
print("```\n" + env.strip() + "\n```\n")
print("## 1. The detector's code path, CPU ns per handshake (bench/detector/main.swift)\n")
print("Lock symbols referenced by ProxyDetector.o and ProxyFingerprint.o (nm: pthread mutex/rwlock/spin, Mutex, "
      "lockSlow, futex): none (the script stops otherwise).\n")
print("\n".join(l for l in micro.splitlines() if not l.startswith("DETECTOR_NS")).strip() + "\n")
print("## 2. Resumed handshakes, proxy CPU µs per handshake (bench/run, medians over reps)\n")
print("| row | detector observe (default) | detector off | observe − off | spread (max − min, all reps) | reps (observe / off) |")
print("|---|---|---|---|---|---|")
share = []
for t in ("res12", "res13"):
    def us(p):
        return [float(r["us_per_op"]) for r in rows if r["test"] == t and r["peer"] == p and r["us_per_op"] not in ("", "nan")]
    on, off = us("edgeproxy"), us("edgeproxy-detoff")
    if not on or not off:
        continue
    mon, moff = statistics.median(on), statistics.median(off)
    share.append((t, mon, ns_total / (mon * 1000) * 100, ns_worker / (mon * 1000) * 100))
    reps = " ".join(f"{x:.1f}" for x in on) + " / " + " ".join(f"{x:.1f}" for x in off)
    spread = max(on + off) - min(on + off)
    print(f"| {t} | {mon:.1f} | {moff:.1f} | {mon - moff:+.1f} | {spread:.1f} | {reps} |")
print("\n## Ratio\n")
print("| row | resumed handshake (observe), µs CPU | detector total ns | share | worker side only | < 1 %? |")
print("|---|---|---|---|---|---|")
for t, mon, pct, pw in share:
    print(f"| {t} | {mon:.1f} | {ns_total} | {pct:.2f} % | {pw:.2f} % | {'yes' if pct < 1 else 'NO'} |")
print("\nThe ratio uses the micro-benchmark (section 1), which measures the detector's code directly; section 2 puts")
print("the end-to-end difference of the two builds' modes next to the run-to-run spread of a resumed handshake.")
PY
cat "$out/page.md"
if [ "${PUBLISH:-0}" = 1 ]; then cp "$out/page.md" bench/results/detector-cost.md; fi
