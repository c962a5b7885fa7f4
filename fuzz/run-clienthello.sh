#!/usr/bin/env bash
# Fuzz the ClientHello parser with libFuzzer + ASan for SECONDS (default 20).
#   fuzz/run-clienthello.sh 20
# Builds fuzz/clienthello/fuzz.swift together with the ProxyCore and ProxyFingerprint sources (one module, so no
# SwiftPM sanitizer build of the whole package is needed), seeds the corpus with every fixture's raw bytes (both the
# handshake message and the record form) and testssl.sh's client-simulation hellos when installed, and runs in
# fuzz/out/clienthello (git-ignored). Exits non-zero on a finding; the crashing input is left as
# fuzz/out/clienthello/crash-*.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
out=fuzz/out/clienthello
mkdir -p "$out/corpus" "$out/seeds"

# Seed corpus: raw_hex / raw_record_hex of every fixture.
python3 - "$out/seeds" <<'PY'
import glob, json, os, sys
dest = sys.argv[1]
for path in sorted(glob.glob("Tests/Fixtures/clienthellos/*.json")):
    d = json.load(open(path))
    if not isinstance(d, dict):
        continue
    for key in ("raw_hex", "raw_record_hex"):
        h = d.get(key)
        if h:
            name = os.path.basename(path)[:-5] + "." + key
            with open(os.path.join(dest, name), "wb") as f:
                f.write(bytes.fromhex(h))
# testssl.sh's captured hellos (records and SSLv2-compatible ones), when the Debian package is installed.
sim = "/etc/testssl/client-simulation.txt"
if os.path.exists(sim):
    import re
    for i, h in enumerate(re.findall(r'handshakebytes\+=\("([0-9a-fA-F]+)"\)', open(sim).read())):
        with open(os.path.join(dest, "testssl-%03d" % i), "wb") as f:
            f.write(bytes.fromhex(h))
PY

# Single-threaded build: the machine is shared.
swiftc -sanitize=fuzzer,address -parse-as-library -O -j1 \
    -module-name ProxyFingerprint \
    -I Sources/COpenSSL \
    Sources/ProxyCore/*.swift Sources/ProxyFingerprint/*.swift fuzz/clienthello/fuzz.swift \
    -lssl -lcrypto \
    -o "$out/fuzz-clienthello" 2> >(grep -v "Cannot export local symbol" >&2)

# New inputs go to corpus/ (first directory); seeds/ is read-only input.
exec "$out/fuzz-clienthello" "$out/corpus" "$out/seeds" \
    -max_total_time="$seconds" -max_len=8192 -timeout=5 -rss_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$out/"
