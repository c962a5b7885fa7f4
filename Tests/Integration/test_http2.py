"""HTTP/2 (ALPN h2) with real clients: curl --http2, h2load, and protocol-level checks written with Python's `h2`
(SETTINGS, flow control, RST_STREAM, GOAWAY, invalid headers) plus hand-built frames for the abuse cases (rapid
reset, CONTINUATION, SETTINGS and PING floods, zero-window stall). Every abuse test also checks that the proxy keeps
serving other clients."""
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time

import pytest

h2 = pytest.importorskip("h2")
import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import h2.exceptions  # noqa: E402
import h2.settings  # noqa: E402
import hpack  # noqa: E402

from conftest import curl, tls_connect, wait_for, write_file  # noqa: E402
from origin import marked  # noqa: E402
from tls_wire import NginxProcess, free_port, nginx_conf  # noqa: E402

ENHANCE_YOUR_CALM = 0xB
PROTOCOL_ERROR = 0x1
NO_ERROR = 0x0


def pattern(n, shift=0):
    """The body origin.py sends for /bytes/N (shift 0) or /mark/N/shift."""
    p = marked(shift)
    return (p * (n // len(p) + 1))[:n]


def start(proxies, origin, tmp_path, extra="", upstream=True):
    cfg = write_file(tmp_path, "h2.toml", '[access_log]\npath = "access.log"\n' + extra)
    args = ["--config", cfg, "--listen", "127.0.0.1:0"]
    if upstream:
        args += ["--upstream", origin.url]
    return proxies(args)


class H2Client:
    """A real HTTP/2 client connection (python-h2 state machine over TLS with ALPN h2)."""

    def __init__(self, port, settings=None, validate=True):
        self.sock = tls_connect(port, alpn=["h2"])
        assert self.sock.selected_alpn_protocol() == "h2"
        cfg = h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=validate, normalize_outbound_headers=validate,
            validate_inbound_headers=True)
        self.c = h2.connection.H2Connection(config=cfg)
        self.c.initiate_connection()
        if settings:
            self.c.update_settings(settings)
        self.events = []
        self.closed = False
        # Acknowledge DATA of every stream as it arrives (a real client's default), so an unread stream cannot
        # exhaust the connection window; the flow-control test turns it off.
        self.auto_ack = True
        self.flush()

    def flush(self):
        data = self.c.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, timeout=1.0):
        """Reads once (up to `timeout`); returns the new events."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return []
        except (ssl.SSLError, ConnectionResetError, OSError):
            data = b""
        if not data:
            self.closed = True
            return []
        evs = self.c.receive_data(data)
        self.events += evs
        if self.auto_ack:
            for ev in evs:
                if isinstance(ev, h2.events.DataReceived) and ev.flow_controlled_length:
                    try:
                        self.c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    except h2.exceptions.StreamClosedError:
                        pass
        self.flush()
        return evs

    def wait(self, pred, timeout=10.0, what="event"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = pred()
            if r:
                return r
            if self.closed:
                break
            self.pump(0.2)
        r = pred()
        if r:
            return r
        raise AssertionError(f"timed out waiting for {what}; events: {self.events[-10:]}")

    def request(self, path, method="GET", body=None, headers=(), authority="localhost", end=True):
        sid = self.c.get_next_available_stream_id()
        hs = [(":method", method), (":scheme", "https"), (":authority", authority), (":path", path)] + list(headers)
        self.c.send_headers(sid, hs, end_stream=(body is None and end))
        if body is not None:
            self.send_body(sid, body, end=end)
        self.flush()
        return sid

    def send_body(self, sid, body, end=True):
        off = 0
        while off < len(body):
            window = min(self.c.local_flow_control_window(sid), self.c.max_outbound_frame_size)
            if window <= 0:
                self.pump(0.2)
                continue
            chunk = body[off:off + window]
            self.c.send_data(sid, chunk)
            off += len(chunk)
            self.flush()
        if end:
            self.c.end_stream(sid)
            self.flush()

    def response(self, sid, timeout=15.0):
        """(status, headers, body, trailers) of stream `sid`, reading until it ends or is reset."""
        status, hdrs, body, trailers = None, [], bytearray(), []
        done = False
        seen = 0
        deadline = time.time() + timeout
        while not done and time.time() < deadline:
            for ev in self.events[seen:]:
                seen += 1
                if getattr(ev, "stream_id", None) != sid:
                    continue
                if isinstance(ev, h2.events.ResponseReceived):
                    hdrs = [(k.decode(), v.decode()) for k, v in ev.headers]
                    status = int(dict(hdrs)[":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                elif isinstance(ev, h2.events.TrailersReceived):
                    trailers = [(k.decode(), v.decode()) for k, v in ev.headers]
                elif isinstance(ev, h2.events.StreamEnded):
                    done = True
                elif isinstance(ev, h2.events.StreamReset):
                    raise StreamResetError(ev.error_code)
            self.flush()
            if not done:
                if self.closed:
                    raise AssertionError(f"connection closed before stream {sid} ended")
                self.pump(0.2)
        assert done, f"stream {sid} did not end"
        return status, hdrs, bytes(body), trailers

    def reset_of(self, sid):
        return next((e for e in self.events if isinstance(e, h2.events.StreamReset) and e.stream_id == sid), None)

    def goaway(self):
        return next((e for e in self.events if isinstance(e, h2.events.ConnectionTerminated)), None)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class StreamResetError(Exception):
    def __init__(self, code):
        super().__init__(f"stream reset with {code}")
        self.code = code


def raw_frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


class RawConn:
    """Hand-built frames after a real preface, for the abuse cases; reads frames back without any state machine."""

    def __init__(self, port):
        self.sock = tls_connect(port, alpn=["h2"])
        assert self.sock.selected_alpn_protocol() == "h2"
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + raw_frame(4, 0, 0))
        self.buf = b""
        self.closed = False
        self.enc = h2.connection.H2Connection().encoder
        self.dec = hpack.Decoder()

    def headers_block(self, path="/", extra=()):
        return self.enc.encode([(":method", "GET"), (":scheme", "https"), (":authority", "localhost"),
                                (":path", path)] + list(extra))

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except (OSError, ssl.SSLError):
            return False

    def frames(self, until, timeout=10.0):
        """Reads frames [(type, flags, stream, payload)] until `until(frames)` or EOF/timeout; returns them."""
        out = []
        deadline = time.time() + timeout
        while time.time() < deadline and not until(out):
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                out.append((self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF,
                            self.buf[9:9 + n]))
                self.buf = self.buf[9 + n:]
            if until(out):
                break
            self.sock.settimeout(max(0.05, deadline - time.time()))
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                break
            except (OSError, ssl.SSLError):
                d = b""
            if not d:
                self.closed = True
                break
            self.buf += d
        return out

    def read_until_goaway(self, timeout=10.0):
        """Returns (GOAWAY error code or None, closed)."""
        deadline = time.time() + timeout
        code = None
        while time.time() < deadline:
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                ftype = self.buf[3]
                payload = self.buf[9:9 + n]
                self.buf = self.buf[9 + n:]
                if ftype == 7 and code is None:
                    code = struct.unpack(">I", payload[4:8])[0]
            self.sock.settimeout(max(0.05, deadline - time.time()))
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                break
            except (OSError, ssl.SSLError):
                d = b""
            if not d:
                return code, True
            self.buf += d
        return code, False


def still_serving(p):
    """Another client gets a normal answer over HTTP/2."""
    r = curl("--http2", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", p.base + "/bytes/1000")
    assert r.stdout == "200 2", r


# --- real clients ---------------------------------------------------------------------------------------------


def test_curl_get_over_h2(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path)
    r = subprocess.run(["curl", "-sS", "-k", "--http2", "-o", "-", "-w", "\n%{http_code} %{http_version}",
                        p.base + "/bytes/300000"], capture_output=True, timeout=30)
    body, _, meta = r.stdout.rpartition(b"\n")
    assert meta == b"200 2", (meta, r.stderr)
    assert body == pattern(300000)
    # Access log line per stream, protocol h2.
    log = os.path.join(str(tmp_path), "access.log")
    lines = wait_for(lambda: [json.loads(l) for l in open(log).read().splitlines() if l.strip()] if
                     os.path.exists(log) else None, what="access log")
    assert lines[-1]["protocol"] == "HTTP/2" and lines[-1]["status"] == 200 and lines[-1]["bytes_out"] == 300000


def test_response_trailers_end_a_complete_logged_stream(proxies, origin, tmp_path):
    """An origin's chunked response with a trailer field: the body, then HEADERS with the trailer and END_STREAM.
    The access log line says the response was complete (not truncated) with every byte counted. 100000 bytes
    (the body leaves before the trailers are known) and 0 bytes."""
    p = start(proxies, origin, tmp_path)
    c = H2Client(p.port)
    for n in (100000, 0):
        sid = c.request(f"/trailers/{n}", headers=[("te", "trailers")])
        status, _, body, trailers = c.response(sid)
        assert status == 200 and body == pattern(n)
        assert ("x-checksum", f"n={n}") in trailers, trailers
    c.close()
    log = os.path.join(str(tmp_path), "access.log")

    def logged():
        lines = [json.loads(l) for l in open(log).read().splitlines() if l.strip()] if os.path.exists(log) else []
        got = {l["path"]: l for l in lines}
        return got if len(got) == 2 else None

    got = wait_for(logged, what="both access log lines")
    for n in (100000, 0):
        line = got[f"/trailers/{n}"]
        assert line["status"] == 200 and line["bytes_out"] == n and not line.get("truncated"), line


def test_curl_post_large_streamed_body(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path)
    data = os.urandom(1 << 20) * 24  # 24 MiB
    sha = hashlib.sha256(data).hexdigest()
    src = os.path.join(str(tmp_path), "body.bin")
    with open(src, "wb") as f:
        f.write(data)
    # Known length (content-length toward the origin) and unknown length (re-chunked).
    for args in (["--data-binary", "@" + src], ["-T", src, "-H", "Content-Length:"]):
        r = curl("--http2", *args, p.base + "/upload", timeout=120)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["body_length"] == len(data) and doc["body_sha256"] == sha


def test_curl_parallel_streams_share_one_connection(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path)
    urls = [f"{p.base}/bytes/{1000 + i}" for i in range(60)]
    args = ["--http2", "--parallel", "--parallel-max", "60", "-w", "%{http_code} %{http_version} %{size_download}\n"]
    for u in urls:
        args += ["-o", "/dev/null", u]
    r = curl(*args, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = sorted(r.stdout.split("\n")[:-1])
    assert len(lines) == 60
    assert sorted(int(l.split()[2]) for l in lines) == list(range(1000, 1060))
    assert all(l.startswith("200 2 ") for l in lines), lines


def test_h2load_32x10_zero_errors(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path, '[http2]\nmax_concurrent_streams = 100\n')
    r = subprocess.run(["h2load", "-c32", "-m10", "-n", "20000", p.base + "/bytes/64"],
                       capture_output=True, text=True, timeout=300)
    out = r.stdout
    assert re.search(r"requests: 20000 total, 20000 started, 20000 done, 20000 succeeded, 0 failed, 0 errored, "
                     r"0 timeout", out), out
    assert "status codes: 20000 2xx" in out, out
    still_serving(p)


def test_builtin_page_over_h2_shows_protocol(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path, upstream=False)
    r = curl("--http2", "-H", "Accept: application/json", p.base + "/x?y")
    doc = json.loads(r.stdout)
    assert doc["protocol"] == "HTTP/2" and doc["alpn"] == "h2" and doc["path"] == "/x?y"
    html = curl("--http2", p.base + "/").stdout
    assert "<td>Protocol</td><td>HTTP/2</td>" in html
    # HTTP/1.1 still offered and served.
    r = curl("--http1.1", "-H", "Accept: application/json", p.base + "/")
    assert json.loads(r.stdout)["protocol"] == "HTTP/1.1"


# --- protocol level -------------------------------------------------------------------------------------------


def test_settings_advertised_and_acknowledged(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path,
              "[http2]\nmax_concurrent_streams = 37\ninitial_window_size = 40000\nmax_header_list_size = 9000\n")
    c = H2Client(p.port)
    ev = c.wait(lambda: next((e for e in c.events if isinstance(e, h2.events.RemoteSettingsChanged)), None),
                what="server SETTINGS")
    s = {k: v.new_value for k, v in ev.changed_settings.items()}
    assert s[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 37
    assert s[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] == 40000
    assert s[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE] == 9000
    assert s[h2.settings.SettingCodes.ENABLE_PUSH] == 0
    c.wait(lambda: any(isinstance(e, h2.events.SettingsAcknowledged) for e in c.events), what="SETTINGS ACK")
    sid = c.request("/bytes/10")
    assert c.response(sid)[0] == 200
    c.close()


def test_response_respects_client_flow_control(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path)
    c = H2Client(p.port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    c.auto_ack = False
    sid = c.request("/bytes/200000")
    c.wait(lambda: any(isinstance(e, h2.events.ResponseReceived) for e in c.events), what="response head")
    time.sleep(0.5)
    for _ in range(5):
        c.pump(0.2)
    got = sum(len(e.data) for e in c.events if isinstance(e, h2.events.DataReceived))
    assert got <= 1000, got  # nothing beyond the window we granted
    c.auto_ack = True
    for e in c.events:
        if isinstance(e, h2.events.DataReceived):
            c.c.acknowledge_received_data(e.flow_controlled_length, sid)  # re-opens the window
    c.flush()
    status, _, body, _ = c.response(sid)
    assert status == 200 and body == pattern(200000)
    c.close()


def request_marked(c, base, step, shift_step, count=12):
    """Requests `count` downloads of distinct sizes and bytes on `c` (/mark/N/shift); {stream id: expected body}."""
    want = {}
    for k in range(count):
        n, shift = base + step * k, (k * shift_step) & 0xFF
        want[c.request(f"/mark/{n}/{shift}")] = pattern(n, shift)
    return want


@pytest.mark.parametrize("window", [None, 20000])
def test_parallel_large_downloads_arrive_intact(proxies, origin, tmp_path, window):
    """Twelve concurrent downloads on one connection, each with its own bytes. Large origin reads are framed
    straight from the origin's buffer when the stream has nothing waiting, after flushing what earlier frames left
    in the output; the rest waits in the stream's buffer. With a 20,000-byte stream window most bytes take the
    second way, interleaved with WINDOW_UPDATEs. Every body must arrive whole, in order, on its own stream."""
    p = start(proxies, origin, tmp_path)
    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window} if window else None
    c = H2Client(p.port, settings=settings)
    want = request_marked(c, base=300000, step=4099, shift_step=37)
    for sid, expected in want.items():
        status, _, body, _ = c.response(sid, timeout=60)
        assert status == 200
        assert len(body) == len(expected), sid
        assert body == expected, f"stream {sid}: bytes differ"
    c.close()
    still_serving(p)


def test_parallel_downloads_with_the_proxy_out_of_fds(proxies, origin, tmp_path):
    """Twelve large downloads on one connection while the proxy can open only two more sockets: a stream that gets
    no origin connection is answered with a clear 5xx at once, a stream that gets one arrives whole (the direct
    framing path carries it next to the failures), nothing hangs, and once descriptors come back the same connection
    serves all twelve."""
    import resource
    p = start(proxies, origin, tmp_path)
    c = H2Client(p.port)
    sid = c.request("/bytes/10")
    assert c.response(sid)[0] == 200
    pid = p.p.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (len(os.listdir(f"/proc/{pid}/fd")) + 2, hard))
    try:
        want = request_marked(c, base=300000, step=4099, shift_step=41)
        statuses = []
        for sid, expected in want.items():
            status, _, body, _ = c.response(sid, timeout=30)
            statuses.append(status)
            if status == 200:
                assert body == expected, f"stream {sid}: bytes differ"
            else:
                assert status in (502, 503), (sid, status, body[:200])
        print("statuses with 2 spare fds:", statuses)
        assert 200 in statuses and any(s != 200 for s in statuses), statuses
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    want = request_marked(c, base=200000, step=977, shift_step=13)
    for sid, expected in want.items():
        status, _, body, _ = c.response(sid, timeout=30)
        assert status == 200 and body == expected, sid
    c.close()
    still_serving(p)
    assert p.alive()


class FileOrigin(NginxProcess):
    """A plain-HTTP nginx serving one 16 KiB file at /16k: an origin fast enough to keep every stream's body
    flowing while the clients go away (the Python origin answers too slowly for that)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="edgeproxy-file-origin-")
        os.chmod(self.dir, 0o755)
        with open(os.path.join(self.dir, "16k"), "wb") as f:
            f.write(os.urandom(16384))
        self.port = free_port()
        self.launch(nginx_conf(self.dir, f"""
    server {{
        listen 127.0.0.1:{self.port} backlog=1024;
        location = /16k {{ root {self.dir}; }}
    }}""", worker_connections=1024, access_log=False))


def test_clients_vanishing_mid_download_leave_the_proxy_serving(proxies, tmp_path):
    """Clients killed while their downloads are in flight (the kernel resets every connection with unread data).
    A failed write from inside a stream's delivery once tore the connection down under its callers, and a flush
    they scheduled afterwards ran on the freed connection: a crash in three of four runs of thirty rounds. Sixty rounds
    of an h2load (128 connections x 10 streams of 16 KiB bodies) killed 0.3 s into its run."""
    o = FileOrigin()
    try:
        cfg = write_file(tmp_path, "h2.toml", '[access_log]\npath = "off"\n[http2]\nmax_concurrent_streams = 100\n')
        p = proxies(["--config", cfg, "--listen", "127.0.0.1:0", "--upstream", f"http://127.0.0.1:{o.port}"])
        for _ in range(60):
            load = subprocess.Popen(["h2load", "-t1", "-c128", "-m10", "-D", "30", p.base + "/16k"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                load.wait(timeout=0.3)  # the load's running time, not a wait for an event: it never ends by itself
            except subprocess.TimeoutExpired:
                pass
            load.kill()
            load.wait(timeout=10)
            assert p.alive(), p.output()[-3000:]
        r = curl("--http2", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", p.base + "/16k")
        assert r.stdout == "200 16384", r
        assert p.alive()
    finally:
        o.stop()


def test_request_body_flow_control_window_is_enforced(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path, "[http2]\ninitial_window_size = 16384\n")
    c = H2Client(p.port)
    c.wait(lambda: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in c.events), what="SETTINGS")
    assert c.c.remote_settings.initial_window_size == 16384
    body = os.urandom(500_000)
    sid = c.request("/upload", method="POST", body=body, headers=[("content-length", str(len(body)))])
    status, _, resp, _ = c.response(sid)
    doc = json.loads(resp)
    assert status == 200 and doc["body_length"] == len(body)
    assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()
    c.close()


def test_rst_stream_from_client_leaves_connection_usable(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path)
    c = H2Client(p.port)
    slow = c.request("/slow/1500")
    time.sleep(0.2)
    c.c.reset_stream(slow, error_code=0x8)  # CANCEL
    c.flush()
    sid = c.request("/bytes/5000")
    status, _, body, _ = c.response(sid)
    assert status == 200 and body == pattern(5000)
    assert c.goaway() is None
    c.close()


def test_upstream_failures_are_per_stream(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path, '[timeouts]\nupstream_read = "1s"\n')
    c = H2Client(p.port)
    dead = c.request("/die-before-headers")
    slow = c.request("/slow/3000")
    ok = c.request("/bytes/20000")
    mid = c.request("/die-mid-body/100000")
    assert c.response(dead)[0] == 502
    assert c.response(ok)[2] == pattern(20000)
    assert c.response(slow, timeout=10)[0] == 504
    with pytest.raises(StreamResetError) as e:
        c.response(mid)
    assert e.value.code == 0x2  # INTERNAL_ERROR: a truncated body must not look complete
    sid = c.request("/bytes/10")
    assert c.response(sid)[0] == 200
    c.close()


@pytest.mark.parametrize("bad", [
    [("X-Upper", "1")],                      # uppercase field name
    [("connection", "keep-alive")],          # connection-specific
    [("transfer-encoding", "chunked")],      # connection-specific
    [("te", "gzip")],                        # TE other than trailers
    [("keep-alive", "1")],
], ids=["uppercase", "connection", "transfer-encoding", "te", "keep-alive"])
def test_invalid_headers_reset_the_stream(proxies, origin, tmp_path, bad):
    p = start(proxies, origin, tmp_path)
    c = H2Client(p.port, validate=False)
    sid = c.request("/echo", headers=bad)
    with pytest.raises(StreamResetError) as e:
        c.response(sid)
    assert e.value.code == PROTOCOL_ERROR
    good = c.request("/bytes/10")
    assert c.response(good)[0] == 200
    assert origin.output().count("REQ GET /echo") == 0  # never reached the origin
    c.close()


@pytest.mark.parametrize("pseudo", [
    [(":method", "GET"), (":scheme", "https"), (":authority", "localhost")],                         # no :path
    [(":method", "GET"), (":method", "GET"), (":scheme", "https"), (":path", "/echo")],             # duplicate
    [(":method", "GET"), (":scheme", "https"), (":path", "/echo"), (":status", "200")],             # response-only
    [(":method", "GET"), (":scheme", "https"), ("x-a", "1"), (":path", "/echo")],                   # after regular
], ids=["missing-path", "duplicate-method", "status-in-request", "pseudo-after-regular"])
def test_malformed_pseudo_headers_reset_the_stream(proxies, origin, tmp_path, pseudo):
    p = start(proxies, origin, tmp_path)
    c = RawConn(p.port)
    block = c.enc.encode(pseudo)
    c.send(raw_frame(1, 0x5, 1, block))  # HEADERS END_STREAM|END_HEADERS
    deadline = time.time() + 5
    rst = None
    while time.time() < deadline and rst is None:
        c.sock.settimeout(0.5)
        try:
            c.buf += c.sock.recv(65536)
        except socket.timeout:
            pass
        i = 0
        while i + 9 <= len(c.buf):
            n = int.from_bytes(c.buf[i:i + 3], "big")
            if c.buf[i + 3] == 3 and int.from_bytes(c.buf[i + 5:i + 9], "big") == 1:
                rst = struct.unpack(">I", c.buf[i + 9:i + 13])[0]
            i += 9 + n
    assert rst == PROTOCOL_ERROR
    assert "REQ GET /echo" not in origin.output()
    still_serving(p)


def test_header_list_over_limit_gets_431(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path, "[http2]\nmax_header_list_size = 4096\n")
    c = H2Client(p.port)
    sid = c.request("/echo", headers=[("x-big", "a" * 3000), ("x-big2", "b" * 3000)])
    assert c.response(sid)[0] == 431
    sid = c.request("/bytes/10")
    assert c.response(sid)[0] == 200
    c.close()


def test_trailers_are_forwarded_to_a_chunked_origin_request(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path)
    c = H2Client(p.port)
    sid = c.request("/upload", method="POST", body=b"x" * 1000, end=False)
    c.c.send_headers(sid, [("x-checksum", "abc")], end_stream=True)
    c.flush()
    status, _, body, _ = c.response(sid)
    doc = json.loads(body)
    assert status == 200 and doc["body_length"] == 1000
    assert ["Transfer-Encoding", "chunked"] in doc["headers"]
    c.close()


def goaway_of(frames):
    g = next((f for f in frames if f[0] == 7), None)
    return None if g is None else (struct.unpack(">I", g[3][:4])[0] & 0x7FFFFFFF, struct.unpack(">I", g[3][4:8])[0])


def stream_answer(c, frames, sid):
    """(status, body, ended) of `sid` from raw frames."""
    status, body, ended = None, b"", False
    for t, fl, s, payload in frames:
        if s != sid:
            continue
        if t == 1:
            status = int(dict(c.dec.decode(payload))[":status"])
        elif t == 0:
            body += payload
        if t in (0, 1) and fl & 0x1:
            ended = True
    return status, body, ended


# python-h2 treats a GOAWAY as the end of the connection and rejects the frames of streams still in flight, so
# the graceful cases read raw frames instead.
def test_goaway_on_drain_lets_inflight_stream_finish(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path)
    c = RawConn(p.port)
    c.send(raw_frame(1, 0x5, 1, c.headers_block("/slow/1000")))
    time.sleep(0.3)
    p.signal(signal.SIGTERM)
    frames = c.frames(lambda fs: stream_answer(c, fs, 1)[2] and goaway_of(fs), timeout=10)
    last, code = goaway_of(frames)
    assert code == NO_ERROR and last >= 1
    assert stream_answer(c, frames, 1) == (200, b"slow ok\n", True)
    c.frames(lambda fs: False, timeout=5)
    assert c.closed  # closed once the stream is done
    assert p.wait(15) == 0


def test_goaway_after_reload(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path)
    c = RawConn(p.port)
    c.send(raw_frame(1, 0x5, 1, c.headers_block("/bytes/10")))
    frames = c.frames(lambda fs: stream_answer(c, fs, 1)[2])
    assert stream_answer(c, frames, 1)[0] == 200
    mark = len(p.output())
    p.signal(signal.SIGHUP)
    p.wait_log("reload complete", after=mark)
    # The next stream is still served on this connection; then the client is asked to reconnect in two steps
    # (RFC 9113 §6.8): a shutdown notice (last stream 2^31-1), and a second later the final GOAWAY naming the
    # last stream processed, so requests in flight when the notice went out are not refused.
    c.send(raw_frame(1, 0x5, 3, c.headers_block("/bytes/20")))
    frames = c.frames(lambda fs: stream_answer(c, fs, 3)[2] and goaway_of(fs))
    assert stream_answer(c, frames, 3) == (200, pattern(20), True)
    assert goaway_of(frames) == (0x7FFFFFFF, NO_ERROR)
    # A stream sent after the notice is still served.
    c.send(raw_frame(1, 0x5, 5, c.headers_block("/bytes/30")))
    frames = c.frames(lambda fs: stream_answer(c, fs, 5)[2] and len([f for f in fs if f[0] == 7]) >= 1
                      and goaway_of([f for f in fs if f[0] == 7][-1:]) == (5, NO_ERROR))
    assert stream_answer(c, frames, 5) == (200, pattern(30), True)
    still_serving(p)


# --- abuse ----------------------------------------------------------------------------------------------------


def assert_calm_goaway(conn, p):
    code, closed = conn.read_until_goaway(10)
    assert code == ENHANCE_YOUR_CALM, code
    assert closed
    still_serving(p)


def test_rapid_reset_is_answered_with_goaway(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path, "[http2]\nrapid_reset_burst = 50\nrapid_reset_rate = 10\n")
    c = RawConn(p.port)
    out = b""
    for i in range(500):
        sid = 1 + 2 * i
        out += raw_frame(1, 0x5, sid, c.headers_block("/slow/2000")) + raw_frame(3, 0, sid, struct.pack(">I", 8))
    c.send(out)
    assert_calm_goaway(c, p)
    # The slow requests that reached the origin were cancelled with their streams; fewer than the burst got in.
    assert origin.output().count("REQ GET /slow/2000") <= 60


def test_continuation_flood_is_answered_with_goaway(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path)
    c = RawConn(p.port)
    block = c.headers_block("/echo")
    c.send(raw_frame(1, 0x1, 1, block))  # HEADERS with END_STREAM, no END_HEADERS
    for _ in range(200):
        if not c.send(raw_frame(9, 0, 1, c.enc.encode([("x-f", "v" * 10)]))):
            break
    assert_calm_goaway(c, p)


def test_settings_flood_is_answered_with_goaway(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path, "[http2]\ncontrol_frame_burst = 200\ncontrol_frame_rate = 10\n")
    c = RawConn(p.port)
    c.send(raw_frame(4, 0, 0, struct.pack(">HI", 3, 100)) * 2000)
    assert_calm_goaway(c, p)


def test_ping_flood_is_answered_with_goaway(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path, "[http2]\ncontrol_frame_burst = 200\ncontrol_frame_rate = 10\n")
    c = RawConn(p.port)
    c.send(raw_frame(6, 0, 0, b"12345678") * 2000)
    assert_calm_goaway(c, p)


def test_zero_window_stall_is_answered_with_goaway(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path, '[http2]\nzero_window_timeout = "1s"\n')
    c = RawConn(p.port)
    # INITIAL_WINDOW_SIZE 0: the server may send headers but no DATA until we open the window, which we never do.
    c.send(raw_frame(4, 0, 0, struct.pack(">HI", 4, 0)) + raw_frame(1, 0x5, 1, c.headers_block("/bytes/1000000")))
    t0 = time.time()
    assert_calm_goaway(c, p)
    assert time.time() - t0 < 8


def test_ordinary_traffic_is_not_mistaken_for_abuse(proxies, origin, tmp_path):
    p = start(proxies, origin, tmp_path)
    c = H2Client(p.port)
    for i in range(30):
        c.c.ping(b"%08d" % i)
        sid = c.request("/bytes/100")
        if i % 3 == 0:
            c.c.reset_stream(sid, error_code=0x8)
            c.flush()
        else:
            assert c.response(sid)[0] == 200
    assert c.goaway() is None
    c.close()
