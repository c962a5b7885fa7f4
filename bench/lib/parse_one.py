#!/usr/bin/env python3
"""One measured run (bench/run run_one) -> one TSV line: rate, latency, CPU shares, proxy CPU µs per operation.

Arguments: test peer rep kind(gen|wrk|h2load) logfile jsonfile t0 t1 proxy_ticks0 proxy_ticks1 client0 client1
origin0 origin1 "sys0" "sys1" hz. Rates come from the load tool (its own window); CPU from /proc over [t0, t1]
inside that window, as peerbench (the team's independent harness, see bench/README.md) does, so the two tools'
µs/op are comparable.
"""
import json
import os
import re
import sys

(test, peer, rep, kind, lf, jf, t0, t1, p0, p1, c0, c1, o0, o1, s0, s1, hz) = sys.argv[1:18]
t0, t1, hz = float(t0), float(t1), float(hz)
wall = t1 - t0
txt = open(lf, errors="replace").read()
nan = float("nan")


def opt(v):
    return "-" if v is None else f"{v:.3f}"


def ms(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


rate = p50 = p99 = nan
extra = []
if kind == "gen":
    try:
        d = json.load(open(jf))
        w = d["window"]
        rate = d["conn_per_s"]
        lat = d["latency_ms"]["connection"]
        p50, p99 = lat["p50"], lat["p99"]
        # The generator omits optional keys that have no value (tickets_per_full without full handshakes,
        # tickets_per_resumed without resumptions): read them with get(), or one missing key blanks every column.
        extra += [f"resumed_frac={w['resumed_fraction']:.4f}", f"tickets_per_conn={w['tickets_per_connection']:.3f}",
                  f"tickets_per_full={opt(w.get('tickets_per_full'))}",
                  f"tickets_per_resumed={opt(w.get('tickets_per_resumed'))}",
                  f"errors={w['error_total']}", f"bad_status={w['bad_status']}",
                  f"hs_p50_ms={d['latency_ms']['handshake']['p50']:.3f}", f"p90_ms={lat['p90']:.3f}",
                  f"max_ms={lat['max']:.3f}", f"unfinished={d['unfinished_at_end']}"]
        for k, v in sorted(w["errors"].items()):
            if v:
                extra.append(f"err_{k}={v}")
        neg = d.get("negotiated", {})
        for k in ("full", "resumed"):
            if k in neg:
                extra.append(f"{k}_info={neg[k].replace(' ', '_')}")
        sh = d.get("by_shape", {}).get("schannel-like")
        if sh:
            extra.append(f"schannel_resumed_frac={sh['resumed_fraction']:.4f}")
            extra.append(f"default_resumed_frac={d['by_shape']['default']['resumed_fraction']:.4f}")
    except (OSError, ValueError, KeyError) as e:
        extra.append(f"PARSE_FAILED={type(e).__name__}")
elif kind == "wrk" and "Requests/sec:" in txt:
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", txt).group(1))
    m = re.search(r"\s50%\s+([\d.]+)(us|ms|s|m)\b", txt)
    if m: p50 = ms(*m.groups())
    m = re.search(r"\s99%\s+([\d.]+)(us|ms|s|m)\b", txt)
    if m: p99 = ms(*m.groups())
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", txt)
    n2 = re.search(r"Non-2xx or 3xx responses: (\d+)", txt)
    errs = (sum(int(x) for x in m.groups()) if m else 0) + (int(n2.group(1)) if n2 else 0)
    extra.append(f"errors={errs}")
elif kind == "h2load" and "finished in" in txt:
    rate = float(re.search(r"finished in ([\d.]+)(\w+), ([\d.]+) req/s", txt).group(3))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", txt)
    if m: extra.append(f"errors={int(m.group(5)) + int(m.group(6))}")
    m = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", txt)
    if m: p50 = ms(m.group(5), m.group(6))  # h2load has no percentiles: mean
else:
    extra.append("PARSE_FAILED")


def pct(a, b):
    try:
        a, b = float(a), float(b)
    except ValueError:
        return nan
    if wall <= 0 or b < a:
        return nan
    return (b - a) / hz / wall * 100


pc, cc, oc = pct(p0, p1), pct(c0, c1), pct(o0, o1)
b0, tt0, _ = map(float, s0.split())
b1, tt1, _ = map(float, s1.split())
ncpu = os.cpu_count() or 1
busy = (b1 - b0) / (tt1 - tt0) * 100 if tt1 > tt0 else nan          # % of the whole machine
busy_cpu = busy * ncpu                                                 # % of one CPU
other = busy_cpu - sum(x for x in (pc, cc, oc) if x == x)              # everything else, incl. softirq
us_per_op = pc / 100 / rate * 1e6 if rate == rate and rate > 0 else nan
print("\t".join([test, peer, rep, f"{rate:.1f}", f"{p50:.3f}", f"{p99:.3f}", f"{pc:.1f}", f"{cc:.1f}", f"{oc:.1f}",
                 f"{busy:.1f}", f"{us_per_op:.2f}", f"{other:.0f}", " ".join(extra)]))
