#!/usr/bin/env bash
# Builds the ProxyHTTP1 libFuzzer target and runs it for SECONDS (default 30).
# Usage: fuzz/run-http1.sh [SECONDS]
# Recipe from docs/TLS-NOTES.md "Fuzzing": the module's sources compiled together with the harness by
# swiftc -sanitize=fuzzer,address -parse-as-library. ld.gold's "Cannot export local symbol" warnings are harmless.
set -euo pipefail
seconds="${1:-30}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/fuzz/out/http1"
corpus="$out/corpus"
mkdir -p "$corpus" "$out/artifacts"

swiftc -sanitize=fuzzer,address -parse-as-library -O \
    -module-name HTTP1Fuzz \
    "$root"/Sources/ProxyCore/*.swift \
    "$root"/Sources/ProxyHTTP1/*.swift \
    "$root"/fuzz/http1/fuzz.swift \
    -o "$out/http1-fuzz" 2>&1 | grep -v "Cannot export local symbol" || true
test -x "$out/http1-fuzz"

# Seed corpus: valid requests and responses covering each framing, so mutations start near the interesting paths.
seed() { printf '%b' "$2" > "$corpus/$1"; }
seed req-get 'GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n'
seed req-pipelined 'GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n'
seed req-chunked 'POST /u HTTP/1.1\r\nHost: a:8443\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n5;ext=v\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n'
seed req-forwarded 'GET / HTTP/1.1\r\nHost: [::1]:80\r\nX-Forwarded-For: 1.2.3.4\r\nForwarded: for=x\r\nUpgrade: h2c\r\nTE: trailers\r\n\r\n'
seed resp-cl 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabcHTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n'
seed resp-chunked 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n'
seed resp-close 'HTTP/1.0 200\nServer : x\nContent-Type: text/plain\n\nbody until close'
seed resp-101 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x00'

cd "$out"
./http1-fuzz -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/" "$corpus"
