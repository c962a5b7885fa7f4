#!/usr/bin/env python3
"""One syscall-count run (bench/run SYSCALLS=1) -> one TSV line: test, peer, operations, syscalls per operation in
total and by name ("read=5.41 write=2.00 ...", most frequent first; EAGAIN and other failed calls included and
also given as errors per operation).

Arguments: test peer kind(gen|wrk|h2load) logfile jsonfile stracefile. The operation count is the load tool's
total over the whole run (strace is attached for the whole run: warm-up and connection set-up are included, as
they are in the CPU rows' per-operation figures). strace slows the proxy a lot, so only the counts mean anything,
never the rates or times of this run.
"""
import json
import re
import sys

test, peer, kind, lf, jf, sf = sys.argv[1:7]
txt = open(lf, errors="replace").read()
ops = 0
if kind == "gen":
    try:
        ops = json.load(open(jf))["total"]["connections"]
    except (OSError, ValueError, KeyError):
        ops = 0
elif kind == "wrk":
    m = re.search(r"(\d+) requests in", txt)
    ops = int(m.group(1)) if m else 0
elif kind == "h2load":
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", txt)
    ops = int(m.group(1)) if m else 0

calls, errors = {}, {}
for line in open(sf, errors="replace"):
    # % time  seconds  usecs/call  calls  errors  syscall   (errors may be blank)
    f = line.split()
    if len(f) >= 5 and re.match(r"^[\d.]+$", f[0]) and f[-1] != "total":
        name = f[-1]
        nums = f[1:-1]
        if len(nums) == 4:
            c, e = int(nums[2]), int(nums[3])
        elif len(nums) == 3:
            c, e = int(nums[2]), 0
        else:
            continue
        calls[name] = calls.get(name, 0) + c
        errors[name] = errors.get(name, 0) + e
# Sleeping and waiting of idle helper threads (timers, resolver) is not work per operation.
for idle in ("clock_nanosleep", "nanosleep", "futex", "restart_syscall"):
    calls.pop(idle, None)
    errors.pop(idle, None)
if ops <= 0:
    print(f"{test}\t{peer}\t0\tnan\t\t")
    sys.exit(0)
total = sum(calls.values()) / ops
by = " ".join(f"{k}={v / ops:.2f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if v / ops >= 0.005)
errs = sum(errors.values()) / ops
print(f"{test}\t{peer}\t{ops}\t{total:.2f}\t{errs:.2f}\t{by}")
