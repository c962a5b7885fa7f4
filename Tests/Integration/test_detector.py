"""Issue #14 end to end: the detector learns a renewal-intolerant client population by itself and (quarantine
mode) protects it, with NO policies loaded.

Clients are the project's SChannel bug emulator (schannel_client.SChannelEmulator: a NewSessionTicket inside an
abbreviated TLS 1.2 handshake makes it close the connection without an alert and retry offering TLS 1.0 only),
connecting from several loopback source addresses in different /24 prefixes (127.0.2.1, 127.0.3.1, ...). Ticket
keys are rotated through the admin API so every resumption presents a stale ticket.
"""
import json
import subprocess

import pytest

from conftest import admin, edgeproxy_bin

tlslite = pytest.importorskip("tlslite", reason="tlslite-ng is not installed (pip install tlslite-ng)")

from schannel_client import SChannelEmulator  # noqa: E402

SCHANNEL = "schannel-win10-tls12-nopss"
SOURCES = ["127.0.2.1", "127.0.3.1", "127.0.4.1", "127.0.5.1"]


def detector(proxy):
    status, body = admin(proxy, "GET", "/detector")
    assert status == 200, body
    return json.loads(body)


def rotate(proxy):
    status, body = admin(proxy, "POST", "/keys/rotate")
    assert status == 200, body


def start(proxies, certs, tmp_path, mode="quarantine", extra=""):
    empty = tmp_path / "no-policies"
    empty.mkdir(exist_ok=True)
    cfg = tmp_path / "edgeproxy.toml"
    cfg.write_text(f'[detector]\nmode = "{mode}"\n{extra}')
    crt, key = certs["a-ec"]
    return proxies(["--config", str(cfg), "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--workers", "1",
                    "--cert", crt, "--key", key, "--policies", str(empty)])


def state_of(report, ja4):
    for f in report["fingerprints"]:
        if f["ja4"] == ja4:
            return f
    return None


def run_population(p, emus, max_rounds=8, after_flag_rounds=3):
    """Rounds of: every client holds a ticket, keys rotate, every client comes back with its (now stale) ticket.

    Returns (ja4, downgrades before the flag, round of the flag, visits after the flag)."""
    sessions = [e.visit() for e in emus]
    ja4 = emus[0].handshakes[0].json_body()["ja4"]
    assert all(e.handshakes[0].json_body()["ja4"] == ja4 for e in emus)
    flagged_round = None
    downgrades_before = 0
    after = []
    for rnd in range(max_rounds + after_flag_rounds):
        rotate(p)
        for i, e in enumerate(emus):
            before = len(e.fallbacks)
            n = len(e.handshakes)
            s = e.visit(sessions[i])
            if flagged_round is not None:
                after.append((len(e.fallbacks) - before, e.handshakes[n:]))
            else:
                downgrades_before += len(e.fallbacks) - before
            sessions[i] = s if s is not None else e.visit()  # a browser starts over after a fallback
        if flagged_round is None:
            f = state_of(detector(p), ja4)
            if f is not None and f["state"] == "quarantined":
                flagged_round = rnd
        elif rnd - flagged_round >= after_flag_rounds:
            break
    return ja4, downgrades_before, flagged_round, after


def check_flag_and_protection(p, emus):
    ja4, downgrades_before, flagged_round, after = run_population(p, emus)
    assert flagged_round is not None, json.dumps(detector(p), indent=1)
    report = detector(p)
    f = state_of(report, ja4)
    # The default thresholds: >= 10 aborts after inline renewal from >= 3 /24 prefixes, >= 50 % of its renewals.
    assert f["total_aborts_after_inline_renewal"] >= 10, f
    assert f["distinct_client_prefixes"] >= 3, f
    assert f["abort_rate"] >= 0.5 and f["baseline_abort_rate"] == 0, f
    # Every abort was followed by the TLS 1.0 retry from the same address: seen as a fallback.
    assert f["total_fallbacks"] == f["total_aborts_after_inline_renewal"], f
    flagged = [x for x in report["flagged"] if x["ja4"] == ja4]
    assert len(flagged) == 1 and flagged[0]["state"] == "quarantined", report["flagged"]
    # Flagged within the threshold: the flag was raised in the round that reached 10 aborts (4 clients a round).
    assert downgrades_before <= 12, downgrades_before
    # From the flag on: every stale ticket gets a full handshake with a fresh ticket, and nobody falls back.
    assert len(after) >= 3 * len(emus)
    for downgrades, hss in after:
        assert downgrades == 0
        assert len(hss) == 1, hss
        hs = hss[0]
        assert not hs.resumed and hs.certificate_sent and not hs.inline_renewal, hs
        assert len(hs.tickets) == 1, hs
    # Quarantine is announced once at warning level, with the evidence.
    assert p.output().count("detector flagged a renewal-intolerant client fingerprint") == 1
    assert ja4 in p.output()
    print(f"\n{ja4}: {downgrades_before} downgrades before the flag (flag after round {flagged_round + 1}), "
          f"0 after, {len(after)} stale-ticket visits after the flag")
    return ja4, downgrades_before


def test_schannel_emulator_from_several_prefixes_is_flagged_then_protected(proxies, certs, tmp_path):
    p = start(proxies, certs, tmp_path)
    emus = [SChannelEmulator(p.port, SCHANNEL, source=s) for s in SOURCES]
    ja4, _ = check_flag_and_protection(p, emus)

    # `edgeproxy detector status|export`: the export is a policy file matching the flagged JA4...
    admin_addr = f"127.0.0.1:{p.admin_port}"
    st = subprocess.run([edgeproxy_bin(), "detector", "status", "--admin", admin_addr], capture_output=True,
                        text=True, timeout=30)
    assert st.returncode == 0 and ja4 in st.stdout and "quarantined" in st.stdout, st
    pol = tmp_path / "exported"
    pol.mkdir()
    ex = subprocess.run([edgeproxy_bin(), "detector", "export", "--admin", admin_addr, "--output",
                         str(pol / "flagged.toml")], capture_output=True, text=True, timeout=30)
    assert ex.returncode == 0, ex
    text = (pol / "flagged.toml").read_text()
    assert f'ja4 = ["{ja4}"]' in text and 'stale_ticket = "full-handshake"' in text, text
    # ...that protects the same clients on an instance whose detector is off.
    crt, key = certs["a-ec"]
    cfg = tmp_path / "off.toml"
    cfg.write_text('[detector]\nmode = "off"\n')
    q = proxies(["--config", str(cfg), "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--workers", "1",
                 "--cert", crt, "--key", key, "--policies", str(pol)])
    emu = SChannelEmulator(q.port, SCHANNEL, source="127.0.8.1")
    s = emu.visit()
    for _ in range(2):
        rotate(q)
        s = emu.visit(s)
    assert emu.fallbacks == [] and len(emu.handshakes) == 3
    assert all(h.certificate_sent and not h.inline_renewal for h in emu.handshakes)
    assert emu.handshakes[-1].json_body()["policy"] == "detector-renewal-intolerant"
    assert detector(q)["totals"]["renewal_aborted"] == 0


def test_export_with_nothing_flagged_fails_clearly(proxies, certs, tmp_path):
    p = start(proxies, certs, tmp_path)
    ex = subprocess.run([edgeproxy_bin(), "detector", "export", "--admin", f"127.0.0.1:{p.admin_port}"],
                        capture_output=True, text=True, timeout=30)
    assert ex.returncode == 1 and "no fingerprint is flagged" in ex.stderr, ex


def test_non_schannel_fingerprint_with_the_same_bug_is_flagged_the_same_way(proxies, certs, tmp_path):
    p = start(proxies, certs, tmp_path)
    emus = [SChannelEmulator(p.port, None, source=s) for s in SOURCES]  # tlslite-ng's own hello
    ja4, _ = check_flag_and_protection(p, emus)
    schannel = SChannelEmulator(p.port, SCHANNEL, source="127.0.9.1")
    schannel.visit()
    assert schannel.handshakes[0].json_body()["ja4"] != ja4, "not an SChannel fingerprint"


def test_observe_mode_flags_but_changes_nothing(proxies, certs, tmp_path):
    p = start(proxies, certs, tmp_path, mode="observe")
    emus = [SChannelEmulator(p.port, SCHANNEL, source=s) for s in SOURCES]
    sessions = [e.visit() for e in emus]
    for _ in range(3):
        rotate(p)
        for i, e in enumerate(emus):
            s = e.visit(sessions[i])
            sessions[i] = s if s is not None else e.visit()
    report = detector(p)
    assert [x["state"] for x in report["flagged"]] == ["flagged"], report
    assert sum(len(e.fallbacks) for e in emus) == 12, "observe mode keeps renewing inline"


def test_one_address_cannot_flag_a_fingerprint(proxies, certs, tmp_path):
    p = start(proxies, certs, tmp_path)
    emu = SChannelEmulator(p.port, SCHANNEL, source="127.0.7.1")
    s = emu.visit()
    for _ in range(12):
        rotate(p)
        s = emu.visit(s)
        if s is None:
            s = emu.visit()
    report = detector(p)
    assert report["flagged"] == [], report
    assert len(emu.fallbacks) == 12
    ja4 = emu.handshakes[0].json_body()["ja4"]
    f = state_of(report, ja4)
    assert f["total_aborts_after_inline_renewal"] == 12 and f["distinct_client_prefixes"] == 1, f


# ---------------------------------------------------------------- normal clients that drop connections

def _ctx(max_version, ciphers=None, alpn=None):
    import ssl
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.maximum_version = max_version
    if ciphers:
        c.set_ciphers(ciphers)
    if alpn:
        c.set_alpn_protocols(alpn)
    return c


def _profiles():
    """Four ClientHello shapes (four fingerprints) of normal clients: OpenSSL defaults, Python limited to TLS 1.2,
    curl-like (h2 + http/1.1 ALPN), Go-like (TLS 1.2, short ECDHE-only AEAD list, http/1.1)."""
    import ssl
    v = ssl.TLSVersion
    return [
        _ctx(v.TLSv1_3),
        _ctx(v.TLSv1_2),
        _ctx(v.TLSv1_3, alpn=["h2", "http/1.1"]),
        _ctx(v.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
                                "ECDHE-ECDSA-AES256-GCM-SHA384", alpn=["http/1.1"]),
    ]


def _linger_reset(sock):
    import struct
    import socket
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _handshake(port, ctx, source, session, drop_flight, reset):
    """One connection driven flight by flight through memory BIOs. `drop_flight` 1: close right after sending the
    ClientHello; 2: close instead of sending the client's second flight (its Finished) -- the abort the detector
    looks for, at a random point and for no reason; None: complete, read the
    TLS 1.3 tickets), then close. Returns the session to keep."""
    import socket
    import ssl
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    try:
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname="localhost", session=session)
        sent = 0
        while True:
            try:
                obj.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            data = out.read()
            if data:
                sent += 1
                if drop_flight == 2 and sent == 2:
                    if reset:
                        _linger_reset(sock)
                    return None
                sock.sendall(data)
                if drop_flight == 1 and sent == 1:
                    if reset:
                        _linger_reset(sock)
                    return None
            if done:
                break
            chunk = sock.recv(65536)
            if not chunk:
                return None
            inc.write(chunk)
        if obj.version() == "TLSv1.3":
            # The tickets follow the handshake: read until the session can be resumed (a short wait at most).
            sock.settimeout(0.5)
            try:
                while not (obj.session and obj.session.has_ticket):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    inc.write(chunk)
                    try:
                        obj.read(65536)
                    except ssl.SSLWantReadError:
                        pass
            except (socket.timeout, ssl.SSLError):
                pass
        return obj.session
    finally:
        sock.close()


def test_normal_clients_with_random_drops_are_never_flagged(proxies, certs, tmp_path):
    import random
    p = start(proxies, certs, tmp_path)
    rng = random.Random(14)
    profiles = _profiles()
    # 120 clients: 4 shapes x 30 addresses in 30 /24s, each keeping its session between connections.
    clients = [(i % 4, f"127.0.{10 + i % 30}.1") for i in range(120)]
    sessions = [None] * len(clients)
    drops = 0
    n = 10_000
    for k in range(n):
        if k % 250 == 249:
            rotate(p)  # so resumptions present stale tickets (inline renewal) as well as current ones
        c = rng.randrange(len(clients))
        shape, source = clients[c]
        drop_flight = None
        if rng.random() < 0.04:
            drops += 1
            drop_flight = rng.choice([1, 2, 2])
        s = _handshake(p.port, profiles[shape], source, sessions[c], drop_flight, reset=rng.random() < 0.5)
        sessions[c] = s if s is not None else (sessions[c] if drop_flight else None)
    report = detector(p)
    t = report["totals"]
    observed = sum(v for key, v in t.items() if key.startswith(("renewal_", "baseline_")))
    assert observed >= n - drops, t
    assert t["renewal_completed"] > 1000 and t["renewal_aborted"] > 10 and t["baseline_aborted"] > 10, t
    assert report["flagged"] == [], report["flagged"]
    worst = max(report["fingerprints"], key=lambda f: f["abort_rate"])
    print(f"\n{n} handshakes, {drops} dropped at random; totals {t}; highest renewal abort rate "
          f"{worst['abort_rate']} ({worst['ja4']}); nothing flagged")


def test_flags_survive_a_restart_through_the_state_file(proxies, certs, tmp_path):
    state = tmp_path / "detector.tsv"
    p = start(proxies, certs, tmp_path, extra=f'state_file = "{state}"\n')
    emus = [SChannelEmulator(p.port, SCHANNEL, source=s) for s in SOURCES]
    ja4, _, flagged_round, _ = run_population(p, emus, after_flag_rounds=0)
    assert flagged_round is not None
    p.stop()
    assert ja4 in state.read_text()

    q = start(proxies, certs, tmp_path, extra=f'state_file = "{state}"\n')
    report = detector(q)
    assert [(f["ja4"], f["state"], f["source"]) for f in report["flagged"]] == [(ja4, "quarantined", "restored")]
    assert "restored from" in q.output()
    # Protected from the first stale ticket on, before this instance saw a single abort.
    emu = SChannelEmulator(q.port, SCHANNEL, source="127.0.6.1")
    s = emu.visit()
    for _ in range(2):
        rotate(q)
        s = emu.visit(s)
    assert emu.fallbacks == [] and all(h.certificate_sent and not h.inline_renewal for h in emu.handshakes)
