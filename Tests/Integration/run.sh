#!/bin/sh
# Builds the release binary and runs the integration suite against it (real processes over loopback).
# Needs: swift, python3 + pytest, curl, openssl, wrk. Also builds edgeproxy-bench (test_bench_generator.py). Extra arguments go to pytest (e.g. -k sighup, -x).
set -eu
cd "$(dirname "$0")/../.."
swift build -c release --product edgeproxy
swift build -c release --product edgeproxy-bench
exec python3 -m pytest -q Tests/Integration "$@"
