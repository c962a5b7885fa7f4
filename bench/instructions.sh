#!/usr/bin/env bash
# Instructions per request of the proxy's own process, counted by valgrind's callgrind: a measure that does not
# move with the host's load, for no-regression checks between two builds on a shared, noisy machine where CPU-time
# A/B runs (bench/run with BASELINE_BIN) swing by more than the differences looked for.
#
#   bench/instructions.sh [BASELINE_BIN]
#
# For each row (ROWS, default "h2_64 h1_64 h2_16k h1_16k") and each binary (this tree's release build, and
# BASELINE_BIN when given), REPS times: start the proxy under callgrind in front of a plain-HTTP nginx origin
# (bench/conf/origin-nginx.conf.in, as bench/run), warm up with N/10 requests, zero the counters, run N requests
# (h2load: -c 32 -m 10 for HTTP/2, --h1 -c 50 for HTTP/1.1 keep-alive, the shapes of bench/run's rows), dump, and
# divide the instructions of the whole process (every thread) by N. ROWS may also name tls_64 (bench/run's row:
# HTTP/1.1 keep-alive 64 B with Host: tls.bench, which every proxy forwards over verified TLS to the origin's TLS
# port, keeping origin connections and sessions).
#
# What it counts and what it does not: user-space instructions of the proxy process, OpenSSL and nghttp2
# included; not the kernel's work (system calls are counted by bench/run SYSCALLS=1) and not cache misses. The
# load tool's timing still changes how requests batch into TLS records and reads, so repeated runs of one binary
# differ by ~1 %: REPS (default 3) runs each and the page shows min/median/max. The 32/50 connections' TLS
# handshakes fall inside the counted window (~2 % of the total at N = 40,000; N raises or lowers that share).
#
# Handshake rows (ROWS may also name res12, sid12, full12: bench/run's TLS 1.2 resumed-by-ticket, resumed-by-session-
# ID and full-handshake rows; res13, full13: the same over TLS 1.3): the load is edgeproxy-bench, -c 4 connections
# for DUR [30] seconds, one GET /64 per connection, and the count is instructions per connection. Each slot's first
# connection is a full handshake (the load tool starts without sessions), so a resumed row includes 4 full handshakes
# among its ~2,000 connections (~1 %, alike for every proxy); a row whose connections are not ≥ 98 % resumed (res12,
# res13, sid12) or that has errors fails the run instead of printing a number.
#
# PEERS=nginx adds nginx as a proxy under the same count (bench/conf/nginx-proxy.conf.in, as bench/run runs it, in
# single-process mode so that callgrind's counters can be zeroed and dumped; its shared session cache still
# resumes): a like-for-like instruction count next to the nginx this product is compared with. PEERS="nginx haproxy"
# adds HAProxy too (bench/conf/haproxy.cfg.in, nbthread 1, `-db`), one ratio column per peer.
#
# Needs valgrind (scripts/install-deps installs it), nginx and h2load. Prints a markdown table; `OUT=FILE` also
# writes it there. Knobs: N [40000] REPS [3] ROWS, DUR [30], PEERS [none], SKIP_BUILD [0], BASEPORT [27900],
# KEEP_DUMPS [none: a directory that keeps every run's callgrind dump, named BINARY-ROW-TIME-per-OPS.callgrind],
# EP_ARGS [none: more EdgeProxy options for every EdgeProxy build, e.g. "--ticket-rotation 3s --ticket-lifetime
# 120s" to count bench/run's rotation rows against a run without them].

set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
ROOT=$root
. "$root/bench/lib/files.sh"
baseline="${1:-}"
N=${N:-40000}
REPS=${REPS:-3}
ROWS=${ROWS:-"h2_64 h1_64 h2_16k h1_16k"}
BASE=${BASEPORT:-27900}
for tool in valgrind callgrind_control callgrind_annotate nginx h2load openssl objcopy; do
    command -v "$tool" >/dev/null || { echo "bench/instructions.sh: $tool not installed (scripts/install-deps)" >&2; exit 2; }
done
DUR=${DUR:-30}
PEERS=${PEERS:-}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    swift build -c release --product edgeproxy >/dev/null
    swift build -c release --product edgeproxy-bench >/dev/null
fi
hsbench="$root/.build/release/edgeproxy-bench"

bench_workdir ep-instr || exit 2
work=$BENCH_DIR

# valgrind 3.19 (Debian 12) cannot read Swift 6's DWARF 5: the binaries are measured with their debug sections
# stripped (symbols stay, so the per-function breakdown still has names).
objcopy --strip-debug .build/release/edgeproxy "$work/edgeproxy"
bins=("$work/edgeproxy")
names=("this build ($(git rev-parse --short HEAD 2>/dev/null || echo tree))")
if [ -n "$baseline" ]; then
    objcopy --strip-debug "$baseline" "$work/baseline"
    bins+=("$work/baseline")
    names+=("baseline ($(basename "$baseline"))")
fi
for peer in $PEERS; do
    case $peer in
    nginx)
        bins+=(nginx)
        names+=("nginx $(nginx -v 2>&1 | sed 's#.*nginx/##')")
        ;;
    haproxy)
        command -v haproxy >/dev/null || { echo "bench/instructions.sh: haproxy not installed" >&2; exit 2; }
        bins+=(haproxy)
        names+=("HAProxy $(haproxy -v | head -1 | awk '{print $3}')")
        ;;
    *) echo "bench/instructions.sh: unknown peer $peer (nginx, haproxy)" >&2; exit 2 ;;
    esac
done

# Certificates, origin bodies and peer configs as bench/run makes them (bench/lib/files.sh).
bench_files "$work" || { echo "bench/instructions.sh: certificate chain broken" >&2; exit 2; }
bench_confs "$work" "$BASE" "$((BASE + 6))" "$((BASE + 1))" "$((BASE + 1))"
mv "$work/origin-nginx.conf" "$work/origin.conf"
bench_ep_tls_config "$work" "$((BASE + 6))"
nginx -p "$work" -c "$work/origin.conf" >"$work/origin.log" 2>&1 &
pids+=($!)
wait_port() { for _ in $(seq 300); do ss -ltnH "sport = :$1" | grep -q . && return 0; sleep 0.1; done; return 1; }
wait_port "$BASE" || {
    echo "bench/instructions.sh: the nginx origin did not listen on 127.0.0.1:$BASE (BASEPORT=N picks other ports)" >&2
    cat "$work/origin.log" "$work/origin.error.log" >&2 2>/dev/null
    exit 1
}

handshake_row() { case $1 in res12 | res13 | sid12 | full12 | full13) return 0 ;; esac; return 1; }

load() { # row port count-or-seconds [json]
    local path=/64
    case $1 in *16k) path=/16k ;; esac
    local tls=1.2
    case $1 in *13) tls=1.3 ;; esac
    local hs=("$hsbench" -p "$2" -c 4 -w 0 -d "$3" --drain 5 --timeout 30 --path /64 -q --tls $tls)
    case $1 in
    h2_*) h2load -t 1 -c 32 -m 10 -n "$3" "https://127.0.0.1:$2$path" ;;
    h1_*) h2load --h1 -t 1 -c 50 -n "$3" "https://127.0.0.1:$2$path" ;;
    tls_64) h2load --h1 -t 1 -c 50 -n "$3" -H ":authority: tls.bench" "https://127.0.0.1:$2/64" ;;
    res12 | res13) "${hs[@]}" --mode resumed ${4:+--json "$4"} ;;
    sid12) "${hs[@]}" --mode resumed --no-ticket ${4:+--json "$4"} ;;
    full12 | full13) "${hs[@]}" --mode full ${4:+--json "$4"} ;;
    esac
}

start_proxy() { # bin port out; sets proxy_pid (no subshell, so that `wait` can reap it)
    if [ "$1" = nginx ]; then
        valgrind --tool=callgrind --callgrind-out-file="$3" --dump-instr=no nginx -p "$work" \
            -c "$work/nginx-proxy.conf" -g 'master_process off;' >"$work/proxy.log" 2>&1 &
        proxy_pid=$!
    elif [ "$1" = haproxy ]; then
        valgrind --tool=callgrind --callgrind-out-file="$3" --dump-instr=no haproxy -db -f "$work/haproxy.cfg" \
            >"$work/proxy.log" 2>&1 &
        proxy_pid=$!
    else
        valgrind --tool=callgrind --callgrind-out-file="$3" --dump-instr=no "$1" --config "$ep_config" \
            --upstream "http://127.0.0.1:$BASE" --cert "$work/chain.pem" --key "$work/leaf.key" --workers 1 \
            --policies "$work/policies" --listen "127.0.0.1:$2" ${EP_ARGS:-} >"$work/proxy.log" 2>&1 &
        proxy_pid=$!
    fi
}

# Connections of a handshake row's JSON, after checking it: no errors, and resumed rows resumed.
handshake_ops() { # row json
    python3 - "$1" "$2" <<'PY'
import json, sys
row, path = sys.argv[1], sys.argv[2]
t = json.load(open(path))["total"]
n, full = t["connections"], t["full"]
if t["error_total"] or t["bad_status"] or n == 0:
    sys.exit(f"bench/instructions.sh: {row}: {n} connections, {t['error_total']} errors, {t['bad_status']} bad status")
if not row.startswith("full") and t["resumed"] < 0.98 * n:
    sys.exit(f"bench/instructions.sh: {row}: only {t['resumed']} of {n} connections resumed")
print(n)
PY
}

measure() { # bin row -> instructions per request (per connection for a handshake row)
    local bin=$1 row=$2 port=$((BASE + 1)) out="$work/cg.out" ops p
    ep_config=bench/peerbench.toml
    [ "$row" = tls_64 ] && ep_config=$work/peerbench-tls.toml
    rm -f "$out"*
    start_proxy "$bin" "$port" "$out"
    p=$proxy_pid
    wait_port "$port" || { tail -5 "$work/proxy.log" >&2; kill "$p"; return 1; }
    if handshake_row "$row"; then
        load "$row" "$port" 2 >/dev/null
        callgrind_control -z "$p" >/dev/null 2>&1
        load "$row" "$port" "$DUR" "$work/hs.json" >/dev/null
        ops=$(handshake_ops "$row" "$work/hs.json") || { kill "$p"; return 1; }
    else
        load "$row" "$port" $((N / 10)) >/dev/null
        callgrind_control -z "$p" >/dev/null 2>&1
        load "$row" "$port" "$N" >"$work/load.log"
        if ! grep -q "$N succeeded" "$work/load.log"; then
            echo "bench/instructions.sh: $row load failed: $(grep requests: "$work/load.log")" >&2
            kill "$p"
            return 1
        fi
        ops=$N
    fi
    callgrind_control -d "$p" >/dev/null 2>&1
    kill "$p"
    wait "$p" 2>/dev/null || true
    local dump
    dump=$(ls -S "$out".* | head -1)
    if [ -n "${KEEP_DUMPS:-}" ]; then
        # For per-function comparisons (callgrind_annotate, divide by the connection/request count in the name).
        mkdir -p "$KEEP_DUMPS"
        cp "$dump" "$KEEP_DUMPS/$(basename "$bin")-$row-$(date +%s)-per-$ops.callgrind"
    fi
    callgrind_annotate "$dump" 2>/dev/null | awk -v n="$ops" '/PROGRAM TOTALS/ { gsub(",", "", $1); printf "%.0f\n", $1 / n; exit }'
}

stats() { # values... -> "median (min-max)"
    printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { printf "%s (%s–%s)", v[int((NR + 1) / 2)], v[1], v[NR] }'
}

{
    echo "Instructions per request (callgrind, whole proxy process, N = $N per run, $REPS runs: median (min–max));"
    echo "handshake rows (res12, res13, sid12, full12, full13): per connection, $DUR s of edgeproxy-bench -c 4 per run"
    echo
    printf '| row |'
    for n in "${names[@]}"; do printf ' %s |' "$n"; done
    [ -n "$baseline" ] && printf ' ratio (medians) |'
    for peer in $PEERS; do printf ' this build ÷ %s |' "$peer"; done
    echo
    printf '|---|'
    for _ in "${names[@]}"; do printf -- '---|'; done
    [ -n "$baseline" ] && printf -- '---|'
    for _ in $PEERS; do printf -- '---|'; done
    echo
    for row in $ROWS; do
        printf '| %s |' "$row"
        meds=()
        for b in "${bins[@]}"; do
            vals=()
            for _ in $(seq "$REPS"); do vals+=("$(measure "$b" "$row")"); done
            printf ' %s |' "$(stats "${vals[@]}")"
            meds+=("$(printf '%s\n' "${vals[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')")
        done
        [ -n "$baseline" ] && printf ' %s |' "$(awk -v a="${meds[0]}" -v b="${meds[1]}" 'BEGIN { printf "%.3f", a / b }')"
        first_peer=$((${#meds[@]} - $(wc -w <<<"$PEERS")))
        for ((i = first_peer; i < ${#meds[@]}; i++)); do
            printf ' %s |' "$(awk -v a="${meds[0]}" -v b="${meds[$i]}" 'BEGIN { printf "%.3f", a / b }')"
        done
        echo
    done
} | tee "${OUT:-/dev/null}"
