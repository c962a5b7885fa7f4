#!/usr/bin/env bash
# Builds and runs the ProxyHTTP1 hot-path micro-benchmark (bench/http1/main.swift) with -O.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$root/bench/out"
swiftc -O -wmo -module-name HTTP1Bench "$root"/Sources/ProxyHTTP1/*.swift "$root"/bench/http1/main.swift \
    -o "$root/bench/out/http1-bench"
"$root/bench/out/http1-bench"
