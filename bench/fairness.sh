#!/usr/bin/env bash
# bench/fairness.sh — how long a new client waits while large downloads saturate the proxy, next to nginx and
# HAProxy in the same run.
#
# Starts the bench origin (bench/conf/origin-nginx.conf.in: nginx on CPU 1, with a 1 MB file at /1m) and the proxies
# as bench/run does (the same configs: bench/peerbench.toml for EdgeProxy, bench/conf/*.in for the peers; one
# worker each, pinned to CPU 0). Then for each MODE, REP and proxy in turn: CONNS connections download /1m again and
# again for DUR seconds (h2load, on CPU 1; MODE h1: HTTP/1.1, one download per connection at a time; h2: HTTP/2,
# four streams per connection), and from 2 s in, a new client every 0.1 s makes a fresh TLS 1.3 handshake and one
# GET /64 (bench/lib/newconn_probe.py, CPU 1). Reported per proxy and mode, as medians over REPS of each rep's
# value: the new clients' handshake time and whole-request time (median and 90th percentile over the rep's
# probes), and the downloads' throughput (MB/s), which is what the new clients' wait buys.
#
# This is not a CPU-per-operation row: each proxy is saturated on purpose (~100 % of its CPU), and what differs
# is how it shares that CPU between busy connections and a newcomer. The load generator shares CPU 1 with the
# origin and the probe, so throughput is comparable between proxies within a run, not across hosts.
#
# Knobs (env): REPS [3] DUR [12] CONNS [128] MODES ["h1 h2"] PEERS ["nginx haproxy"] BASEPORT [27800]
#   BASELINE_BIN=<an older edgeproxy binary>: also runs it as "edgeproxy-base" (before/after in one run)
#   SKIP_BUILD=1 uses the existing .build/release binary. OUT=FILE also writes the markdown table there.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/lib/files.sh"
REPS=${REPS:-3}
DUR=${DUR:-12}
CONNS=${CONNS:-128}
MODES=${MODES:-"h1 h2"}
PEERS=${PEERS-"nginx haproxy"}
BASE=${BASEPORT:-27800}
for tool in nginx h2load openssl taskset python3 ss; do
    command -v "$tool" >/dev/null || { echo "bench/fairness.sh: $tool not installed (scripts/install-deps)" >&2; exit 2; }
done
[ "$DUR" -ge 6 ] || { echo "bench/fairness.sh: DUR must be at least 6 (2 s of load before the probes)" >&2; exit 2; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then (cd "$ROOT" && swift build -c release --product edgeproxy >/dev/null); fi
EP=$ROOT/.build/release/edgeproxy
[ -x "$EP" ] || { echo "bench/fairness.sh: $EP missing" >&2; exit 2; }

bench_workdir ep-fairness || exit 2
RUN=$BENCH_DIR
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

ORIGIN_PORT=$BASE
ORIGIN_TLS_PORT=$((BASE + 6))
declare -A PORT=([nginx]=$((BASE + 1)) [haproxy]=$((BASE + 2)) [edgeproxy]=$((BASE + 3)) [edgeproxy-base]=$((BASE + 5)))
for p in $ORIGIN_PORT $ORIGIN_TLS_PORT "${PORT[@]}"; do
    if ss -ltnH "sport = :$p" | grep -q .; then echo "bench/fairness.sh: port $p busy; set BASEPORT" >&2; exit 2; fi
done

# The certificate chain, bodies (/1m among them) and peer configs of bench/run (bench/lib/files.sh).
CERT=$RUN/chain.pem KEY=$RUN/leaf.key
bench_files "$RUN" || { echo "bench/fairness.sh: certificate chain broken" >&2; exit 2; }
bench_confs "$RUN" "$ORIGIN_PORT" "$ORIGIN_TLS_PORT" "${PORT[nginx]}" "${PORT[haproxy]}"

wait_port() {
    local i
    for i in $(seq 1 100); do
        ss -ltnH "sport = :$1" | grep -q . && return 0
        sleep 0.1
    done
    echo "bench/fairness.sh: nothing listens on port $1 (logs in $RUN)" >&2
    exit 1
}
start() { # name port cmd...
    local name=$1 port=$2
    shift 2
    "$@" >"$RUN/$name.out" 2>&1 &
    pids+=($!)
    wait_port "$port"
}
start origin "$ORIGIN_PORT" taskset -c 1 nginx -p "$RUN" -c "$RUN/origin-nginx.conf"
ep_args=(--config "$HERE/peerbench.toml" --upstream "http://127.0.0.1:$ORIGIN_PORT" --cert "$CERT" --key "$KEY"
    --workers 1 --policies "$RUN/policies")
proxies=(edgeproxy)
start edgeproxy "${PORT[edgeproxy]}" taskset -c 0 "$EP" "${ep_args[@]}" --listen "127.0.0.1:${PORT[edgeproxy]}"
if [ -n "${BASELINE_BIN:-}" ]; then
    proxies+=(edgeproxy-base)
    start edgeproxy-base "${PORT[edgeproxy-base]}" taskset -c 0 "$BASELINE_BIN" "${ep_args[@]}" \
        --listen "127.0.0.1:${PORT[edgeproxy-base]}"
fi
for p in $PEERS; do
    command -v "$p" >/dev/null || { echo "note: $p not installed, skipped" >&2; continue; }
    case $p in
    nginx) start nginx "${PORT[nginx]}" taskset -c 0 nginx -p "$RUN" -c "$RUN/nginx-proxy.conf" ;;
    haproxy) start haproxy "${PORT[haproxy]}" taskset -c 0 haproxy -db -f "$RUN/haproxy.cfg" ;;
    *) echo "bench/fairness.sh: unknown peer $p" >&2; exit 2 ;;
    esac
    proxies+=("$p")
done

results=$RUN/results.jsonl
for mode in $MODES; do
    case $mode in
    h1) load=(--h1 -c "$CONNS") ;;
    h2) load=(-c "$CONNS" -m 4) ;;
    *) echo "bench/fairness.sh: unknown mode $mode (h1, h2)" >&2; exit 2 ;;
    esac
    for rep in $(seq 1 "$REPS"); do
        for proxy in "${proxies[@]}"; do
            port=${PORT[$proxy]}
            # h2load -D can go on past its duration (an h2load issue, seen against nginx too): bounded by timeout.
            timeout $((DUR + 10)) taskset -c 1 h2load "${load[@]}" -D "$DUR" "https://127.0.0.1:$port/1m" \
                >"$RUN/load.out" 2>&1 &
            lp=$!
            sleep 2
            probe=$(taskset -c 1 python3 "$HERE/lib/newconn_probe.py" "$port" $((DUR - 4)))
            wait "$lp" || true
            mbs=$(grep -oE '[0-9.]+[KMG]B/s' "$RUN/load.out" | head -1 || true)
            failed=$(grep -oE '[0-9]+ failed' "$RUN/load.out" | head -1 | grep -oE '^[0-9]+' || true)
            printf '{"mode":"%s","rep":%s,"proxy":"%s","throughput":"%s","load_failed":"%s","probe":%s}\n' \
                "$mode" "$rep" "$proxy" "${mbs:-?}" "${failed:-?}" "$probe" >>"$results"
            echo "$mode rep $rep $proxy: ${mbs:-?} load-failed=${failed:-?}" >&2
        done
    done
done

python3 - "$results" "${OUT:-}" "$CONNS" "$DUR" "$REPS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
out, conns, dur, reps = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]

def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")

def mbs(t):
    units = {"KB/s": 1e-3, "MB/s": 1.0, "GB/s": 1e3}
    for u, f in units.items():
        if t.endswith(u):
            return float(t[: -len(u)]) * f
    return float("nan")

lines = [
    f"New clients at a proxy saturated by {conns} connections downloading 1 MB (DUR {dur} s, median over "
    f"{reps} reps of each rep's value; handshake: connect() to TLS 1.3 handshake done; whole: connect() to "
    "the end of a 64 B response).",
    "",
    "| mode | proxy | handshake ms, median / p90 | whole ms, median / p90 | new clients failed | downloads MB/s | downloads failed |",
    "|---|---|---|---|---|---|---|",
]
seen = []
for r in rows:
    k = (r["mode"], r["proxy"])
    if k not in seen:
        seen.append(k)
for mode, proxy in seen:
    rs = [r for r in rows if r["mode"] == mode and r["proxy"] == proxy]
    med = lambda f: statistics.median(f(r) for r in rs)
    hs50 = med(lambda r: pct(r["probe"]["handshake_ms"], 0.5))
    hs90 = med(lambda r: pct(r["probe"]["handshake_ms"], 0.9))
    wh50 = med(lambda r: pct(r["probe"]["whole_ms"], 0.5))
    wh90 = med(lambda r: pct(r["probe"]["whole_ms"], 0.9))
    failed = sum(r["probe"]["failed"] for r in rs)
    tput = med(lambda r: mbs(r["throughput"]))
    lf = ",".join(r["load_failed"] for r in rs)
    lines.append(
        f"| {mode} | {proxy} | {hs50:.1f} / {hs90:.1f} | {wh50:.1f} / {wh90:.1f} | {failed} | {tput:.0f} | {lf} |"
    )
text = "\n".join(lines) + "\n"
print(text)
if out:
    open(out, "w").write(text)
EOF
