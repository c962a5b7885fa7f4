"""Issue #11 part 1: session-ID resumption through the process-wide session cache ([sessions] cache = "local").

Real clients against the real binary on loopback: tlslite-ng sending a Windows 7 SChannel ClientHello (IE 11, no
session_ticket extension: it can only resume by session ID), `openssl s_client -no_ticket`, and sslyze's resumption
scan. Outcomes are read from the client (did the server echo the session ID and skip the Certificate?), the access log
and the metrics (`outcome="resumed_session_id"`), per worker.
"""
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import read_response, wait_for
import tls_wire as w

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from schannel_client import (FixtureHello, TicketClient, _ShapedConnection, load_fixture,  # noqa: E402
                             read_until_close)
from tlslite import TLSConnection  # noqa: E402
from tlslite.messages import ClientHello  # noqa: E402

WIN7 = "schannel-ie11-9600.18349-win7"


class _SessionIDConnection(_ShapedConnection):
    """Offers `resume_id` as the ClientHello session ID (SChannel's only way to resume: it sends no ticket
    extension); the inherited `_clientResume` resumes only when the server echoes that ID."""

    resume_id = b""

    def _sendMsg(self, msg, *a, **kw):
        if isinstance(msg, ClientHello) and msg.client_version >= (3, 3):
            self.offered_session_id = bytes(self.resume_id)
            if self.shape is not None:
                self.shape.apply(msg, self.offered_session_id)
            else:
                msg.session_id = bytearray(self.offered_session_id)
        return TLSConnection._sendMsg(self, msg, *a, **kw)


class SessionIDClient(TicketClient):
    """A TLS 1.2 client with a recorded SChannel hello that resumes by session ID."""

    def connect_sid(self, session=None, request=True):
        import socket as _s
        from schannel_client import Handshake, WireRecorder
        raw = _s.create_connection((self.host, self.port), timeout=15)
        rec = WireRecorder(raw)
        conn = _SessionIDConnection(rec)
        conn.shape = self.shape
        conn.resume_id = bytes(session.sessionID) if session is not None else b""
        response = b""
        try:
            conn.handshakeClientCert(session=session, settings=self.settings(), serverName=self.server_name)
            resumed = bool(conn.resumed)
            if request:
                conn.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nConnection: close\r\n\r\n")
                response = read_until_close(conn)
            return Handshake(rec, resumed, response, sent_session_id=conn.offered_session_id), conn.session
        finally:
            try:
                conn.close()
            except Exception:
                pass
            raw.close()


@pytest.fixture
def edge(proxies, certs, tmp_path):
    """start(sessions={...}, workers=1, extra="", policies={name: text}) -> a running edgeproxy."""
    crt, key = certs["a-ec"]
    n = [0]

    def start(sessions=None, workers=1, extra="", policies=None):
        n[0] += 1
        d = tmp_path / f"p{n[0]}"
        d.mkdir()
        text = ""
        if sessions is not None:
            text += "[sessions]\n" + "".join(f"{k} = {w.toml_value(v)}\n" for k, v in sessions.items())
        cfg = w.write_config(str(d), crt, key, None, extra=text + extra)
        for name, body in (policies or {}).items():
            with open(os.path.join(str(d), "policies", name), "w") as f:
                f.write(body)
        with open(cfg) as f:
            body = f.read().replace("workers = 1", f"workers = {workers}")
        with open(cfg, "w") as f:
            f.write(body)
        p = proxies(["--config", cfg])
        assert p.admin_port, p.output()
        return p

    return start


def win7(proxy):
    return SessionIDClient(proxy.port, FixtureHello(load_fixture(WIN7)))


def per_worker(proxy, outcome):
    out = {}
    for n, labels, v in w.metrics(proxy):
        if n == "edgeproxy_tls_handshakes_total" and labels.get("outcome") == outcome:
            out[labels["worker"]] = out.get(labels["worker"], 0) + v
    return out


def test_win7_schannel_hello_has_no_ticket_extension():
    fx = load_fixture(WIN7)
    assert 35 not in fx["extensions"] and "Windows 7" in fx["os"] + fx["client"] + str(fx.get("notes")), fx["os"]


def test_win7_schannel_resumes_by_session_id_across_two_workers(edge):
    """1,000 resumptions of one session with --workers 2 (SO_REUSEPORT spreads the connections): ≥ 99 % resume,
    and both workers resume sessions the other one created."""
    p = edge(workers=2)
    c = win7(p)
    first, session = c.connect_sid()
    assert not first.resumed and first.certificate_sent, first
    assert first.json_body()["ticket_outcome"] == "full"
    assert len(bytes(session.sessionID)) == 32, "the server must hand out a session ID to a client without tickets"
    resumed = 0
    failures = []
    for i in range(1000):
        hs, _ = c.connect_sid(session, request=(i % 50 == 0))
        if hs.resumed and not hs.certificate_sent and hs.flight[:1] == ["ServerHello"]:
            resumed += 1
        else:
            failures.append(hs.flight)
        if i % 50 == 0:
            assert hs.json_body()["ticket_outcome"] == ("resumed_session_id" if hs.resumed else "full")
    assert resumed >= 990, f"{resumed}/1000 resumed; first failures: {failures[:3]}"
    by_worker = wait_for(lambda: (lambda d: d if sum(d.values()) >= resumed else None)(
        per_worker(p, "resumed_session_id")), timeout=10, what="resumed_session_id counted")
    assert sum(by_worker.values()) == resumed
    assert len([v for v in by_worker.values() if v > 0]) == 2, f"both workers must resume: {by_worker}"
    print(f"session-ID resumptions: {resumed}/1000, per worker {by_worker}")


def test_access_log_and_metrics_say_resumed_session_id(edge):
    p = edge()
    c = win7(p)
    _, session = c.connect_sid()
    hs, _ = c.connect_sid(session)
    assert hs.resumed, hs
    got = w.wait_access_log(p, 2)
    assert got[-2:] == ["full", "resumed_session_id"], got
    assert w.handshakes(p, "resumed_session_id", "TLSv1.2") == 1
    wait_for(lambda: w.metric_sum(p, "edgeproxy_session_cache_hits_total") >= 1, timeout=5,
             what="session cache hit counted")
    assert w.metric_sum(p, "edgeproxy_session_cache_stores_total") == 1
    assert w.metric_sum(p, "edgeproxy_session_cache_reserved_bytes") == 20000 * 512
    wait_for(lambda: w.metric_sum(p, "edgeproxy_session_cache_entries") == 1, timeout=5, what="one entry")


def test_openssl_s_client_no_ticket_resumes(edge, tmp_path):
    p = edge()
    s = str(tmp_path / "s.sess")
    full = w.s_client(p.port, "1.2", sess_out=s, extra=["-no_ticket"])
    assert full.full_handshake and full.tickets == 0, full.describe()
    assert not w.session_has_ticket(s)
    again = w.s_client(p.port, "1.2", sess_in=s, extra=["-no_ticket"])
    assert again.client_says_reused and again.abbreviated, again.describe()
    assert again.body["ticket_outcome"] == "resumed_session_id", again.body


def test_cache_off_means_no_session_id_resumption(edge, tmp_path):
    """The baseline (and the behaviour before issue #11): no cache, no session ID, so nothing to resume."""
    p = edge(sessions={"cache": "off"})
    s = str(tmp_path / "s.sess")
    full = w.s_client(p.port, "1.2", sess_out=s, extra=["-no_ticket"])
    assert full.full_handshake, full.describe()
    assert re.search(r"^\s*Session-ID: *$", full.output, re.M), "the server must not hand out a session ID"
    assert not os.path.exists(s), "s_client saves no session without an ID or ticket"
    c = win7(p)
    first, session = c.connect_sid()
    assert bytes(session.sessionID) == b""
    hs, _ = c.connect_sid(session)
    assert not hs.resumed and hs.certificate_sent


def test_expired_session_is_a_full_handshake(edge, tmp_path):
    p = edge(sessions={"timeout": "1s"})
    s = str(tmp_path / "s.sess")
    w.s_client(p.port, "1.2", sess_out=s, extra=["-no_ticket"])
    # The cache sweeps once a second; wait for the entry to be gone rather than sleeping.
    wait_for(lambda: w.metric_sum(p, "edgeproxy_session_cache_expirations_total") >= 1, timeout=10,
             what="session expired")
    again = w.s_client(p.port, "1.2", sess_in=s, extra=["-no_ticket"])
    assert not again.client_says_reused and again.full_handshake, again.describe()


def test_a_session_resumed_before_it_expired_is_not_resumed_after(edge, tmp_path):
    """Each worker keeps the sessions it decoded (DecodedSessions); a kept copy must not outlive its cache entry."""
    p = edge(sessions={"timeout": "1s"})
    s = str(tmp_path / "s.sess")
    w.s_client(p.port, "1.2", sess_out=s, extra=["-no_ticket"])
    resumed = w.s_client(p.port, "1.2", sess_in=s, extra=["-no_ticket"])
    assert resumed.client_says_reused, resumed.describe()  # the worker now holds the decoded session
    wait_for(lambda: w.metric_sum(p, "edgeproxy_session_cache_expirations_total") >= 1, timeout=10,
             what="session expired")
    again = w.s_client(p.port, "1.2", sess_in=s, extra=["-no_ticket"])
    assert not again.client_says_reused and again.full_handshake, again.describe()


def _python_tls12_no_ticket():
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


def _get(ctx, port, session=None):
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as t:
            t.sendall(w.http_request())
            return t.session_reused, t.session, read_response(t)


def test_one_session_resumed_by_many_connections_at_once(edge):
    """Browsers open several connections with the same session at once: every one of them resumes the worker's one
    decoded copy (OpenSSL holds a reference per connection), and each gets its own complete response."""
    from concurrent.futures import ThreadPoolExecutor
    p = edge(workers=2)
    ctx = _python_tls12_no_ticket()
    reused, session, body = _get(ctx, p.port)
    assert not reused and session is not None and body.startswith(b"HTTP/1.1 200"), body[:200]
    for _ in range(3):
        with ThreadPoolExecutor(max_workers=24) as pool:
            results = list(pool.map(lambda _: _get(ctx, p.port, session), range(48)))
        assert all(r for r, _, _ in results), [r for r, _, _ in results]
        assert all(b.startswith(b"HTTP/1.1 200") and b'"ticket_outcome":"resumed_session_id"' in b.replace(b" ", b"")
                   for _, _, b in results), results[0][2][:400]
    total = sum(per_worker(p, "resumed_session_id").values())
    assert total == 144, total


def test_policy_turns_the_cache_off_for_matching_clients_only(edge, tmp_path):
    policy = """
[[policy]]
name = "no-cache-for-win7"
priority = 10
mode = "enforce"
[policy.actions]
session_cache = "off"
[policy.match]
extensions_absent = ["session_ticket"]
extensions_present = ["status_request"]
"""
    p = edge(policies={"nocache.toml": policy})
    c = win7(p)
    _, session = c.connect_sid()
    hs, _ = c.connect_sid(session)
    assert not hs.resumed and hs.certificate_sent, hs
    assert hs.json_body()["policy"] == "no-cache-for-win7"
    # s_client (sends a ticket extension, even if empty with -no_ticket? no: -no_ticket omits it, but sends no
    # status_request) is not matched and still resumes.
    s = str(tmp_path / "s.sess")
    w.s_client(p.port, "1.2", sess_out=s, extra=["-no_ticket"])
    again = w.s_client(p.port, "1.2", sess_in=s, extra=["-no_ticket"])
    assert again.client_says_reused, again.describe()


def test_tls13_stateless_tickets_do_not_fill_the_cache(edge, tmp_path):
    p = edge()
    s = str(tmp_path / "s13.sess")
    w.s_client(p.port, "1.3", sess_out=s)
    again = w.s_client(p.port, "1.3", sess_in=s)
    assert again.client_says_reused, again.describe()
    assert again.body["ticket_outcome"] == "resumed"
    wait_for(lambda: w.metric_sum(p, "edgeproxy_session_cache_entries") is not None, what="metrics")
    assert w.metric_sum(p, "edgeproxy_session_cache_stores_total") == 0


def test_sslyze_reports_session_id_resumption_supported(edge):
    p = edge()
    r = subprocess.run([sys.executable, "-m", "sslyze", "--resum", f"127.0.0.1:{p.port}"], capture_output=True,
                       text=True, timeout=180)
    out = r.stdout + r.stderr
    m = re.search(r"With Session IDs:\s*(.+)", out)
    assert m, out
    assert "OK - Supported" in m.group(1), out


# -- part 3: the fleet cache through Redis -------------------------------------------------------------------------
from test_redis import RedisServer  # noqa: E402


@pytest.fixture
def redis_server():
    r = RedisServer()
    yield r
    r.kill()


@pytest.fixture
def redis_edge(edge, tmp_path):
    """start(redis_url) -> an edgeproxy with [sessions] cache = "redis" sharing one wrapping key with its peers."""
    key = tmp_path / "wrap.key"
    key.write_text(os.urandom(32).hex() + "\n")
    os.chmod(key, 0o600)

    def start(url, workers=1):
        extra = ("\n[redis]\n" f'url = "{url}"\nwrapping_key_file = "{key}"\nwrapping_key_id = "test-1"\n'
                 'connect_timeout = "200ms"\ncommand_timeout = "300ms"\n')
        p = edge(sessions={"cache": "redis"}, workers=workers, extra=extra)
        wait_for(lambda: w.metric_sum(p, "edgeproxy_session_store_up") == 1, timeout=10, what="session store up")
        return p

    return start


def session_keys(r):
    return [k for k in r.cmd("KEYS", "*") if b":session:" in k]


def master_key(sess_file):
    out = subprocess.run(["openssl", "sess_id", "-in", sess_file, "-noout", "-text"], capture_output=True,
                         text=True).stdout
    m = re.search(r"Master-Key:\s*([0-9A-F]+)", out)
    return bytes.fromhex(m.group(1))


def test_redis_fleet_instance_a_issues_instance_b_resumes(redis_edge, redis_server, tmp_path):
    a = redis_edge(redis_server.url)
    b = redis_edge(redis_server.url)
    s = str(tmp_path / "a.sess")
    full = w.s_client(a.port, "1.2", sess_out=s, extra=["-no_ticket"])
    assert full.full_handshake, full.describe()
    wait_for(lambda: session_keys(redis_server), timeout=5, what="the session in redis")
    again = w.s_client(b.port, "1.2", sess_in=s, extra=["-no_ticket"])
    assert again.client_says_reused and again.abbreviated, again.describe()
    assert again.body["ticket_outcome"] == "resumed_session_id", again.body
    # The SChannel shape too: A's session, B resumes it.
    first, session = win7(a).connect_sid()
    assert not first.resumed
    hs, _ = win7(b).connect_sid(session)
    assert hs.resumed and not hs.certificate_sent, hs
    assert hs.json_body()["ticket_outcome"] == "resumed_session_id"


def test_redis_holds_only_sealed_sessions(redis_edge, redis_server, tmp_path):
    a = redis_edge(redis_server.url)
    s = str(tmp_path / "a.sess")
    w.s_client(a.port, "1.2", sess_out=s, extra=["-no_ticket"])
    keys = wait_for(lambda: session_keys(redis_server), timeout=5, what="the session in redis")
    secret = master_key(s)
    assert len(secret) == 48
    for k in keys:
        v = redis_server.cmd("GET", k)
        assert v.startswith(b"EPS1") and b"test-1" in v[:16], v[:16]
        assert secret not in v and secret.hex().encode() not in v.lower()
        # Redis expires it with the session timeout (default 5 min).
        assert 0 < redis_server.cmd("PTTL", k) <= 300_000


def test_redis_down_means_a_prompt_full_handshake(redis_edge, redis_server, tmp_path):
    a = redis_edge(redis_server.url)
    b = redis_edge(redis_server.url)
    s = str(tmp_path / "a.sess")
    w.s_client(a.port, "1.2", sess_out=s, extra=["-no_ticket"])
    wait_for(lambda: session_keys(redis_server), timeout=5, what="the session in redis")
    redis_server.kill()
    t0 = time.monotonic()
    again = w.s_client(b.port, "1.2", sess_in=s, extra=["-no_ticket"])
    assert not again.client_says_reused and again.full_handshake, again.describe()
    assert again.body["ticket_outcome"] == "full"
    # Not a speed assertion: only that the handshake did not hang on the dead store (the bound is 5 ms).
    assert time.monotonic() - t0 < 10
    # A still resumes from its local cache in front of Redis.
    local = w.s_client(a.port, "1.2", sess_in=s, extra=["-no_ticket"])
    assert local.client_says_reused, local.describe()


def _leave(probe, answer):
    """probe_hello's `after`: the client goes away after the server's first flight instead of waiting for its end."""
    answer.end = "closed by the client"


def test_clients_churning_session_ids_get_full_handshakes_and_leave_the_cache_bounded(edge):
    """A misbehaving client that offers a fresh, never-issued session ID on every connection (300 hellos without a
    ticket extension) gets a new session ID each time: nothing is resumed and nothing enters the cache, since only
    completed full handshakes store sessions. 200 completed full handshakes of a Win 7 client into a cache of 64
    entries evict the oldest: the cache stays at its size, and a session made after the churn still resumes."""
    p = edge(sessions={"cache": "local", "size": 64})
    hello_exts = w.tls12_ecdhe_extensions()
    for _ in range(300):
        offered = os.urandom(32)
        answer = w.probe_hello(p.port, w.build_client_hello(w.TLS12_ECDHE_CIPHERS, hello_exts, session_id=offered),
                               after=_leave)
        sh = answer.message(w.HS_SERVER_HELLO)
        assert sh is not None, answer
        echoed = sh[35:35 + sh[34]]
        assert len(echoed) == 32 and echoed != offered, "an unknown session ID must not be echoed"
    wait_for(lambda: w.metric_sum(p, "edgeproxy_session_cache_misses_total") >= 300, timeout=5,
             what="300 cache misses counted")
    assert w.metric_sum(p, "edgeproxy_session_cache_hits_total") == 0
    assert w.metric_sum(p, "edgeproxy_session_cache_entries") == 0, "half-done handshakes store nothing"
    c = win7(p)
    for _ in range(200):
        hs, _ = c.connect_sid(request=False)
        assert not hs.resumed
    wait_for(lambda: w.metric_sum(p, "edgeproxy_session_cache_stores_total") >= 200, timeout=5,
             what="200 sessions stored")
    assert w.metric_sum(p, "edgeproxy_session_cache_entries") <= 64
    assert w.metric_sum(p, "edgeproxy_session_cache_evictions_total") >= 200 - 64
    first, session = c.connect_sid()
    again, _ = c.connect_sid(session)
    assert not first.resumed and again.resumed, (first.flight, again.flight)
    assert p.alive()
