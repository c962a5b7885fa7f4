#!/usr/bin/env bash
# Builds the PROXY protocol parser's libFuzzer target and runs it for SECONDS (default 30).
# Usage: fuzz/run-proxyprotocol.sh [SECONDS]   (recipe as in fuzz/run-http1.sh)
set -euo pipefail
seconds="${1:-30}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/fuzz/out/proxyprotocol"
corpus="$out/corpus"
mkdir -p "$corpus" "$out/artifacts"

swiftc -sanitize=fuzzer,address -parse-as-library -O \
    -module-name ProxyProtocolFuzz \
    "$root"/Sources/ProxyCore/*.swift \
    "$root"/fuzz/proxyprotocol/fuzz.swift \
    -o "$out/proxyprotocol-fuzz" 2>&1 | grep -v "Cannot export local symbol" || true
test -x "$out/proxyprotocol-fuzz"

# Seed corpus: each header kind, so mutations start near the interesting paths.
seed() { printf '%b' "$2" > "$corpus/$1"; }
seed v1-tcp4 'PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n\x16\x03\x01'
seed v1-tcp6 'PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n'
seed v1-unknown 'PROXY UNKNOWN\r\n'
seed v2-tcp4 '\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x11\x0a\x01\x02\x03\x0a\x00\x00\x01\xc3\x50\x01\xbb\x01\x00\x02h2\x16\x03'
seed v2-tcp6 '\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x24\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x12\x34\x01\xbb'
seed v2-local '\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00'
seed cidr4 '10.0.0.0/8'
seed cidr6 '2001:db8::/32'

cd "$out"
./proxyprotocol-fuzz -max_total_time="$seconds" -max_len=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/" "$corpus"
