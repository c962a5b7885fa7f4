"""Issue #14, "Fleet": a fingerprint the detector flags on instance A is applied by instance B through Redis, and a
Redis writer without the wrapping key cannot inject entries.

Two real edgeproxy instances (no policies, detector in quarantine mode) share one real redis-server (`[redis]`, here
used by `sessions.cache = "redis"`; the ticket keys stay per instance so the admin API can rotate them). Flags are
driven on A as in test_detector.py: the SChannel bug emulator from several loopback /24 prefixes.
"""
import json
import os
import time

import pytest

from conftest import wait_for
import tls_wire as w
from test_redis import redis_servers, wrapping_key  # noqa: F401 (fixtures)

pytest.importorskip("tlslite", reason="tlslite-ng is not installed (pip install tlslite-ng)")

from schannel_client import SChannelEmulator  # noqa: E402
from test_detector import SCHANNEL, SOURCES, detector, rotate  # noqa: E402

POLL = 0.3
PREFIX = "edgeproxy:tickets:detector:"


def fleet_member(proxies, certs, tmp_path, name, redis_url, key_file):
    d = tmp_path / name
    d.mkdir()
    (d / "no-policies").mkdir()
    cfg = d / "edgeproxy.toml"
    cfg.write_text(
        '[detector]\nmode = "quarantine"\n\n[sessions]\ncache = "redis"\n\n[redis]\n'
        f'url = "{redis_url}"\nwrapping_key_file = "{key_file}"\nwrapping_key_id = "test-1"\n'
        f'poll_interval = "{int(POLL * 1000)}ms"\nconnect_timeout = "200ms"\ncommand_timeout = "300ms"\n')
    crt, key = certs["a-ec"]
    return proxies(["--config", str(cfg), "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--workers", "1",
                    "--cert", crt, "--key", key, "--policies", str(d / "no-policies")])


def fleet_flag(p, ja4):
    for f in detector(p)["flagged"]:
        if f["ja4"] == ja4:
            return f
    return None


def flag_on(p, sources=SOURCES, max_rounds=8):
    """Drives the SChannel emulators against `p` round by round until `p` flags them; returns (ja4, the monotonic
    time `p` first reported the flag)."""
    emus = [SChannelEmulator(p.port, SCHANNEL, source=s) for s in sources]
    sessions = [e.visit() for e in emus]
    ja4 = emus[0].handshakes[0].json_body()["ja4"]
    for _ in range(max_rounds):
        rotate(p)
        for i, e in enumerate(emus):
            s = e.visit(sessions[i])
            sessions[i] = s if s is not None else e.visit()
        if fleet_flag(p, ja4) is not None:
            return ja4, time.monotonic()
    pytest.fail("not flagged: " + json.dumps(detector(p), indent=1))


def test_instance_a_flags_instance_b_applies_within_a_poll_interval(proxies, certs, tmp_path, redis_servers,
                                                                   wrapping_key):
    r = redis_servers()
    a = fleet_member(proxies, certs, tmp_path, "a", r.url, wrapping_key[0])
    b = fleet_member(proxies, certs, tmp_path, "b", r.url, wrapping_key[0])
    wait_for(lambda: detector(b)["fleet"]["up"], timeout=10, what="B's fleet store up")

    # Before A's flag, B renews the stale ticket inline and the client falls back (what the fleet prevents).
    emu = SChannelEmulator(b.port, SCHANNEL, source="127.0.12.1")
    s = emu.visit()
    rotate(b)
    assert emu.visit(s) is None and len(emu.fallbacks) == 1
    s = emu.visit()
    assert detector(b)["flagged"] == []

    ja4, t0 = flag_on(a)
    wait_for(lambda: fleet_flag(b, ja4) is not None, timeout=10, interval=0.02, what="B applies A's flag")
    took = time.monotonic() - t0
    # A's entry is in Redis, sealed: the JA4 appears only in its key name.
    raw = r.cmd("GET", PREFIX + ja4)
    assert raw and raw[:4] == b"EPD1" and ja4.encode() not in raw
    f = fleet_flag(b, ja4)
    assert f["state"] == "quarantined" and f["source"] == "fleet" and f["flagged_by"], f
    assert f["aborts_after_inline_renewal"] >= 10 and f["distinct_client_prefixes"] >= 3, f
    assert fleet_flag(a, ja4)["source"] == "local"
    assert w.metric_sum(b, "edgeproxy_detector_fleet_imported_total") == 1
    assert "detector applied a flag raised by another instance" in b.output()
    print(f"\nB applied A's flag {took:.2f} s after A reported it (poll interval {POLL} s)")

    # B never saw this client abort, yet its stale ticket now gets a full handshake with a fresh ticket.
    rotate(b)
    n = len(emu.handshakes)
    assert emu.visit(s) is not None
    assert len(emu.fallbacks) == 1, emu.fallbacks
    hs = emu.handshakes[n]
    assert not hs.resumed and hs.certificate_sent and not hs.inline_renewal and len(hs.tickets) == 1, hs
    assert detector(b)["totals"]["renewal_aborted"] == 1  # only the one before the flag

    # Forged entries written straight into Redis: a random envelope under the right key id (wrong MAC), and A's
    # genuine entry copied to another fingerprint's key (bound to its own key: does not authenticate there).
    forged_ja4 = "t12d0000h1_000000000000_000000000000"
    moved_ja4 = "t13d1516h2_8daaf6152771_02713d6af862"
    r.cmd("SET", PREFIX + forged_ja4, b"EPD1" + bytes([6]) + b"test-1" + os.urandom(12 + 80 + 16))
    r.cmd("SET", PREFIX + moved_ja4, raw)
    cycles = detector(b)["fleet"]["cycles"]
    wait_for(lambda: detector(b)["fleet"]["rejected_entries"] == 2, timeout=10, what="B rejects both forgeries")
    # Several more polls: counted and logged once each, never applied.
    wait_for(lambda: detector(b)["fleet"]["cycles"] >= cycles + 4, timeout=10, what="more polls")
    report = detector(b)
    assert [x["ja4"] for x in report["flagged"]] == [ja4], report["flagged"]
    assert report["fleet"]["rejected_entries"] == 2
    assert w.metric_sum(b, "edgeproxy_detector_fleet_rejected_entries_total", reason="tampered") == 2
    assert b.output().count("detector fleet entry rejected") == 2
    assert w.metric_sum(b, "edgeproxy_detector_fleet_imported_total") == 1


def test_redis_down_keeps_flags_and_recovers(proxies, certs, tmp_path, redis_servers, wrapping_key):
    r = redis_servers()
    a = fleet_member(proxies, certs, tmp_path, "a", r.url, wrapping_key[0])
    b = fleet_member(proxies, certs, tmp_path, "b", r.url, wrapping_key[0])
    ja4, _ = flag_on(a)
    wait_for(lambda: fleet_flag(b, ja4) is not None, timeout=10, what="B applies A's flag")

    r.kill()
    for p in (a, b):
        wait_for(lambda: not detector(p)["fleet"]["up"], timeout=10, what="fleet store seen down")
        assert w.metric_sum(p, "edgeproxy_detector_fleet_up") == 0
        assert "detector fleet store unreachable" in p.output()
    # Both keep applying the flag while Redis is away.
    assert fleet_flag(a, ja4)["state"] == "quarantined" and fleet_flag(b, ja4)["state"] == "quarantined"
    emu = SChannelEmulator(b.port, SCHANNEL, source="127.0.13.1")
    s = emu.visit()
    rotate(b)
    assert emu.visit(s) is not None and emu.fallbacks == []

    # Redis comes back empty: A writes its flag back; both report the store up again.
    r.start()
    wait_for(lambda: r.cmd("GET", PREFIX + ja4) is not None, timeout=15, what="A restores its flag in Redis")
    for p in (a, b):
        wait_for(lambda: detector(p)["fleet"]["up"], timeout=15, what="fleet store up again")
        assert w.metric_sum(p, "edgeproxy_detector_fleet_up") == 1
