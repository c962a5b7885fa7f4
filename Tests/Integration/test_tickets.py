"""Issue #3 (RFC 5077 session tickets), end to end: the real edgeproxy binary, real clients, the server's flight on
the wire.

Every test starts its own proxy (one worker, loopback, ports from the OS, an empty policy directory so no
fingerprint policy changes the ticket decision) and reads what happened three ways where it matters: the server's
handshake messages as `openssl s_client -msg` saw them, the built-in page's `ticket_outcome` (JSON), and the access
log / metrics. Rotation uses POST /keys/rotate (or a 1 s schedule for expiry) — never long sleeps.
"""
import json
import os
import re
import shutil
import time
import urllib.request

import pytest

from conftest import wait_for
import tls_wire as w

EXT_SESSION_TICKET = 0x0023
HEX32 = re.compile(r"^[0-9a-f]{32}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
KEY_FIELDS = {"name", "state", "cipher", "encrypt_from", "encrypt_until", "decrypt_until", "encrypting"}


# -- fixtures ------------------------------------------------------------------------------------------------------
@pytest.fixture
def edge(proxies, certs, tmp_path):
    """start(tickets={...}, args=[...], name=...) -> a running edgeproxy configured through a temp TOML file."""
    crt, key = certs["a-ec"]

    def start(tickets=None, args=(), name="p"):
        d = tmp_path / name
        d.mkdir()
        cfg = w.write_config(str(d), crt, key, tickets)
        p = proxies(["--config", cfg] + list(args))
        assert p.admin_port, p.output()
        return p

    return start


@pytest.fixture
def sess(tmp_path):
    """sess("name") -> a path for an s_client session file."""
    return lambda name: str(tmp_path / f"{name}.sess")


def outcome_everywhere(proxy, h, outcome, version, before):
    """The handshake's outcome as the built-in page, the access log and the metrics report it."""
    assert h.body is not None, h.output
    assert h.body["ticket_outcome"] == outcome, h.describe()
    assert h.body["tls_version"] == version
    wait_for(lambda: w.access_log_tickets(proxy) and w.access_log_tickets(proxy)[-1] == outcome,
             timeout=5, what=f"access log line with ticket={outcome}: {w.access_log_tickets(proxy)}")
    wait_for(lambda: w.handshakes(proxy, outcome, version) == before + 1, timeout=5,
             what=f"edgeproxy_tls_handshakes_total{{outcome={outcome},version={version}}} == {before + 1}")


def current_key(proxy):
    cur = [k for k in w.keys(proxy)["keys"] if k["state"] == "current"]
    assert len(cur) == 1, w.keys(proxy)
    return cur[0]["name"]


def issue_ticket(proxy, version, path):
    """A full handshake that leaves a ticket in `path`; checks the wire shape of a ticket-issuing full handshake."""
    h = w.s_client(proxy.port, version, sess_out=path)
    assert h.full_handshake, h.describe()
    assert h.tickets >= 1, h.describe()
    assert w.session_has_ticket(path), h.output
    return h


# -- TLS 1.2 -------------------------------------------------------------------------------------------------------
def test_tls12_same_key_resumes_abbreviated_without_new_ticket(edge, sess):
    p = edge()
    s = sess("t")
    full = issue_ticket(p, "1.2", s)
    assert full.body["ticket_outcome"] == "full"
    assert EXT_SESSION_TICKET in full.server_hello_extensions()
    assert full.ticket_before_ccs(), full.describe()  # full handshake: NewSessionTicket, then CCS, Finished

    before = w.handshakes(p, "resumed", "TLSv1.2")
    h = w.s_client(p.port, "1.2", sess_in=s)
    assert h.abbreviated, h.describe()
    assert h.server_flight() == ["ServerHello", "CCS", "Finished"], h.describe()
    assert h.tickets == 0
    assert EXT_SESSION_TICKET not in h.server_hello_extensions()  # no ticket promised either
    assert h.client_says_reused
    outcome_everywhere(p, h, "resumed", "TLSv1.2", before)


def test_tls12_ticket_key_name_matches_keys_endpoint_page_and_log(edge, sess):
    """The 16-byte key name at the front of the ticket on the wire is the `current` key of GET /keys, and the
    built-in page and the access log name the same key."""
    p = edge()
    h = issue_ticket(p, "1.2", sess("t"))
    wire = h.ticket_key_names()
    assert wire == [current_key(p)], (wire, w.keys(p))
    assert h.body["ticket_key"] == wire[0], f"page ticket_key {h.body['ticket_key']} != wire key name {wire[0]}"
    line = wait_for(lambda: [l for l in p.output().splitlines() if '"ticket_key"' in l], timeout=5,
                    what="access log line")[-1]
    assert json.loads(line[line.index("{"):])["ticket_key"] == wire[0]


def test_tls12_stale_key_renew_inline_sends_ticket_before_ccs(edge, sess):
    p = edge()  # default stale_action = renew-inline
    s = sess("t")
    issue_ticket(p, "1.2", s)
    old = current_key(p)
    w.rotate(p)
    new = current_key(p)
    assert new != old

    before = w.handshakes(p, "resumed_renewed_inline", "TLSv1.2")
    h = w.s_client(p.port, "1.2", sess_in=s)
    assert h.abbreviated, h.describe()
    assert h.server_flight() == ["ServerHello", "NewSessionTicket", "CCS", "Finished"], h.describe()
    assert h.ticket_before_ccs()
    assert EXT_SESSION_TICKET in h.server_hello_extensions()
    assert h.ticket_key_names() == [new], "the renewed ticket must be sealed under the new current key"
    outcome_everywhere(p, h, "resumed_renewed_inline", "TLSv1.2", before)


def test_tls12_expired_key_gets_full_handshake_and_new_ticket(edge, sess):
    # rotation 1s / lifetime 1s: after POST /keys/rotate the old key decrypts for 1 s more, then is expired.
    p = edge(args=["--ticket-rotation", "1s", "--ticket-lifetime", "1s"])
    s = sess("t")
    issue_ticket(p, "1.2", s)
    w.rotate(p)
    time.sleep(2.2)

    before = w.handshakes(p, "expired_key", "TLSv1.2")
    h = w.s_client(p.port, "1.2", sess_in=s)
    assert h.full_handshake, h.describe()
    assert h.tickets == 1 and h.ticket_before_ccs(), h.describe()
    assert not h.client_says_reused
    outcome_everywhere(p, h, "expired_key", "TLSv1.2", before)


def test_tls12_unknown_key_from_other_instance_gets_full_handshake_and_new_ticket(edge, sess):
    a = edge(name="a")
    b = edge(name="b")
    s = sess("from-a")
    issue_ticket(a, "1.2", s)

    before = w.handshakes(b, "unknown_key", "TLSv1.2")
    h = w.s_client(b.port, "1.2", sess_in=s)
    assert h.full_handshake, h.describe()
    assert h.tickets == 1 and h.ticket_before_ccs(), h.describe()
    assert h.ticket_key_names() == [current_key(b)]
    outcome_everywhere(b, h, "unknown_key", "TLSv1.2", before)


def test_tls12_stale_full_handshake_action(edge, sess):
    p = edge({"stale_action": "full-handshake"})
    s = sess("t")
    issue_ticket(p, "1.2", s)
    w.rotate(p)
    new = current_key(p)

    before = w.handshakes(p, "stale_forced_full", "TLSv1.2")
    h = w.s_client(p.port, "1.2", sess_in=s)
    assert h.full_handshake, h.describe()
    assert h.server_flight() == ["ServerHello", "Certificate", "ServerKeyExchange", "ServerHelloDone",
                                 "NewSessionTicket", "CCS", "Finished"], h.describe()
    assert h.ticket_key_names() == [new]
    outcome_everywhere(p, h, "stale_forced_full", "TLSv1.2", before)


def test_tls12_stale_resume_without_renewal_action(edge, sess):
    p = edge({"stale_action": "resume-without-renewal"})
    s = sess("t")
    issue_ticket(p, "1.2", s)
    w.rotate(p)

    before = w.handshakes(p, "stale_resumed_no_renewal", "TLSv1.2")
    h = w.s_client(p.port, "1.2", sess_in=s)
    assert h.abbreviated, h.describe()
    assert h.server_flight() == ["ServerHello", "CCS", "Finished"], h.describe()
    assert h.tickets == 0
    assert EXT_SESSION_TICKET not in h.server_hello_extensions()
    outcome_everywhere(p, h, "stale_resumed_no_renewal", "TLSv1.2", before)


# -- TLS 1.3 -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [1, 2])
def test_tls13_full_handshake_issues_tls13_count_tickets(edge, sess, count):
    p = edge({"tls13_count": count})
    before = w.metric_sum(p, "edgeproxy_tls_tickets_issued_total")
    h = w.s_client(p.port, "1.3", sess_out=sess("t"))
    assert h.version == "TLSv1.3"
    assert h.full_handshake, h.describe()
    assert h.tickets_after_server_finished() == count == h.tickets, h.describe()
    assert set(h.ticket_key_names()) == {current_key(p)}
    assert h.body["ticket_outcome"] == "full"
    wait_for(lambda: w.metric_sum(p, "edgeproxy_tls_tickets_issued_total") == before + count, timeout=5,
             what=f"tickets_issued_total +{count}")


# Issue #3 asks for tls13_count tickets on a resumption too. OpenSSL 3.0's state machine sends at most one ticket on
# a resumption whatever the callback returns ("In a resumption we only ever send a maximum of one new ticket",
# statem_srvr.c); more need SSL_new_session_ticket() after the handshake. count=2 therefore fails today.
@pytest.mark.parametrize("count", [1, 2])
def test_tls13_resumption_issues_tls13_count_tickets(edge, sess, count):
    p = edge({"tls13_count": count})
    s = sess("t")
    issue_ticket(p, "1.3", s)

    before = w.handshakes(p, "resumed", "TLSv1.3")
    h = w.s_client(p.port, "1.3", sess_in=s)
    assert h.abbreviated, h.describe()
    assert h.client_says_reused
    assert h.tickets_after_server_finished() == count, \
        f"tls13_count={count} but the resumption carried {h.tickets_after_server_finished()} NewSessionTicket: " \
        + h.describe()
    outcome_everywhere(p, h, "resumed", "TLSv1.3", before)


def test_tls13_stale_key_full_handshake_action(edge, sess):
    p = edge({"stale_action": "full-handshake"})
    s = sess("t")
    issue_ticket(p, "1.3", s)
    w.rotate(p)
    new = current_key(p)

    before = w.handshakes(p, "stale_forced_full", "TLSv1.3")
    h = w.s_client(p.port, "1.3", sess_in=s)
    assert h.server_sent_certificate, h.describe()
    assert "CertificateVerify" in h.server_flight()
    assert not h.client_says_reused
    # A refused (undecryptable-by-policy) ticket is like an unknown one: the full handshake issues fresh tickets.
    assert h.tickets_after_server_finished() == 1, h.describe()
    assert h.ticket_key_names() == [new]
    outcome_everywhere(p, h, "stale_forced_full", "TLSv1.3", before)


def test_tls13_stale_key_renew_inline_resumes_with_one_new_ticket(edge, sess):
    p = edge()
    s = sess("t")
    issue_ticket(p, "1.3", s)
    w.rotate(p)
    new = current_key(p)

    before = w.handshakes(p, "resumed_renewed_inline", "TLSv1.3")
    h = w.s_client(p.port, "1.3", sess_in=s)
    assert h.abbreviated and h.client_says_reused, h.describe()
    assert h.tickets_after_server_finished() == 1, h.describe()
    assert h.ticket_key_names() == [new]
    outcome_everywhere(p, h, "resumed_renewed_inline", "TLSv1.3", before)


# -- tickets disabled ----------------------------------------------------------------------------------------------
def test_tickets_disabled_issue_and_accept_nothing(edge, sess):
    on = edge(name="on")
    foreign = sess("foreign")
    issue_ticket(on, "1.2", foreign)

    p = edge({"enabled": False}, name="off")
    assert w.keys(p)["source"] == "off"

    s = sess("t12")
    h = w.s_client(p.port, "1.2", sess_out=s)
    assert h.full_handshake and h.tickets == 0, h.describe()
    assert EXT_SESSION_TICKET not in h.server_hello_extensions()
    assert not w.session_has_ticket(s)

    h = w.s_client(p.port, "1.2", sess_in=foreign)  # a valid-looking ticket is not even looked at
    assert h.full_handshake and h.tickets == 0, h.describe()
    assert EXT_SESSION_TICKET not in h.server_hello_extensions()

    h = w.s_client(p.port, "1.3", sess_out=sess("t13"))
    assert h.full_handshake, h.describe()
    assert h.tickets == 0, h.describe()
    assert w.metric_sum(p, "edgeproxy_tls_tickets_issued_total") == 0


# -- admin /keys ---------------------------------------------------------------------------------------------------
def check_key_listing(doc):
    assert set(doc) == {"source", "keys"}, doc
    for k in doc["keys"]:
        assert set(k) == KEY_FIELDS, f"unexpected fields in {k}"
        assert HEX32.match(k["name"]), k
        assert k["state"] in ("next", "current", "stale", "expired"), k
        assert k["cipher"] in ("AES-256-CBC", "AES-128-CBC"), k
        assert isinstance(k["encrypting"], bool)
        for t in ("encrypt_from", "encrypt_until", "decrypt_until"):
            assert k[t] is None or ISO.match(k[t]), k
    names = [k["name"] for k in doc["keys"]]
    assert len(set(names)) == len(names)


def test_keys_endpoint_memory_source_and_rotation(edge):
    p = edge()
    doc = w.keys(p)
    check_key_listing(doc)
    assert doc["source"] == "memory"
    states = {k["name"]: k["state"] for k in doc["keys"]}
    assert sorted(states.values()) == ["current", "next"], doc
    old_current = [n for n, s in states.items() if s == "current"][0]
    old_next = [n for n, s in states.items() if s == "next"][0]

    w.rotate(p)
    doc = w.keys(p)
    check_key_listing(doc)
    states = {k["name"]: k["state"] for k in doc["keys"]}
    assert states[old_current] == "stale", doc
    assert states[old_next] == "current", doc
    assert list(states.values()).count("next") == 1
    enc = [k["name"] for k in doc["keys"] if k["encrypting"]]
    assert enc == [old_next], doc


def test_keys_endpoint_never_shows_key_material(proxies, certs, tmp_path):
    """With file keys the secret bytes are known: neither the HMAC nor the AES key may appear, in any common
    encoding, in GET /keys (or the metrics); the name is the file's first 16 bytes."""
    import base64
    crt, key = certs["a-ec"]
    kf = w.write_ticket_key(str(tmp_path / "k1.key"))
    raw = open(kf, "rb").read()
    cfg = w.write_config(str(tmp_path), crt, key, {"source": "files", "files": [kf]})
    p = proxies(["--config", cfg])
    _, text = w.admin(p, "GET", "/keys")
    doc = json.loads(text)
    check_key_listing(doc)
    assert doc["source"] == "files"
    assert [k["name"] for k in doc["keys"]] == [raw[:16].hex()]
    _, metrics_text = w.admin(p, "GET", "/metrics")
    for secret in (raw[16:48], raw[48:80]):
        for chunk in (secret[:8], secret[8:16], secret[16:24], secret[24:32]):
            for enc in (chunk.hex(), chunk.hex().upper(), base64.b64encode(chunk).decode()[:10]):
                assert enc not in text and enc not in metrics_text
    # File keys are rotated by rewriting the files: the admin rotation is refused, not half-done.
    import urllib.error
    with pytest.raises(urllib.error.HTTPError) as e:
        w.admin(p, "POST", "/keys/rotate")
    assert e.value.code == 409


# -- shared key files: EdgeProxy <-> EdgeProxy, EdgeProxy <-> nginx ------------------------------------------------
def files_proxy(proxies, certs, tmp_path, keyfile, name):
    crt, key = certs["a-ec"]
    d = tmp_path / name
    d.mkdir()
    return proxies(["--config", w.write_config(str(d), crt, key, {"source": "files", "files": [keyfile]})])


def test_key_file_mode_survives_the_control_ticks(proxies, certs, tmp_path):
    """The once-a-second control tick reports the encryption key's age; a key file's key has no start time
    (distantPast) and `now - distantPast` overflowed: the proxy trapped about a second after start in key-file mode
    (found by the nginx interop tests on a loaded machine, where they outlived the first tick)."""
    p = files_proxy(proxies, certs, tmp_path, w.write_ticket_key(str(tmp_path / "k.key")), "ticks")
    time.sleep(2.5)  # the observation window (two or three ticks), not synchronisation
    assert p.alive(), p.output()[-2000:]
    with urllib.request.urlopen(f"{p.admin}/metrics", timeout=5) as r:
        assert "edgeproxy_ticket_key_age_seconds 0" in r.read().decode()


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_two_edgeproxies_sharing_a_key_file_resume_each_other(proxies, certs, tmp_path, version):
    kf = w.write_ticket_key(str(tmp_path / "shared.key"))
    a = files_proxy(proxies, certs, tmp_path, kf, "a")
    b = files_proxy(proxies, certs, tmp_path, kf, "b")
    s = str(tmp_path / "a.sess")
    h = issue_ticket(a, version, s)
    assert h.ticket_key_names()[0] == open(kf, "rb").read(16).hex()
    h = w.s_client(b.port, version, sess_in=s)
    assert h.abbreviated and h.client_says_reused, h.describe()
    assert h.body["ticket_outcome"] == "resumed"


needs_nginx = pytest.mark.skipif(w.nginx_binary() is None, reason="nginx is not installed")


@needs_nginx
@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("direction", ["nginx->edgeproxy", "edgeproxy->nginx"])
def test_nginx_interop_same_key_file(proxies, certs, tmp_path, version, direction):
    crt, key = certs["a-ec"]
    kf = w.write_ticket_key(str(tmp_path / "shared.key"), 80)
    p = files_proxy(proxies, certs, tmp_path, kf, "edge")
    n = w.Nginx(crt, key, [kf])
    try:
        # Each server resumes its own tickets (so a failure below is about crossing servers).
        for port in (n.port, p.port):
            s = str(tmp_path / f"self-{port}.sess")
            issue_ticket_on(port, version, s)
            assert w.s_client(port, version, sess_in=s).abbreviated
        src, dst = (n.port, p.port) if direction == "nginx->edgeproxy" else (p.port, n.port)
        s = str(tmp_path / "cross.sess")
        h = issue_ticket_on(src, version, s)
        assert h.ticket_key_names()[0] == open(kf, "rb").read(16).hex()
        h = w.s_client(dst, version, sess_in=s)
        assert h.abbreviated and h.client_says_reused, \
            f"{direction} TLS {version}: a ticket sealed under the shared key was not resumed: {h.describe()}\n" \
            + sid_ctx_diagnosis(n.port, p.port, version, kf, tmp_path)
        if dst == p.port:
            assert h.body["ticket_outcome"] == "resumed"
    finally:
        n.stop()


def sid_ctx_diagnosis(nginx_port, edge_port, version, kf, tmp_path):
    """Opens one ticket from each server with the shared key and shows the session-ID context sealed inside: OpenSSL
    only resumes a session whose sid_ctx equals the server's own (ssl_get_prev_session / tls_parse_ctos_psk)."""
    raw = open(kf, "rb").read()
    parts = []
    for name, port in (("nginx", nginx_port), ("edgeproxy", edge_port)):
        h = w.s_client(port, version, sess_out=str(tmp_path / f"diag-{name}.sess"))
        der = w.open_ticket(h.ticket_bodies()[0], raw) if h.ticket_bodies() else None
        parts.append(f"{name} ticket sid_ctx = {w.session_id_context(der).hex() if der else '?'!r}")
    return "; ".join(parts)


def issue_ticket_on(port, version, path):
    h = w.s_client(port, version, sess_out=path)
    assert h.full_handshake and h.tickets >= 1 and w.session_has_ticket(path), h.describe()
    return h


# -- an outside checker --------------------------------------------------------------------------------------------
def test_sslyze_reports_ticket_resumption_supported(edge):
    sslyze = pytest.importorskip("sslyze")
    p = edge()
    loc = sslyze.ServerNetworkLocation(hostname="localhost", port=p.port, ip_address="127.0.0.1")
    req = sslyze.ServerScanRequest(server_location=loc, scan_commands={sslyze.ScanCommand.SESSION_RESUMPTION})
    scanner = sslyze.Scanner(per_server_concurrent_connections_limit=2, concurrent_server_scans_limit=1)
    scanner.queue_scans([req])
    results = list(scanner.get_results())
    assert len(results) == 1
    r = results[0]
    assert r.scan_status == sslyze.ServerScanStatusEnum.COMPLETED, r.connectivity_error_trace
    attempt = r.scan_result.session_resumption
    assert attempt.status == sslyze.ScanCommandAttemptStatusEnum.COMPLETED, attempt.error_trace
    res = attempt.result
    assert res.tls_ticket_resumption_result == sslyze.TlsResumptionSupportEnum.FULLY_SUPPORTED, res
    # The session cache ([sessions] cache = "local", the default since issue #11) serves sslyze's ticket-less
    # connections; its ticket count above is measured with tickets, so both are supported independently.
    assert res.session_id_resumption_result == sslyze.TlsResumptionSupportEnum.FULLY_SUPPORTED, res
