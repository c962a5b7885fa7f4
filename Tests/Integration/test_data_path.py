"""The origin side of the data path, for HTTP/1 and HTTP/2 clients: the forwarder's misbehaving-origin table over
real sockets, and the regression tests of the reliability issue's data-path items (1–6).

`bad_origin.py` misbehaves on request; `origin.py` is the well-behaved origin. Clients: curl (HTTP/1.1 and
HTTP/2), raw TLS sockets, python-h2.
"""
import json
import re
import signal
import socket
import ssl
import subprocess
import time

import h2.config
import h2.connection
import h2.events
import pytest

from conftest import HTTPReader, Origin, dead_port, read_response, tls_connect, wait_for, write_file


class BadOrigin(Origin):
    def __init__(self):
        super().__init__("bad_origin.py", name="bad-origin")

    def connections(self):
        return self.output().count("CONN")


@pytest.fixture
def bad_origin():
    o = BadOrigin()
    yield o
    o.stop()


def proxy_with(proxies, tmp_path, upstreams, timeouts="", extra=""):
    ups = ", ".join(f'"{u}"' for u in upstreams)
    cfg = write_file(tmp_path, "p.toml", f"upstreams = [{ups}]\n{extra}\n[timeouts]\n{timeouts}\n"
                                         '[access_log]\npath = "stdout"\n')
    return proxies(["--config", cfg, "--listen", "127.0.0.1:0", "--workers", "1"])


def fetch(proto, url, *extra, timeout=20):
    """curl over HTTP/1.1 or HTTP/2; returns (exit code, status, body)."""
    flag = "--http1.1" if proto == "h1" else "--http2"
    r = subprocess.run(["curl", "-sS", "-k", flag, "--max-time", str(timeout), "-o", "-", "-w", "\n%{http_code}",
                        *extra, url], capture_output=True, timeout=timeout + 10)
    body, _, code = r.stdout.rpartition(b"\n")
    return r.returncode, int(code or 0), body


# MARK: the misbehaving-origin table, once per client protocol

TABLE = [
    # path, expected status, expected body (None: don't check), curl must succeed
    ("/reset-before-head", 502, None, True),
    ("/malformed", 502, None, True),
    ("/interim", 200, b"final", True),
    ("/status/204", 204, b"", True),
    ("/status/304", 304, b"", True),
    ("/close-delimited/70000", 200, b"y" * 70000, True),
    ("/close-delimited-10/5000", 200, b"x" * 5000, True),
    ("/slow-head/3000", 504, None, True),
]


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_misbehaving_origin_table(proxies, bad_origin, tmp_path, proto):
    p = proxy_with(proxies, tmp_path, [bad_origin.url], timeouts='upstream_read = "1s"')
    for path, status, body, ok in TABLE:
        t0 = time.time()
        rc, code, got = fetch(proto, p.base + path)
        took = time.time() - t0
        assert (rc == 0) == ok, (proto, path, rc)
        assert code == status, (proto, path, code)
        if body is not None:
            assert got == body, (proto, path, len(got))
        # Nothing in the table may wait for a timeout except the slow head (1 s upstream_read).
        assert took < (2.8 if path.startswith("/slow-head") else 1.5), (proto, path, took)
    # Refused (no origin listening): 502 at once.
    q = proxy_with(proxies, tmp_path, [f"http://127.0.0.1:{dead_port()}"])
    rc, code, _ = fetch(proto, q.base + "/")
    assert (rc, code) == (0, 502)
    # HEAD keeps the origin's length and sends no body.
    r = subprocess.run(["curl", "-sS", "-k", "--http1.1" if proto == "h1" else "--http2", "-I",
                        p.base + "/echo-head"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and re.search(r"(?i)content-length: \d+", r.stdout), r.stdout


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_reset_mid_body_is_visible_to_the_client(proxies, bad_origin, tmp_path, proto):
    p = proxy_with(proxies, tmp_path, [bad_origin.url])
    rc, code, got = fetch(proto, p.base + "/reset-mid-body")
    # HTTP/1.1: a TCP reset (curl 18/56); HTTP/2: RST_STREAM (curl 92). Never a clean end.
    assert rc in (18, 56, 92), (rc, code, len(got))
    assert len(got) < 100000


# MARK: item 1 — close-delimited responses complete


def test_close_delimited_response_completes_for_http11_client(proxies, bad_origin, tmp_path):
    """Item 1: the re-chunked body gets its last chunk and the response completes at once (nginx: 8 ms)."""
    p = proxy_with(proxies, tmp_path, [bad_origin.url])
    s = tls_connect(p.port, alpn=["http/1.1"])
    s.settimeout(5)
    t0 = time.time()
    s.sendall(b"GET /close-delimited/12345 HTTP/1.1\r\nHost: a\r\n\r\n")
    r = HTTPReader(s)
    status, headers, body = r.response()
    took = time.time() - t0
    assert status == 200 and body == b"y" * 12345
    assert dict(headers).get("transfer-encoding") == "chunked"
    assert took < 1.0, took
    s.close()


def test_close_delimited_response_for_http10_client(proxies, bad_origin, tmp_path):
    """Item 1: an HTTP/1.0 client gets the body and a clean close (not a reset after upstream_read)."""
    p = proxy_with(proxies, tmp_path, [bad_origin.url], timeouts='upstream_read = "3s"')
    s = tls_connect(p.port, alpn=["http/1.1"])
    s.settimeout(5)
    t0 = time.time()
    s.sendall(b"GET /close-delimited/4000 HTTP/1.0\r\nHost: a\r\n\r\n")
    data = b""
    while True:
        try:
            b = s.recv(65536)
        except ssl.SSLZeroReturnError:
            break
        if not b:
            break
        data += b
    took = time.time() - t0
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
    assert body == b"y" * 4000
    assert took < 1.5, took


# MARK: item 2 — a dead pooled connection does not fail POSTs


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_dead_keepalive_connection_does_not_fail_post(proxies, bad_origin, tmp_path, method):
    """Item 2: the origin closes right after each response; the next POST must not get 502 (nginx: 0 of 20).
    A POST checks the pooled connection before use; a GET (idempotent, bytes held) skips that syscall and relies on
    the idle-event handling and, failing that, the retry rule: it must not fail either."""
    p = proxy_with(proxies, tmp_path, [bad_origin.url])
    failures = 0
    second = (b"POST /ka-then-close HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" if method == "POST"
              else b"GET /ka-then-close HTTP/1.1\r\nHost: a\r\n\r\n")
    for i in range(20):
        s = tls_connect(p.port, alpn=["http/1.1"])
        s.settimeout(10)
        r = HTTPReader(s)
        s.sendall(b"GET /ka-then-close HTTP/1.1\r\nHost: a\r\n\r\n")
        assert r.response()[0] == 200
        # The pooled connection is dead before the POST (the origin has closed it), however loaded the machine.
        # (Each iteration closes two: the GET's and the previous POST's.)
        wait_for(lambda: bad_origin.output().count("CLOSED") >= 2 * i + 1, what="origin closed its connection")
        s.sendall(second)
        if r.response()[0] != 200:
            failures += 1
        s.close()
    assert failures == 0, f"{failures} of 20 {method}s failed"


# MARK: item 3 — slow uploads are not origin timeouts


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_upload_slower_than_upstream_read_succeeds(proxies, origin, tmp_path, proto):
    """Item 3: upstream_read = 1 s, an upload trickling for ~3 s must reach the origin (was 504)."""
    p = proxy_with(proxies, tmp_path, [origin.url], timeouts='upstream_read = "1s"')
    if proto == "h1":
        s = tls_connect(p.port, alpn=["http/1.1"])
        s.settimeout(10)
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 60\r\n\r\n")
        for _ in range(6):
            time.sleep(0.5)
            s.sendall(b"x" * 10)
        status, _, body = HTTPReader(s).response()
    else:
        c, s = h2_connect(p.port)
        c.send_headers(1, h2_request_headers("POST", "/upload") + [("content-length", "60")])
        flush(c, s)
        for _ in range(6):
            time.sleep(0.5)
            c.send_data(1, b"x" * 10)
            flush(c, s)
        c.end_stream(1)
        flush(c, s)
        status, body, _ = h2_read_response(c, s, 1)
    assert status == 200, status
    assert json.loads(body)["body_length"] == 60


# MARK: item 4 — Connection: Host does not strip Host


def test_connection_host_keeps_host(proxies, origin, tmp_path):
    p = proxy_with(proxies, tmp_path, [origin.url])
    s = tls_connect(p.port, alpn=["http/1.1"])
    s.settimeout(10)
    s.sendall(b"GET /echo HTTP/1.1\r\nHost: site.test\r\nConnection: Host, X-Drop\r\nX-Drop: 1\r\n\r\n")
    status, _, body = HTTPReader(s).response()
    assert status == 200
    headers = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert headers.get("host") == "site.test"
    assert "x-drop" not in headers


# MARK: item 5 — drain and reload do not cut HTTP/2 responses


def test_sigterm_lets_http2_download_finish(proxies, origin, tmp_path):
    """Item 5: SIGTERM 1 s into a rate-limited 50 MB HTTP/2 download; it completes within the drain timeout, and
    the access log says what was really sent."""
    p = proxy_with(proxies, tmp_path, [origin.url], timeouts='drain = "30s"')
    n = 50 * 1024 * 1024
    dl = subprocess.Popen(["curl", "-sS", "-k", "--http2", "--limit-rate", "16M", "-o", "/dev/null",
                           "-w", "%{http_code} %{size_download}", p.base + f"/bytes/{n}"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    p.signal(signal.SIGTERM)
    out, err = dl.communicate(timeout=40)
    assert dl.returncode == 0, (dl.returncode, out, err)
    assert out.split() == ["200", str(n)]
    assert p.wait(30) == 0
    lines = [json.loads(l) for l in p.output().splitlines() if l.startswith("{") and '"path"' in l]
    assert lines and lines[-1]["bytes_out"] == n and not lines[-1].get("truncated")


def test_http2_requests_survive_reloads(proxies, origin, tmp_path):
    """Item 5: every request sent on a connection that gets GOAWAY at reload completes, over 10 reloads under
    h2load. h2load (nghttp2 1.52) stops submitting on a connection once it sees GOAWAY and counts the requests it
    never submitted as "errored" (it does not reconnect). On a loaded machine it also refuses, itself, requests it
    had queued but not yet written when the notice arrived (nghttp2 closes them locally, so they count as started
    and failed); CI saw 8 of 319 once. So each round checks from the proxy's side: every request that reached the
    proxy (one access-log line each, written at the end of every stream, even a truncated one) was answered 200 in
    full, and their number is exactly the number h2load counted as succeeded. test_http2.py's
    test_goaway_after_reload checks on the wire that a stream sent after the notice is served."""
    p = proxy_with(proxies, tmp_path, [origin.url])

    def access_lines():
        return [json.loads(l) for l in p.output().splitlines() if l.startswith("{") and '"path"' in l]

    started = succeeded = seen = 0
    for _ in range(10):
        load = subprocess.Popen(["h2load", "-n", "20000", "-c", "4", "-m", "10", p.base + "/"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(0.3)
        p.signal(signal.SIGHUP)
        out, _ = load.communicate(timeout=120)
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded", out)
        assert m, out
        assert m.group(2) == m.group(3), out  # nothing left hanging
        ok = int(m.group(4))
        wait_for(lambda: len(access_lines()) - seen >= ok, timeout=10, what=f"{ok} access-log lines")
        lines = access_lines()
        received = lines[seen:]
        seen = len(lines)
        bad = [l for l in received if l["status"] != 200 or l.get("truncated")]
        assert not bad, bad[:5]
        assert len(received) == ok, (len(received), out)
        started += int(m.group(2))
        succeeded += ok
    print(f"h2load: {started} requests started, {succeeded} succeeded; the rest were never sent")
    assert succeeded > 100 and succeeded >= started * 0.9, (started, succeeded)


# MARK: item 6 — HTTP/2 streams whose body never arrives do not pin connections


def test_http2_stalled_upload_is_answered_and_reset(proxies, origin, tmp_path):
    """Item 6: a POST whose body never arrives gets 408 and RST_STREAM(NO_ERROR) after `idle`; the idle connection
    then gets GOAWAY and is closed."""
    p = proxy_with(proxies, tmp_path, [origin.url], timeouts='idle = "2s"\nupstream_read = "1s"')
    c, s = h2_connect(p.port)
    c.send_headers(1, h2_request_headers("POST", "/upload") + [("content-length", "100")])
    flush(c, s)
    t0 = time.time()
    events = h2_collect(c, s, until=lambda evs: any(isinstance(e, h2.events.StreamReset) for e in evs)
                        or any(isinstance(e, h2.events.StreamEnded) for e in evs), timeout=8)
    resp = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert resp and dict(resp[0].headers)[b":status"] == b"408", events
    # The server ends its side; the client's half must be closed too (RST_STREAM NO_ERROR), then GOAWAY.
    more = h2_collect(c, s, until=lambda evs: any(isinstance(e, h2.events.ConnectionTerminated) for e in evs),
                      timeout=8)
    allev = events + more
    resets = [e for e in allev if isinstance(e, h2.events.StreamReset)]
    assert resets and resets[0].error_code == 0, allev
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in allev), allev
    assert time.time() - t0 < 10


def test_http2_early_response_resets_the_upload_with_no_error(proxies, bad_origin, tmp_path):
    p = proxy_with(proxies, tmp_path, [bad_origin.url])
    c, s = h2_connect(p.port)
    c.send_headers(1, h2_request_headers("POST", "/early/413") + [("content-length", "1000000")])
    c.send_data(1, b"x" * 1000)
    flush(c, s)
    events = h2_collect(c, s, until=lambda evs: any(isinstance(e, h2.events.StreamReset) for e in evs),
                        timeout=8)
    resp = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert resp and dict(resp[0].headers)[b":status"] == b"413", events
    resets = [e for e in events if isinstance(e, h2.events.StreamReset)]
    assert resets and resets[0].error_code == 0, events


# MARK: python-h2 helpers


def h2_connect(port):
    s = tls_connect(port, alpn=["h2"])
    assert s.selected_alpn_protocol() == "h2"
    c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding=None))
    c.initiate_connection()
    s.sendall(c.data_to_send())
    return c, s


def h2_request_headers(method, path):
    return [(":method", method), (":scheme", "https"), (":authority", "localhost"), (":path", path)]


def flush(c, s):
    d = c.data_to_send()
    if d:
        s.sendall(d)


def h2_collect(c, s, until, timeout):
    events = []
    deadline = time.time() + timeout
    s.settimeout(0.5)
    while time.time() < deadline and not until(events):
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        except (ssl.SSLError, OSError):
            break
        if not data:
            break
        events += c.receive_data(data)
        flush(c, s)
    return events


def h2_read_response(c, s, sid, timeout=15):
    events = h2_collect(c, s, until=lambda evs: any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset))
                                                    and e.stream_id == sid for e in evs), timeout=timeout)
    status = None
    body = b""
    for e in events:
        if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid:
            status = int(dict(e.headers)[b":status"])
        elif isinstance(e, h2.events.DataReceived) and e.stream_id == sid:
            body += e.data
            c.acknowledge_received_data(e.flow_controlled_length, sid)
    flush(c, s)
    return status, body, events


# MARK: item 14 — request forms the proxy must not forward as they came


def test_absolute_form_target_is_rewritten_to_origin_form(proxies, origin, tmp_path):
    p = proxy_with(proxies, tmp_path, [origin.url])
    s = tls_connect(p.port, alpn=["http/1.1"])
    s.settimeout(10)
    s.sendall(b"GET http://site.example:8080/echo?x=1 HTTP/1.1\r\nHost: other.example\r\n\r\n")
    status, _, body = HTTPReader(s).response()
    assert status == 200
    doc = json.loads(body)
    assert doc["path"] == "/echo?x=1"
    headers = {k.lower(): v for k, v in doc["headers"]}
    assert headers["host"] == "site.example:8080"


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_connect_and_trace_are_not_forwarded(proxies, origin, tmp_path, proto):
    p = proxy_with(proxies, tmp_path, [origin.url])
    for method, expected in [("TRACE", 405)]:
        rc, code, _ = fetch(proto, p.base + "/echo", "-X", method)
        assert code == expected, (proto, method, code)
    if proto == "h1":
        s = tls_connect(p.port, alpn=["http/1.1"])
        s.settimeout(10)
        s.sendall(b"CONNECT origin.example:443 HTTP/1.1\r\nHost: origin.example:443\r\n\r\n")
        assert HTTPReader(s).response()[0] == 501
    else:
        c, s = h2_connect(p.port)
        c.send_headers(1, [(":method", "CONNECT"), (":authority", "origin.example:443")], end_stream=True)
        flush(c, s)
        assert h2_read_response(c, s, 1)[0] == 501
    assert "REQ TRACE" not in origin.output() and "REQ CONNECT" not in origin.output()


def test_http2_authority_with_userinfo_is_refused(proxies, origin, tmp_path):
    p = proxy_with(proxies, tmp_path, [origin.url])
    c, s = h2_connect(p.port)
    c.send_headers(1, [(":method", "GET"), (":scheme", "https"), (":authority", "user@site.example"),
                       (":path", "/echo")], end_stream=True)
    flush(c, s)
    assert h2_read_response(c, s, 1)[0] == 400
    assert "REQ GET /echo" not in origin.output()


def test_huge_header_gets_431_not_a_reset(proxies, origin, tmp_path):
    """An 8 MB header (more than loopback socket buffers hold) from a client that writes its whole request before it reads (as many do): the proxy answers
    431 and keeps draining until the client is done, so the write completes and the 431 is read (a close with
    unread input reset the connection, and the client saw ECONNRESET instead)."""
    p = proxy_with(proxies, tmp_path, [origin.url])
    s = tls_connect(p.port, alpn=["http/1.1"])
    s.settimeout(10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * (8 << 20) + b"\r\n\r\n")
    assert HTTPReader(s).response()[0] == 431


def test_http2_small_details(proxies, origin, tmp_path):
    """Issue 16 §5: requests from HTTP/2 clients carry `Via: 2 edgeproxy`; the built-in page and local answers over
    HTTP/2 send `Cache-Control: no-store` as over HTTP/1.1; the access log names the protocol as the page does."""
    p = proxy_with(proxies, tmp_path, [origin.url])
    c, s = h2_connect(p.port)
    c.send_headers(1, h2_request_headers("GET", "/echo"), end_stream=True)
    flush(c, s)
    status, body, _ = h2_read_response(c, s, 1)
    assert status == 200
    vias = [v for k, v in json.loads(body)["headers"] if k.lower() == "via"]
    assert vias == ["2 edgeproxy"], vias
    c.send_headers(3, h2_request_headers("TRACE", "/"), end_stream=True)
    flush(c, s)
    _, _, events = h2_read_response(c, s, 3)
    resp = [e for e in events if isinstance(e, h2.events.ResponseReceived) and e.stream_id == 3]
    assert dict(resp[0].headers).get(b"cache-control") == b"no-store", resp
    # The access log is written off the event loop: wait for the line.
    line = wait_for(lambda: next((l for l in p.output().splitlines() if l.startswith("{") and '"/echo"' in l), None),
                    what="access log line")
    assert json.loads(line)["protocol"] == "HTTP/2"
    q = proxies(["--listen", "127.0.0.1:0"])  # no upstream: the built-in page
    r = subprocess.run(["curl", "-sS", "-k", "--http2", "-D", "-", "-o", "/dev/null", q.base + "/"],
                       capture_output=True, text=True, timeout=20)
    assert re.search(r"(?im)^cache-control: no-store", r.stdout), r.stdout


# MARK: clients that half-close after their request


def half_closed_exchange(port, request, close_notify=False, timeout=10):
    """Sends `request` over TLS, then (optionally close_notify and) the TCP FIN in the same breath, the way a client
    that half-closes after sending does. Returns (decrypted bytes until the proxy closed, seconds that took)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(out.read())
            inc.write(raw.recv(65536))
    raw.sendall(out.read())
    tls.write(request)
    if close_notify:
        with pytest.raises(ssl.SSLWantReadError):
            tls.unwrap()
    raw.sendall(out.read())
    raw.shutdown(socket.SHUT_WR)
    t0, got = time.monotonic(), b""
    while True:
        data = raw.recv(65536)
        if not data:
            break
        inc.write(data)
        try:
            while chunk := tls.read(65536):
                got += chunk
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            pass
    raw.close()
    return got, time.monotonic() - t0


@pytest.mark.parametrize("close_notify", [False, True], ids=["fin", "close_notify+fin"])
def test_request_followed_at_once_by_the_clients_eof_is_answered(proxies, origin, tmp_path, close_notify):
    """A client that sends its request and half-closes at once (FIN, or close_notify and FIN, right behind the
    request) gets the whole response, then the proxy closes. Whether the EOF was read in the same wake-up as the
    request used to decide it: read together, the request was dropped unanswered (1 in 5 here, timing-dependent).
    HAProxy 2.6 answers all of these; nginx 1.22 some (a FIN it notices first is the client leaving: 499)."""
    p = proxy_with(proxies, tmp_path, [origin.url], timeouts='idle = "60s"')
    for path in ["/bytes/100", "/bytes/300000"]:
        for _ in range(10):
            got, took = half_closed_exchange(p.port, f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode(),
                                             close_notify)
            n = int(path.rsplit("/", 1)[1])
            assert got.startswith(b"HTTP/1.1 200 "), got[:200]
            assert len(got.split(b"\r\n\r\n", 1)[1]) == n, (path, len(got))
            assert took < 5, took  # closed after the response, not at the idle timeout
    # A request cut short by the EOF is not answered, and the connection is closed at once.
    got, took = half_closed_exchange(p.port, b"GET /bytes/100 HTTP/1.1\r\nHost:", close_notify)
    assert got == b"" and took < 5, (got, took)
    assert p.alive()


# MARK: fairness between one fast transfer and everybody else


class SendfileOrigin:
    """A throwaway nginx (sendfile on) serving `/big`, a sparse file of `size` bytes, and `/64`: an origin faster
    than the proxy, so the proxy's own loop is what paces a download through it."""

    def __init__(self, size):
        import tempfile

        from tls_wire import NginxProcess, free_port, nginx_conf

        self.n = NginxProcess()
        self.n.dir = tempfile.mkdtemp(prefix="edgeproxy-sendfile-origin-")
        self.n.port = free_port()
        with open(f"{self.n.dir}/big", "wb") as f:
            f.truncate(size)
        self.n.launch(nginx_conf(self.n.dir, f"""
    server {{
        listen 127.0.0.1:{self.n.port};
        sendfile on;
        location = /big {{ root {self.n.dir}; }}
        location = /64 {{ return 200 "small\\n"; }}
    }}""", access_log=False))
        self.url = f"http://127.0.0.1:{self.n.port}"

    def stop(self):
        self.n.stop()


def test_a_fast_large_download_does_not_hold_back_new_clients(proxies, tmp_path):
    """One client downloads a large file as fast as the proxy can send it, from an origin faster than the proxy.
    Meanwhile new clients connect, one after another, and fetch 64 bytes each. The measure is not time: it is how
    many bytes the download moved while a new client waited (from its connect to its response's end). A connection
    that has had 64 rounds of progress in one go must let the loop's other events run before its next round; the
    fairness yield used to re-enter the pump through a zero-delay timer, which ran again in the same loop tick, so
    the new client waited until the download's socket happened to fill: hundreds of MB (up to 1.5 s here). With the
    yield in the next tick (`EventLoop.continueNextTick`), a new client waits for a few rounds of 32 KiB."""
    import threading

    origin = SendfileOrigin(8 << 30)
    try:
        p = proxy_with(proxies, tmp_path, [origin.url])
        waits = []
        # Three downloads, each probed from its start on (the first second of a transfer is when the client keeps
        # up best: before the fix, that is when the waits of hundreds of MB happened).
        for _ in range(3):
            waits += probe_during_download(p.port, probes=15)
        worst = max(waits)
        # A new client needs a few loop ticks (accept, two handshake flights, the request); each lets the download
        # move at most 64 rounds of 32 KiB, and the client's own CPU time (on a machine the proxy, both clients and
        # the origin share) adds to it: up to ~80 MB seen here with the fix, 160-520 MB before it.
        assert worst < 128 << 20, f"a new client waited while the download moved {worst >> 20} MB (all: " \
                                  f"{[w >> 20 for w in waits]} MB)"
    finally:
        origin.stop()


def probe_during_download(port, probes):
    """Starts a download of /big and, from its first MB on, `probes` new clients one after another, each fetching
    /64; returns how many bytes the download moved while each waited. Stops the download afterwards."""
    import threading

    moved = [0]
    done = threading.Event()
    stop = threading.Event()

    def download():
        s = tls_connect(port, alpn=["http/1.1"])
        try:
            s.sendall(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
            buf = bytearray(1 << 20)
            while not stop.is_set():
                n = s.recv_into(buf)
                if n == 0:
                    break
                moved[0] += n
        except OSError:
            pass
        finally:
            done.set()
            s.close()

    t = threading.Thread(target=download, daemon=True)
    t.start()
    try:
        wait_for(lambda: moved[0] >= 1 << 20 or done.is_set(), what="the download to start")
        waits = []
        for _ in range(probes):
            assert not done.is_set(), "the download ended before the new clients were all served"
            before = moved[0]
            c = tls_connect(port, alpn=["http/1.1"])
            c.sendall(b"GET /64 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            answer = read_response(c)
            c.close()
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"small\n"), answer[:200]
            waits.append(moved[0] - before)
        return waits
    finally:
        stop.set()
        t.join(timeout=30)
