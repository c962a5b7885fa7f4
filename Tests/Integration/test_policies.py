"""Issue #4 end to end: the SChannel policy pack on the real binary, with real TLS 1.2 handshakes on loopback.

An SChannel-shaped client (tlslite-ng, ClientHello rebuilt from a recorded fixture) that presents a ticket sealed
under a stale key must get a FULL handshake (server Certificate) and a fresh ticket; every other client keeps
inline renewal (NewSessionTicket inside the abbreviated handshake). Also: the live path (access log, JSON page,
origin headers, per-policy metrics, observe mode), policy reload (SIGHUP and POST /reload, bad files rejected
with file:line:column, old set kept), and `edgeproxy classify`.
"""
import glob
import json
import os
import re
import shutil
import signal
import subprocess

import pytest

from conftest import ROOT, Origin, admin, edgeproxy_bin, wait_for

tlslite = pytest.importorskip("tlslite", reason="tlslite-ng is not installed (pip install tlslite-ng)")

from schannel_client import (FIXTURES, FixtureHello, SChannelEmulator, TicketClient,  # noqa: E402
                             load_fixture)

PACK = os.path.join(ROOT, "policies", "schannel.toml")
# Exact captures / full-parameter fixtures whose extensions the test client can rebuild (incl. session_ticket).
SCHANNEL_SHAPES = ["schannel-win10-tls12-nopss", "schannel-wininet-win10-11-tls12", "schannel-ie11-noalpn"]


# ---------------------------------------------------------------- helpers

def rotate(proxy):
    status, body = admin(proxy, "POST", "/keys/rotate")
    assert status == 200, body


def metrics(proxy):
    """{(name, frozenset(labels)): value} from GET /metrics."""
    status, text = admin(proxy, "GET", "/metrics")
    assert status == 200
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$", line)
        if not m:
            continue
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(proxy, name, **labels):
    """Sum of `name` over every series whose labels include `labels` (e.g. summed over workers)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in metrics(proxy).items() if n == name and want <= set(ls))


def access_log(proxy):
    out = []
    for line in proxy.output().splitlines():
        if line.startswith("{") and '"ticket"' in line:
            out.append(json.loads(line))
    return out


def wait_log(proxy, n, what="access log lines"):
    return wait_for(lambda: len(access_log(proxy)) >= n and access_log(proxy), timeout=10, what=what)


def policy_dir(tmp_path, files, name="policies"):
    d = tmp_path / name
    d.mkdir()
    for fname, text in files.items():
        (d / fname).write_text(text)
    return str(d)


def pack_text():
    with open(PACK) as f:
        return f.read()


def observe_copy(name="schannel-observe", priority=2000):
    """The shipped pack as an observe-mode policy with another name and tag."""
    t = pack_text()
    t = t.replace('name = "schannel"', f'name = "{name}"', 1)
    t = t.replace('mode = "enforce"', 'mode = "observe"', 1)
    t = t.replace("priority = 1000", f"priority = {priority}", 1)
    t = t.replace('tag = "schannel"', f'tag = "{name}"', 1)
    assert t.count(f'"{name}"') == 2 and 'mode = "observe"' in t
    return t


def start(proxies, certs, policies, *extra):
    crt, key = certs["a-ec"]
    return proxies(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--workers", "1",
                    "--cert", crt, "--key", key, "--policies", policies] + list(extra))


def schannel_client(proxy, fixture="schannel-win10-tls12-nopss"):
    return TicketClient(proxy.port, FixtureHello(load_fixture(fixture)), server_name="localhost")


def classify(path_or_bytes, policies=None, stdin=False):
    args = [edgeproxy_bin(), "classify"]
    if policies:
        args += ["--policies", policies]
    if stdin:
        r = subprocess.run(args + ["-"], input=path_or_bytes, capture_output=True, timeout=30, cwd=ROOT)
    else:
        r = subprocess.run(args + [path_or_bytes], capture_output=True, timeout=30, cwd=ROOT)
    return r


def classify_json(*a, **kw):
    r = classify(*a, **kw)
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout)


def assert_full_with_fresh_ticket(hs, old_ticket):
    """The server refused the ticket: full flight (Certificate...), a fresh ticket, and no inline renewal."""
    assert not hs.resumed, hs
    assert hs.certificate_sent, hs
    assert hs.flight[:4] == ["ServerHello", "Certificate", "ServerKeyExchange", "ServerHelloDone"], hs
    assert not hs.inline_renewal, hs
    assert len(hs.tickets) == 1 and hs.tickets[0] != old_ticket, hs
    # the fresh ticket comes in the server's second flight, after the client's key exchange
    assert hs.flight.index("NewSessionTicket") > hs.flight.index("ServerHelloDone")
    assert hs.rec.server_hello_session_id() != hs.sent_session_id


def assert_inline_renewal(hs, old_ticket):
    assert hs.resumed, hs
    assert not hs.certificate_sent, hs
    assert hs.flight[:3] == ["ServerHello", "NewSessionTicket", "CCS"], hs
    assert hs.inline_renewal and hs.ticket_before_ccs
    assert len(hs.tickets) == 1 and hs.tickets[0] != old_ticket
    assert hs.rec.server_hello_session_id() == hs.sent_session_id


# ---------------------------------------------------------------- 1. SChannel client, stale ticket

@pytest.mark.parametrize("fixture", SCHANNEL_SHAPES)
def test_schannel_shaped_client_is_seen_as_schannel(proxies, certs, tmp_path, fixture):
    p = start(proxies, certs, os.path.join(ROOT, "policies"))
    hs, _ = schannel_client(p, fixture).connect()
    fx = load_fixture(fixture)
    # What EdgeProxy says about the live connection...
    page = hs.json_body()
    assert page["policy"] == "schannel" and page["tag"] == "schannel", page
    assert page["ja4"] == fx["ja4"] or fx["ja4"] is None, (page["ja4"], fx["ja4"])
    if fx.get("ja3_md5"):
        assert page["ja3_hash"] == fx["ja3_md5"]
    # ...and what the offline classifier says about the exact bytes the client sent.
    rec = tmp_path / "hello.bin"
    rec.write_bytes(hs.rec.client_hello_record())
    c = classify_json(str(rec))
    assert c["policy"] == "schannel", c
    assert c["ja4"] == page["ja4"] and c["ja3_hash"] == page["ja3_hash"]
    assert c["features"]["extensions"] == ["0x%04x" % e for e in fx["extensions"]]
    assert c["features"]["cipher_suites"] == fx["cipher_suites"]
    assert not c["features"]["grease"] and not c["features"]["renegotiation_scsv"]


@pytest.mark.parametrize("fixture", SCHANNEL_SHAPES)
def test_schannel_stale_ticket_gets_full_handshake_and_fresh_ticket(proxies, certs, fixture):
    p = start(proxies, certs, os.path.join(ROOT, "policies"))
    c = schannel_client(p, fixture)
    first, s1 = c.connect()
    assert not first.resumed and first.certificate_sent and len(first.tickets) == 1
    assert first.json_body()["ticket_outcome"] == "full"

    # Under the current key the ticket simply resumes (the policy changes nothing there).
    again, s2 = c.connect(s1)
    assert again.resumed and again.flight[:2] == ["ServerHello", "CCS"], again
    assert again.json_body()["ticket_outcome"] == "resumed"

    rotate(p)
    stale, s3 = c.connect(s2)
    assert_full_with_fresh_ticket(stale, first.tickets[0])
    page = stale.json_body()
    assert page["ticket_outcome"] == "stale_forced_full" and page["resumed"] is False
    assert page["policy"] == "schannel" and page["stale_ticket_action"] == "full-handshake"

    # The fresh ticket is under the new key: the next visit resumes without any renewal.
    after, _ = c.connect(s3)
    assert after.resumed and "NewSessionTicket" not in after.flight, after
    assert after.json_body()["ticket_outcome"] == "resumed"

    assert metric(p, "edgeproxy_tls_handshakes_total", version="TLSv1.2", outcome="stale_forced_full") == 1
    assert metric(p, "edgeproxy_tls_handshakes_total", outcome="resumed_renewed_inline") == 0
    log = wait_log(p, 4)
    assert [l["ticket"] for l in log] == ["full", "resumed", "stale_forced_full", "resumed"]


# ---------------------------------------------------------------- 2. everyone else: inline renewal

def test_default_tlslite_client_keeps_inline_renewal(proxies, certs, tmp_path):
    p = start(proxies, certs, os.path.join(ROOT, "policies"))
    c = TicketClient(p.port)  # tlslite-ng's own hello: SCSV 0x00ff, no renegotiation_info extension
    first, s1 = c.connect()
    assert first.json_body()["policy"] is None
    rec = tmp_path / "hello.bin"
    rec.write_bytes(first.rec.client_hello_record())
    assert classify_json(str(rec))["policy"] is None
    rotate(p)
    hs, s2 = c.connect(s1)
    assert_inline_renewal(hs, first.tickets[0])
    page = hs.json_body()
    assert page["ticket_outcome"] == "resumed_renewed_inline" and page["policy"] is None
    # the renewed ticket resumes cleanly under the new key
    nxt, _ = c.connect(s2)
    assert nxt.resumed and nxt.json_body()["ticket_outcome"] == "resumed"
    assert metric(p, "edgeproxy_tls_handshakes_total", outcome="resumed_renewed_inline") == 1
    assert metric(p, "edgeproxy_tls_handshakes_total", outcome="stale_forced_full") == 0
    assert [l["ticket"] for l in wait_log(p, 3)] == ["full", "resumed_renewed_inline", "resumed"]


@pytest.mark.parametrize("variant", ["renegotiation_scsv", "renegotiation_info_in_middle", "x448_group"])
def test_near_miss_schannel_shapes_keep_inline_renewal(proxies, certs, variant):
    """One SChannel trait broken at a time: the pack must not match, so the stale ticket renews inline."""
    fx = load_fixture("schannel-win10-tls12-nopss")
    if variant == "renegotiation_scsv":
        fx["cipher_suites"] = fx["cipher_suites"] + ["0x00ff"]  # OpenSSL/Java signalling
    elif variant == "renegotiation_info_in_middle":
        ext = [e for e in fx["extensions"] if e != 65281]
        fx["extensions"] = ext[:5] + [65281] + ext[5:]  # Go/NSS-like position
    else:
        fx["supported_groups"] = fx["supported_groups"] + [30]  # x448: OpenSSL-family
    p = start(proxies, certs, os.path.join(ROOT, "policies"))
    c = TicketClient(p.port, FixtureHello(fx))
    first, s1 = c.connect()
    assert first.json_body()["policy"] is None, first.json_body()
    rotate(p)
    hs, _ = c.connect(s1)
    assert_inline_renewal(hs, first.tickets[0])
    assert hs.json_body()["ticket_outcome"] == "resumed_renewed_inline"


def test_openssl_s_client_keeps_inline_renewal(proxies, certs, tmp_path):
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("openssl CLI not installed")
    p = start(proxies, certs, os.path.join(ROOT, "policies"))
    sess = str(tmp_path / "sess.pem")
    req = b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nConnection: close\r\n\r\n"

    def s_client(*extra):
        r = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{p.port}", "-tls1_2",
                            "-servername", "localhost", "-ign_eof", "-msg"] + list(extra),
                           input=req, capture_output=True, timeout=30)
        return r.stdout.decode("utf-8", "replace")

    first = s_client("-sess_out", sess)
    assert "New, TLSv1.2" in first and os.path.getsize(sess) > 0
    rotate(p)
    out = s_client("-sess_in", sess)
    assert "Reused, TLSv1.2" in out, out[-2000:]
    inbound = re.findall(r"^<<< TLS 1\.2, Handshake \[length [0-9a-f]+\], (\w+)", out, re.M)
    assert inbound[:2] == ["ServerHello", "NewSessionTicket"], inbound
    assert "Certificate" not in inbound
    body = json.loads(out[out.index('{"client"'):].splitlines()[0])
    assert body["ticket_outcome"] == "resumed_renewed_inline" and body["policy"] is None
    assert metric(p, "edgeproxy_tls_handshakes_total", outcome="resumed_renewed_inline") == 1


# ---------------------------------------------------------------- 3. the SChannel failure itself

def _visits_across_rotations(p, emu, rotations):
    s = emu.visit()
    for _ in range(rotations):
        rotate(p)
        s = emu.visit(s)
        if s is None:  # fell back: a real browser starts over with a full handshake
            s = emu.visit()
    return s


def test_schannel_emulator_is_never_driven_to_tls10_with_pack(proxies, certs):
    p = start(proxies, certs, os.path.join(ROOT, "policies"))
    emu = SChannelEmulator(p.port, "schannel-win10-tls12-nopss")
    _visits_across_rotations(p, emu, rotations=3)
    assert emu.fallbacks == []
    # 1 initial full handshake + 3 stale-ticket visits, each a full handshake with a fresh ticket
    assert len(emu.handshakes) == 4
    assert all(h.certificate_sent and not h.inline_renewal and len(h.tickets) == 1 for h in emu.handshakes)
    assert metric(p, "edgeproxy_tls_handshakes_total", outcome="stale_forced_full") == 3
    assert metric(p, "edgeproxy_tls_handshakes_total", outcome="resumed_renewed_inline") == 0


def test_schannel_emulator_is_driven_to_tls10_without_pack(proxies, certs, tmp_path):
    empty = policy_dir(tmp_path, {})
    p = start(proxies, certs, empty)
    emu = SChannelEmulator(p.port, "schannel-win10-tls12-nopss")
    _visits_across_rotations(p, emu, rotations=2)
    assert len(emu.fallbacks) == 2, emu.fallbacks
    for f in emu.fallbacks:
        assert "abbreviated" in f["reason"]
        # EdgeProxy's default minimum is TLS 1.2, so IE's TLS 1.0 retry is refused: the user sees an error page
        assert f["retry"].startswith("TLS 1.0 retry failed"), f
    # The aborted inline renewals never complete, so they show up as failures, not as an outcome: 2 aborts +
    # 2 refused TLS 1.0 retries. Completed: the first visit and the two restarts, all full handshakes.
    assert metric(p, "edgeproxy_tls_handshake_failures_total") == 4
    assert metric(p, "edgeproxy_tls_handshakes_total", outcome="full") == 3
    assert metric(p, "edgeproxy_tls_handshakes_total", outcome="resumed_renewed_inline") == 0


# ---------------------------------------------------------------- 4. live path

def test_access_log_and_page_carry_fingerprints_and_policy(proxies, certs):
    p = start(proxies, certs, os.path.join(ROOT, "policies"))
    fx = load_fixture("schannel-win10-tls12-nopss")
    hs, _ = schannel_client(p).connect()
    other, _ = TicketClient(p.port).connect()
    page, opage = hs.json_body(), other.json_body()
    assert (page["ja3_hash"], page["ja4"], page["policy"], page["tag"]) == (
        fx["ja3_md5"], fx["ja4"], "schannel", "schannel")
    assert page["ja3"] == fx["ja3_string"]
    assert page["policy_mode"] == "enforce"
    assert opage["policy"] is None and opage["tag"] is None and re.fullmatch(r"[0-9a-f]{32}", opage["ja3_hash"])
    log = wait_log(p, 2)
    assert (log[0]["ja3"], log[0]["ja4"], log[0]["policy"], log[0]["tag"]) == (
        fx["ja3_md5"], fx["ja4"], "schannel", "schannel")
    assert log[1]["policy"] is None and log[1]["tag"] is None
    assert (log[1]["ja3"], log[1]["ja4"]) == (opage["ja3_hash"], opage["ja4"])
    assert metric(p, "edgeproxy_policy_matched_total", policy="schannel") == 1
    assert metric(p, "edgeproxy_policy_enforced_total", policy="schannel") == 1
    assert metric(p, "edgeproxy_policy_observed_total", policy="schannel") == 0


def test_a_client_seen_before_gets_its_first_verdict_from_the_cache(proxies, certs):
    """Verdicts are cached per worker by ClientHello shape. Repeat visits of one client (new randoms and key
    shares, another client in between, then a stale ticket) must be answered from the cache with exactly the first
    visit's policy, tag and fingerprints, and the other client must not pick any of it up. A key rotation keeps
    the cache (only a new policy set empties it)."""
    p = start(proxies, certs, os.path.join(ROOT, "policies"))
    fx = load_fixture("schannel-win10-tls12-nopss")
    c = schannel_client(p)
    first, s1 = c.connect()
    for _ in range(2):
        other, _ = TicketClient(p.port).connect()
        assert other.json_body()["policy"] is None
        again, _ = c.connect()
        assert again.json_body()["policy"] == "schannel"
    # Two shapes: each client's first visit computes its verdict, every later visit is a hit.
    assert metric(p, "edgeproxy_clienthello_verdict_cache_total", result="miss") == 2
    assert metric(p, "edgeproxy_clienthello_verdict_cache_total", result="hit") == 3
    rotate(p)
    # A ticket now, under a retired key. SChannel sends a 32-byte session ID with it (its first visit sent none),
    # and the session ID's length is a feature: a new shape, computed once.
    hs, _ = c.connect(s1)
    assert_full_with_fresh_ticket(hs, first.tickets[0])
    assert hs.json_body()["ticket_outcome"] == "stale_forced_full"
    log = wait_log(p, 6)
    mine = [(l["policy"], l["tag"], l["ja3"], l["ja4"]) for l in log if l["ja3"] == fx["ja3_md5"]]
    assert mine == [("schannel", "schannel", fx["ja3_md5"], fx["ja4"])] * 4, log
    assert [l["policy"] for l in log if l["ja3"] != fx["ja3_md5"]] == [None, None], log
    assert metric(p, "edgeproxy_policy_enforced_total", policy="schannel") == 4
    assert metric(p, "edgeproxy_clienthello_verdict_cache_total", result="miss") == 3
    assert metric(p, "edgeproxy_clienthello_verdict_cache_total", result="hit") == 3


def _headers_config(tmp_path, origin_port, policies, enabled=True):
    cfg = tmp_path / "edgeproxy.toml"
    cfg.write_text(f"""
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
workers = 1
upstreams = ["http://127.0.0.1:{origin_port}"]
[policies]
dir = "{policies}"
[policies.headers]
enabled = {"true" if enabled else "false"}
ja3 = "X-Test-JA3"
ja4 = "X-Test-JA4"
policy = "X-Test-Policy"
tag = "X-Test-Tag"
""")
    return str(cfg)


def _origin_headers(hs):
    doc = hs.json_body()
    return [(k.lower(), v) for k, v in doc["headers"]]


def test_origin_headers_opt_in_with_configured_names_and_spoofed_copies_stripped(proxies, certs, tmp_path):
    origin = Origin()
    try:
        cfg = _headers_config(tmp_path, origin.port, os.path.join(ROOT, "policies"))
        crt, key = certs["a-ec"]
        p = proxies(["--config", cfg, "--cert", crt, "--key", key])
        spoof = [("X-Test-Policy", "fake"), ("x-test-tag", "fake"), ("X-Test-JA3", "0" * 32),
                 ("X-Test-JA4", "t13d0000h2_000000000000_000000000000")]
        fx = load_fixture("schannel-win10-tls12-nopss")
        hs, _ = schannel_client(p).connect(path="/echo", headers=spoof)
        h = _origin_headers(hs)
        got = {k: [v for kk, v in h if kk == k] for k in ("x-test-ja3", "x-test-ja4", "x-test-policy", "x-test-tag")}
        assert got == {"x-test-ja3": [fx["ja3_md5"]], "x-test-ja4": [fx["ja4"]], "x-test-policy": ["schannel"],
                       "x-test-tag": ["schannel"]}, h
        assert not any(k.startswith("x-edgeproxy-") for k, _ in h), "default header names used despite config"

        # A client no policy matches: its forged policy/tag headers are removed and none are added.
        other, _ = TicketClient(p.port).connect(path="/echo", headers=spoof)
        h2 = _origin_headers(other)
        assert [v for k, v in h2 if k == "x-test-policy"] == []
        assert [v for k, v in h2 if k == "x-test-tag"] == []
        ja3 = [v for k, v in h2 if k == "x-test-ja3"]
        assert len(ja3) == 1 and ja3[0] != "0" * 32
    finally:
        origin.stop()


def test_origin_headers_are_off_by_default(proxies, certs, tmp_path):
    origin = Origin()
    try:
        cfg = _headers_config(tmp_path, origin.port, os.path.join(ROOT, "policies"), enabled=False)
        crt, key = certs["a-ec"]
        p = proxies(["--config", cfg, "--cert", crt, "--key", key])
        hs, _ = schannel_client(p).connect(path="/echo")
        assert not any(k.startswith("x-test-") for k, _ in _origin_headers(hs))
        assert hs.json_body()["method"] == "GET"
    finally:
        origin.stop()


def test_observe_mode_copy_counts_and_changes_nothing(proxies, certs, tmp_path):
    d = policy_dir(tmp_path, {"observe.toml": observe_copy()})
    p = start(proxies, certs, d)
    c = schannel_client(p)
    first, s1 = c.connect()
    page = first.json_body()
    assert page["policy"] == "schannel-observe" and page["policy_mode"] == "observe"
    assert page["stale_ticket_action"] == "renew-inline"
    rotate(p)
    hs, _ = c.connect(s1)
    assert_inline_renewal(hs, first.tickets[0])  # observe changes nothing: the stale ticket still renews inline
    assert hs.json_body()["ticket_outcome"] == "resumed_renewed_inline"
    assert metric(p, "edgeproxy_policy_matched_total", policy="schannel-observe") == 2
    assert metric(p, "edgeproxy_policy_observed_total", policy="schannel-observe") == 2
    assert metric(p, "edgeproxy_policy_enforced_total", policy="schannel-observe") == 0
    log = wait_log(p, 2)
    assert [l["policy"] for l in log] == ["schannel-observe"] * 2


def test_observe_copy_above_enforce_pack_shadows_without_changing_behaviour(proxies, certs, tmp_path):
    d = policy_dir(tmp_path, {"observe.toml": observe_copy(), "schannel.toml": pack_text()})
    p = start(proxies, certs, d)
    c = schannel_client(p)
    first, s1 = c.connect()
    rotate(p)
    hs, _ = c.connect(s1)
    assert_full_with_fresh_ticket(hs, first.tickets[0])  # the enforce policy below still applies
    assert hs.json_body()["ticket_outcome"] == "stale_forced_full"
    assert metric(p, "edgeproxy_policy_observed_total", policy="schannel-observe") == 2
    assert metric(p, "edgeproxy_policy_enforced_total", policy="schannel") == 2
    assert metric(p, "edgeproxy_policy_enforced_total", policy="schannel-observe") == 0


def test_observe_shadow_does_not_change_what_log_page_and_origin_see(proxies, certs, tmp_path):
    """'Observe changes nothing': adding an observe copy above the pack must leave the enforced policy's name and
    tag where operators and origins read them (the observe match is visible in the observed metric)."""
    origin = Origin()
    try:
        d = policy_dir(tmp_path, {"observe.toml": observe_copy(), "schannel.toml": pack_text()})
        crt, key = certs["a-ec"]
        p = proxies(["--config", _headers_config(tmp_path, origin.port, d), "--cert", crt, "--key", key])
        hs, _ = schannel_client(p).connect(path="/echo")
        h = _origin_headers(hs)
        log = wait_log(p, 1)[0]
        assert metric(p, "edgeproxy_policy_observed_total", policy="schannel-observe") == 1
        assert (log["policy"], log["tag"]) == ("schannel", "schannel"), log
        assert [v for k, v in h if k == "x-test-policy"] == ["schannel"], h
        assert [v for k, v in h if k == "x-test-tag"] == ["schannel"], h
    finally:
        origin.stop()


# ---------------------------------------------------------------- 5. reload

TYPOS = {
    # unknown key inside [policy.actions]: the position points at the key
    "unknown_key": ('stale_ticket = "full-handshake"', 'stale_tiket = "full-handshake"', "stale_tiket"),
    # TOML syntax error: unterminated string
    "toml_syntax": ('tag = "schannel"', 'tag = "schannel', 'tag = "schannel'),
}


def _line_of(text, needle):
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


@pytest.mark.parametrize("typo", sorted(TYPOS))
def test_reload_rejects_bad_policy_file_and_keeps_old_set(proxies, certs, tmp_path, typo):
    d = policy_dir(tmp_path, {"schannel.toml": pack_text()})
    path = os.path.join(d, "schannel.toml")
    p = start(proxies, certs, d)
    c = schannel_client(p)
    _, s = c.connect()
    assert metric(p, "edgeproxy_reload_failures_total") == 0

    old, new, marker = TYPOS[typo]
    bad = pack_text().replace(old, new, 1)
    assert bad != pack_text()
    line = _line_of(bad, marker)
    with open(path, "w") as f:
        f.write(bad)
    pos = re.compile(re.escape(path) + r":%d:\d+" % line)

    # SIGHUP: rejected, logged with file:line:column, counted
    p.signal(signal.SIGHUP)
    wait_for(lambda: metric(p, "edgeproxy_reload_failures_total") == 1, timeout=10, what="reload failure counted")
    wait_for(lambda: pos.search(p.output()), timeout=10, what=f"{path}:{line}:col in the log")
    assert "previous policies stay in force" in p.output()

    # POST /reload: rejected with the same position in the answer
    status, body = admin(p, "POST", "/reload")
    assert status == 422, body
    assert pos.search(body), body
    assert metric(p, "edgeproxy_reload_failures_total") == 2
    assert metric(p, "edgeproxy_reloads_total") == 0

    # The old set is still in force: a stale ticket still gets a full handshake
    rotate(p)
    hs, s = c.connect(s)
    assert not hs.resumed and hs.certificate_sent and not hs.inline_renewal, hs
    assert hs.json_body()["ticket_outcome"] == "stale_forced_full"
    assert hs.json_body()["policy"] == "schannel"

    # Fixed file with a different set: accepted, and the new actions apply to the next handshake
    fixed = pack_text().replace('stale_ticket = "full-handshake"', 'stale_ticket = "resume-without-renewal"', 1)
    fixed = fixed.replace('tag = "schannel"', 'tag = "schannel-v2"', 1)
    with open(path, "w") as f:
        f.write(fixed)
    status, body = admin(p, "POST", "/reload")
    assert status == 200 and "reloaded" in body, body
    assert metric(p, "edgeproxy_reloads_total") == 1
    assert metric(p, "edgeproxy_reload_failures_total") == 2
    rotate(p)
    hs, _ = c.connect(s)
    page = hs.json_body()
    assert page["tag"] == "schannel-v2" and page["stale_ticket_action"] == "resume-without-renewal", page
    assert page["ticket_outcome"] == "stale_resumed_no_renewal"
    assert hs.resumed and "NewSessionTicket" not in hs.flight and not hs.certificate_sent, hs


def test_sighup_reload_applies_a_valid_new_set(proxies, certs, tmp_path):
    d = policy_dir(tmp_path, {"schannel.toml": pack_text()})
    p = start(proxies, certs, d)
    c = schannel_client(p)
    assert c.connect()[0].json_body()["policy"] == "schannel"
    os.remove(os.path.join(d, "schannel.toml"))
    with open(os.path.join(d, "observe.toml"), "w") as f:
        f.write(observe_copy())
    p.signal(signal.SIGHUP)
    wait_for(lambda: metric(p, "edgeproxy_reloads_total") == 1, timeout=10, what="SIGHUP reload")
    first, s1 = c.connect()
    # The same hello shape as before the reload: the new set must have emptied the per-worker verdict cache.
    assert first.json_body()["policy"] == "schannel-observe"
    rotate(p)
    hs, _ = c.connect(s1)
    assert hs.inline_renewal, hs  # the enforce pack is gone: SChannel is exposed again
    assert metric(p, "edgeproxy_reload_failures_total") == 0


# ---------------------------------------------------------------- 6. edgeproxy classify

# Documented in Tests/ProxyPolicyTests/SChannelPackTests.swift: Go-hook captures with no extension order and no
# signature algorithms, so the recorded fields cannot show the traits the pack needs.
UNDECIDABLE = {"schannel-dotnet6-winserver2019-tls12", "schannel-dotnetfx48-winserver2022-tls13"}


def _hello_fixtures():
    out = []
    for path in sorted(glob.glob(os.path.join(FIXTURES, "*.json"))):
        with open(path) as f:
            d = json.load(f)
        if isinstance(d, dict) and "cipher_suites" in d and "schannel" in d:
            out.append(os.path.basename(path)[:-5])
    return out


HELLO_FIXTURES = _hello_fixtures()


def test_fixture_corpus_is_what_this_test_expects():
    assert len(HELLO_FIXTURES) >= 24
    assert UNDECIDABLE <= set(HELLO_FIXTURES)


@pytest.mark.parametrize("name", [n for n in HELLO_FIXTURES if n not in UNDECIDABLE])
def test_classify_fixture_policy_iff_schannel(name):
    fx = load_fixture(name)
    out = classify_json(os.path.join(FIXTURES, name + ".json"))
    assert (out["policy"] == "schannel") == bool(fx["schannel"]), (name, out["policy"])
    if fx.get("ja4"):
        assert out["ja4"] == fx["ja4"]
    if fx.get("ja3_md5") and fx.get("ja3_md5_verified"):
        assert out["ja3_hash"] == fx["ja3_md5"]
    if out["policy"] == "schannel":
        assert out["actions"] == {"stale_ticket": "full-handshake", "tag": "schannel"}


@pytest.mark.parametrize("name", sorted(UNDECIDABLE))
def test_classify_undecidable_fixtures_still_lack_the_fields(name):
    """Ratchet: these are excluded above only while their fixtures lack extension order and sigalgs."""
    fx = load_fixture(name)
    assert "extension wire order" in fx["unknown_fields"] and fx["signature_algorithms"] is None
    out = classify_json(os.path.join(FIXTURES, name + ".json"))
    assert out["policy"] is None, f"{name} now classifies as {out['policy']}: drop it from UNDECIDABLE"


RAW = [n for n in HELLO_FIXTURES if load_fixture(n).get("raw_hex")]


@pytest.mark.parametrize("name", RAW)
def test_classify_hex_binary_record_and_bare_handshake_agree(name, tmp_path):
    fx = load_fixture(name)
    ref = classify_json(os.path.join(FIXTURES, name + ".json"))
    hs, record = bytes.fromhex(fx["raw_hex"]), bytes.fromhex(fx["raw_record_hex"])
    forms = {
        "handshake.bin": hs,
        "record.bin": record,
        "handshake.hex": fx["raw_hex"].encode() + b"\n",
        "record.hex": b"0x" + record.hex().encode(),
        "record-colons.hex": ":".join("%02x" % b for b in record).encode(),
        "record-spaced.hex": b"\n".join(record.hex().upper().encode()[i:i + 32] for i in range(0, 2 * len(record), 32)),
    }
    for fname, data in forms.items():
        f = tmp_path / fname
        f.write_bytes(data)
        out = classify_json(str(f))
        assert (out["policy"], out["ja3_hash"], out["ja4"]) == (ref["policy"], ref["ja3_hash"], ref["ja4"]), fname
        assert out["ja4"] == fx["ja4"], fname
    # and from standard input
    out = classify_json(record, stdin=True)
    assert out["ja4"] == fx["ja4"] and out["policy"] == ref["policy"]


def test_classify_honours_policies_dir(tmp_path):
    empty = policy_dir(tmp_path, {})
    f = os.path.join(FIXTURES, "schannel-win10-tls12-nopss.json")
    assert classify_json(f, policies=empty)["policy"] is None
    obs = policy_dir(tmp_path, {"o.toml": observe_copy()}, name="obs")
    out = classify_json(f, policies=obs)
    assert out["policy"] == "schannel-observe" and out["actions"]["mode"] == "observe"
    assert out["actions"]["would_apply"]["stale_ticket"] == "full-handshake"
    assert "stale_ticket" not in {k for k in out["actions"] if k not in ("mode", "would_apply")}


MALFORMED = {
    "empty": b"",
    "whitespace": b"  \n\t ",
    "bad hex char": b"16030300zz",
    "odd hex digits": b"16030",
    "random binary": bytes(range(0x80, 0x100)) * 2,
    "truncated record": bytes.fromhex(load_fixture("schannel-win10-tls12-nopss")["raw_record_hex"])[:60],
    "not a handshake record": bytes.fromhex("1703030005") + b"hello",
    "server hello": bytes.fromhex("020000260303") + bytes(32) + b"\x00\xc0\x2b\x00",
    "broken json": b'{"cipher_suites": [',
}


@pytest.mark.parametrize("what", sorted(MALFORMED))
def test_classify_malformed_input_fails_with_a_message(what, tmp_path):
    f = tmp_path / "in"
    f.write_bytes(MALFORMED[what])
    for r in (classify(str(f)), classify(MALFORMED[what], stdin=True)):
        assert r.returncode != 0, (what, r.stdout)
        err = r.stderr.decode()
        assert err.startswith("edgeproxy classify: ") and len(err.strip()) > len("edgeproxy classify: "), err
        assert "Fatal error" not in err and "Stack dump" not in err
        assert r.stdout == b""


def test_classify_missing_file_and_bad_policy_dir(tmp_path):
    r = classify(str(tmp_path / "nope"))
    assert r.returncode != 0 and b"cannot read" in r.stderr
    bad = policy_dir(tmp_path, {"x.toml": "[[policy]]\nname = 1\n"})
    r = classify(os.path.join(FIXTURES, "schannel-win10-tls12-nopss.json"), policies=bad)
    assert r.returncode != 0 and re.search(rb"x\.toml:\d+:\d+", r.stderr), r.stderr


def test_reload_with_missing_policy_directory_keeps_the_packs(proxies, certs, tmp_path):
    """A policy directory that disappears (moved, unmounted) must not silently switch the running packs off:
    the reload is rejected, counted, and the SChannel workaround stays in force."""
    d = policy_dir(tmp_path, {"schannel.toml": pack_text()})
    p = start(proxies, certs, d)
    c = schannel_client(p)
    _, s = c.connect()
    os.rename(d, d + ".moved")
    status, body = admin(p, "POST", "/reload")
    assert status == 422 and "policy directory not found" in body, body
    assert metric(p, "edgeproxy_reload_failures_total") == 1
    rotate(p)
    hs, _ = c.connect(s)
    assert not hs.resumed and hs.certificate_sent and not hs.inline_renewal, hs
    assert hs.json_body()["policy"] == "schannel"
