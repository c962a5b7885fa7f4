# Shared by bench/fingerprint-bench.sh and bench/detector-bench.sh (sourced; expects $out with $out/mods):
# the proxy's modules compiled as SwiftPM's release build does (one module each, swiftc -O -wmo, single-threaded
# since the machine is shared), and the fixtures' ClientHellos as "name hex" lines for bench/common/HelloFile.swift.

build_module() { # name, sources..., extra flags after --
    local name=$1; shift
    local srcs=() flags=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do srcs+=("$1"); shift; done
    [ $# -gt 0 ] && shift && flags=("$@")
    swiftc -O -wmo -j1 -num-threads 0 -parse-as-library -module-name "$name" \
        -emit-module -emit-module-path "$out/mods/$name.swiftmodule" \
        -c -o "$out/$name.o" -I "$out/mods" "${flags[@]}" "${srcs[@]}"
}

write_hellos() { # path: every fixture with raw ClientHello bytes
    python3 - "$1" <<'PY'
import glob, json, os, sys
with open(sys.argv[1], "w") as f:
    for path in sorted(glob.glob("Tests/Fixtures/clienthellos/*.json")):
        d = json.load(open(path))
        if isinstance(d, dict) and d.get("raw_hex"):
            f.write("%s %s\n" % (os.path.basename(path)[:-5], d["raw_hex"]))
PY
}
