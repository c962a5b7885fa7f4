"""Latency histograms and the Grafana dashboard (issue 16 section 3), on the real binary.

A proxy with two workers, two pools (`alpha`, `beta`, routed by path) and session tickets takes known handshakes
(full, resumed, forced full by a stale key) and known requests (HTTP/1.1 and HTTP/2 to each pool, and requests the
proxy answers itself). Its real /metrics scrape must pass `promtool check metrics`, every histogram series must be
consistent (the documented buckets, cumulative, `+Inf` equal to `_count`) and the counts must equal what was done.
The dashboard in contrib/grafana is loaded as JSON; every PromQL expression in it must parse (`promtool check rules`)
and name only metrics that the scrape of a proxy really contains.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request

import pytest

import tls_wire as w
from conftest import ROOT, Origin, curl, wait_for, write_file

BUCKETS = ["0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0",
           "10.0", "+Inf"]
HISTOGRAMS = ["edgeproxy_tls_handshake_duration_seconds", "edgeproxy_http_request_duration_seconds",
              "edgeproxy_upstream_connect_duration_seconds", "edgeproxy_upstream_first_byte_seconds"]
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
DASHBOARD = os.path.join(ROOT, "contrib", "grafana", "edgeproxy-dashboard.json")

# openssl s_client and curl (OpenSSL) send no GREASE: this observe-mode policy matches them, so the per-policy
# counters the dashboard uses exist in the scrape.
POLICY = """
[[policy]]
name = "no-grease"
description = "test: every OpenSSL client"
priority = 10
mode = "observe"

[policy.actions]
stale_ticket = "full-handshake"

[policy.match]
grease = "absent"
"""


def parse(text):
    """[(name, {labels}, value)] of every sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"unparseable sample line: {line!r}"
        out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def scrape(proxy):
    with urllib.request.urlopen(proxy.admin + "/metrics", timeout=10) as r:
        return r.read().decode()


def promtool():
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool not found: install the Debian package `prometheus` (scripts/install-deps)")
    return exe


def histograms(samples, family):
    """{labels-without-le (sorted tuple): {"buckets": [(le, v)], "count": v, "sum": v}} for one family."""
    series = {}
    for name, labels, v in samples:
        if name == family + "_bucket":
            key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
            series.setdefault(key, {"buckets": []})["buckets"].append((labels["le"], v))
        elif name in (family + "_count", family + "_sum"):
            key = tuple(sorted(labels.items()))
            series.setdefault(key, {"buckets": []})[name[len(family) + 1:]] = v
    return series


def discard(*urls):
    """curl arguments fetching every URL into /dev/null (one -o per URL)."""
    return [a for u in urls for a in (u, "-o", "/dev/null")]


def counts(samples, family, label):
    return {dict(k)[label]: s["count"] for k, s in histograms(samples, family).items()}


def check_consistent(samples):
    """Every series of every histogram: the documented buckets in order, cumulative, +Inf == _count, sum >= 0."""
    for family in HISTOGRAMS:
        series = histograms(samples, family)
        assert series, f"{family} missing from the scrape"
        for key, s in series.items():
            les = [le for le, _ in s["buckets"]]
            assert les == BUCKETS, (family, key, les)
            values = [v for _, v in s["buckets"]]
            assert all(a <= b for a, b in zip(values, values[1:])), f"{family}{key} not cumulative: {values}"
            assert values[-1] == s["count"], f"{family}{key}: +Inf {values[-1]} != _count {s['count']}"
            assert s["sum"] >= 0


@pytest.fixture
def setup(proxies, certs, tmp_path):
    origins = [Origin(), Origin()]
    crt, key = certs["a-ec"]
    pol = tmp_path / "policies"
    pol.mkdir()
    write_file(pol, "no-grease.toml", POLICY)
    cfg = write_file(tmp_path, "edgeproxy.toml", f"""
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
workers = 2

[[certificates]]
cert = "{crt}"
key = "{key}"

[policies]
dir = "{pol}"

[tickets]
stale_action = "full-handshake"

[upstreams.alpha]
servers = ["{origins[0].url}"]

[upstreams.beta]
servers = ["{origins[1].url}"]

[[routes]]
path_prefix = "/a"
upstream = "alpha"

[[routes]]
path_prefix = "/b"
upstream = "beta"
""")
    p = proxies(["--config", cfg])
    yield p
    for o in origins:
        o.stop()


def test_histograms_pass_promtool_are_consistent_and_count_what_happened(setup, tmp_path):
    p = setup
    before = parse(scrape(p))
    assert all(counts(before, HISTOGRAMS[1], "pool").get(k, 0) == 0 for k in ("alpha", "beta", "(local)"))

    # Handshakes: a full one that leaves a ticket, a resumption under the same key, then one under a stale key
    # (stale_action = full-handshake: forced full). Each sends `GET /`, which no route matches: 404 from the proxy.
    sess = str(tmp_path / "t.sess")
    h = w.s_client(p.port, "1.2", sess_out=sess)
    assert h.full_handshake and w.session_has_ticket(sess), h.describe()
    h = w.s_client(p.port, "1.2", sess_in=sess)
    assert h.client_says_reused, h.describe()
    w.rotate(p)
    h = w.s_client(p.port, "1.2", sess_in=sess)
    assert h.full_handshake, h.describe()

    # Requests: HTTP/1.1 keep-alive and HTTP/2, to both pools.
    base = p.base
    r = curl("--http1.1", "-w", "%{http_code} %{num_connects}\\n",
             *discard(f"{base}/a/1", f"{base}/a/2", f"{base}/a/3", f"{base}/b/1", f"{base}/b/2"))
    assert r.returncode == 0 and r.stdout.split() == ["200", "1", "200", "0", "200", "0", "200", "0", "200", "0"], \
        r.stdout + r.stderr
    r = curl("--http2", "-w", "%{http_code} %{http_version}\\n", *discard(f"{base}/a/4", f"{base}/a/5", f"{base}/b/3"))
    assert r.returncode == 0 and r.stdout.split() == ["200", "2"] * 3, r.stdout + r.stderr

    want_requests = {"alpha": 5, "beta": 3, "(local)": 3}

    def done():
        s = parse(scrape(p))
        return s if counts(s, HISTOGRAMS[1], "pool") == want_requests else None

    try:
        samples = wait_for(done, timeout=10, what="request histogram counts")
    except AssertionError:
        raise AssertionError(f"request counts {counts(parse(scrape(p)), HISTOGRAMS[1], 'pool')} != {want_requests}")
    text = scrape(p)
    samples = parse(text)

    # promtool on the real scrape (format and lint: help text, suffixes, histogram shape).
    r = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"promtool check metrics failed ({r.returncode}):\n{r.stdout}{r.stderr}"
    assert text.count("# TYPE edgeproxy_") >= 40, "the scrape is missing most metric families"

    check_consistent(samples)

    # Counts match what was done.
    assert counts(samples, HISTOGRAMS[1], "pool") == want_requests
    hs = counts(samples, HISTOGRAMS[0], "kind")
    outcomes = {}
    for name, labels, v in samples:
        if name == "edgeproxy_tls_handshakes_total":
            outcomes[labels["outcome"]] = outcomes.get(labels["outcome"], 0) + v
    # Full: the first s_client and the two curl connections. The histogram's kinds group the counter's outcomes.
    assert hs == {"full": 3, "resumed": 1, "forced_full": 1}, (hs, outcomes)
    assert hs["full"] == sum(outcomes.get(o, 0) for o in ("full", "unknown_key", "expired_key"))
    assert hs["resumed"] == sum(outcomes.get(o, 0) for o in ("resumed", "resumed_renewed_inline",
                                                              "stale_resumed_no_renewal", "resumed_session_id"))
    assert hs["forced_full"] == outcomes.get("stale_forced_full", 0)
    # One first response byte per forwarded request; at least one (at most one per request) connect per pool.
    assert counts(samples, HISTOGRAMS[3], "pool") == {"alpha": 5, "beta": 3}
    connects = counts(samples, HISTOGRAMS[2], "pool")
    assert 1 <= connects["alpha"] <= 5 and 1 <= connects["beta"] <= 3, connects


def promql_of(dashboard):
    """Every PromQL expression of the dashboard: panel targets and query variables."""
    exprs = []

    def walk(v):
        if isinstance(v, dict):
            if isinstance(v.get("expr"), str):
                exprs.append(v["expr"])
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(dashboard["panels"])
    variables = []
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q)
            assert m, f"unexpected variable query {q!r}"
            variables.append(m.group(1))
    return exprs, variables


def test_dashboard_is_valid_json_and_uses_only_exported_metrics(setup):
    p = setup
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    exprs, variables = promql_of(dashboard)
    assert len(exprs) >= 15, exprs
    # The panels the issue asks for.
    titles = " | ".join(x.get("title", "") for x in dashboard["panels"]).lower()
    for want in ("by policy", "renewals vs forced full", "downgrades", "p99", "upstream health"):
        assert want in titles, f"no panel for {want!r}: {titles}"
    assert any("histogram_quantile" in e for e in exprs)

    # Every expression parses as PromQL (Grafana's variables replaced by values): promtool check rules.
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, e in enumerate(exprs + variables):
        e = e.replace("$__rate_interval", "5m").replace("$instance", ".*").replace("$pool", ".*")
        assert "$" not in e, f"unknown Grafana variable in {e!r}"
        rules += [f"      - record: dashboard:expr{i}", f"        expr: {json.dumps(e)}"]
    d = tempfile.mkdtemp(prefix="edgeproxy-dash-")
    try:
        path = write_file(d, "rules.yml", "\n".join(rules) + "\n")
        r = subprocess.run([promtool(), "check", "rules", path], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"a dashboard expression is not valid PromQL:\n{r.stdout}{r.stderr}"
    finally:
        shutil.rmtree(d, ignore_errors=True)

    # Make the per-policy and histogram series exist (a handshake matched by the policy, a request per pool), then
    # every metric name the dashboard uses must be in the real scrape.
    for path in ("/a/1", "/b/1"):
        assert curl("-o", "/dev/null", "-w", "%{http_code}", p.base + path).stdout == "200"
    names = wait_for(lambda: (lambda s: s if "edgeproxy_policy_matched_total" in s else None)(
        {n for n, _, _ in parse(scrape(p))}), timeout=10, what="policy counters in the scrape")
    used = set()
    for e in exprs + variables:
        found = re.findall(r"\b(edgeproxy_[a-z0-9_]+)", e)
        assert found, f"expression uses no EdgeProxy metric: {e!r}"
        used.update(found)
    missing = sorted(used - names)
    assert not missing, f"the dashboard uses metrics /metrics does not export: {missing}"
    for family in HISTOGRAMS:
        assert family + "_bucket" in used, f"the dashboard does not use {family}"


def test_every_metric_in_the_sources_has_help_text():
    """promtool rejects a family without HELP; series created lazily (PROXY protocol, HTTP/2, policies) may be absent
    from the scrapes above, so every metric name the sources register must have its text in MetricHelp.swift."""
    names = set()
    for d, _, files in os.walk(os.path.join(ROOT, "Sources")):
        for f in files:
            if f.endswith(".swift"):
                with open(os.path.join(d, f)) as src:
                    names.update(re.findall(r'label: "(edgeproxy_[a-z0-9_]+)"', src.read()))
    with open(os.path.join(ROOT, "Sources", "ProxyServer", "MetricHelp.swift")) as f:
        helped = set(re.findall(r'"(edgeproxy_[a-z0-9_]+)":', f.read()))
    assert len(names) >= 40, names
    missing = sorted(names - helped)
    assert not missing, f"metrics without help text in Sources/ProxyServer/MetricHelp.swift: {missing}"


def test_a_proxy_made_error_is_counted_once(proxies, tmp_path):
    """A 502 the proxy answers itself (origin refused) is one request in edgeproxy_http_requests_total: it was
    counted twice (once with the exchange's log, once when the error response was written)."""
    from conftest import dead_port

    cfg = write_file(tmp_path, "e.toml", f'upstreams = ["http://127.0.0.1:{dead_port()}"]\n')
    p = proxies(["--config", cfg, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--workers", "1"])
    r = curl("--http1.1", "-o", "/dev/null", "-w", "%{http_code}", p.base + "/x")
    assert r.stdout == "502", r
    samples = parse(scrape(p))
    fivexx = sum(v for n, l, v in samples if n == "edgeproxy_http_requests_total" and l.get("status_class") == "5xx")
    assert fivexx == 1, fivexx
