#!/usr/bin/env bash
# Fingerprint + policy-decision cost per handshake (parse + JA3 + JA4 + features + CompiledPolicySet.decide), the
# work TLSConnectionState.decideFromClientHello does for every connection.
#   bench/fingerprint-bench.sh [ROUNDS]        (default 20000 per hello)
# Compiles Sources/ProxyCore, Sources/ProxyFingerprint, Sources/ProxyTOMLSupport and Sources/ProxyPolicy with
# `swiftc -O -wmo` (one module each, as SwiftPM's release build does) and bench/fingerprint/main.swift against them. TOMLKit (for the real
# PolicyLoader reading policies/*.toml) is linked from the release build's objects, so run
# `swift build -c release --product edgeproxy` first. Hellos: the raw ClientHello bytes of every fixture that has
# them. Prints a markdown table; exits 1 if the mean CPU cost per handshake is 2% or more of a 300 µs full handshake.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
rounds="${1:-20000}"
rel=.build/release
out=bench/out/fingerprint
for f in "$rel/Modules/TOMLKit.swiftmodule" "$rel/TOMLKit.build" "$rel/CTOML.build"; do
    [ -e "$f" ] || { echo "missing $f: run swift build -c release --product edgeproxy first" >&2; exit 2; }
done
rm -rf "$out"
mkdir -p "$out/mods" "$out/toml"
ln -s "$root/$rel/Modules/TOMLKit.swiftmodule" "$out/toml/TOMLKit.swiftmodule"

. bench/lib/micro.sh
build_module ProxyCore Sources/ProxyCore/*.swift
build_module ProxyFingerprint Sources/ProxyFingerprint/*.swift -- -I Sources/COpenSSL
build_module ProxyTOMLSupport Sources/ProxyTOMLSupport/*.swift
# TOMLKit's interface needs its C shim module (CTOML); SwiftPM passes its module map the same way.
ctoml=(-Xcc "-fmodule-map-file=$root/$rel/CTOML.build/module.modulemap"
    -Xcc "-I$root/.build/checkouts/TOMLKit/Sources/CTOML/include")
build_module ProxyPolicy Sources/ProxyPolicy/*.swift -- -I Sources/COpenSSL -I "$out/toml" "${ctoml[@]}"

swiftc -O -wmo -j1 -module-name FingerprintBench -I "$out/mods" -I Sources/COpenSSL -I "$out/toml" "${ctoml[@]}" \
    bench/fingerprint/main.swift bench/common/HelloFile.swift "$out"/ProxyCore.o "$out"/ProxyFingerprint.o "$out"/ProxyTOMLSupport.o \
    "$out"/ProxyPolicy.o \
    "$rel"/TOMLKit.build/*.o "$rel"/CTOML.build/Sources/*.o \
    -lssl -lcrypto -lstdc++ -o "$out/fingerprint-bench"

write_hellos "$out/hellos.txt"

echo "# fingerprint + policy decision per handshake ($(uname -m), $(nproc) cores, $(swiftc --version 2>&1 | head -1))"
echo
exec "$out/fingerprint-bench" policies "$out/hellos.txt" "$rounds"
