"""WebSocket and HTTP Upgrade through the proxy (issue 12 §2): a real WebSocket origin (Python `websockets`,
ws_origin.py) behind EdgeProxy, real clients over TLS: the `websockets` client over HTTP/1.1, and python-h2 for
RFC 8441 extended CONNECT over HTTP/2 (curl 7.88 / nghttp2 1.52 cannot send an extended CONNECT: curl's WebSocket
support speaks HTTP/1.1 only). Memory (VmRSS) and descriptors (/proc/PID/fd) of the proxy are read from /proc.
Everything on loopback, bounded in time."""
import asyncio
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import struct
import time
import urllib.request

import pytest

from conftest import Origin, rss_kb, tls_connect, wait_for, write_file

try:
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus
except ImportError:  # pragma: no cover - scripts/install-deps installs it
    pytest.fail("Python websockets is required (scripts/install-deps installs it)", pytrace=False)


def start_proxy(proxies, tmp_path, origin, tunnel_idle="60s", workers=1, plain=None):
    """The WebSocket origin behind every path (/nows with websocket = false); with `plain`, /plain goes to that
    plain HTTP origin."""
    plain_route = "" if plain is None else f"""
[upstreams.plain]
servers = ["{plain.url}"]

[[routes]]
path_prefix = "/plain"
upstream = "plain"
"""
    cfg = write_file(tmp_path, "ws.toml", f"""
admin = "127.0.0.1:0"
workers = {workers}

[access_log]
path = "stdout"
fields = ["time", "client", "protocol", "method", "path", "status", "upstream_status", "bytes_in", "bytes_out",
          "duration_ms"]

[timeouts]
tunnel_idle = "{tunnel_idle}"

[upstreams.ws]
servers = ["{origin.url}"]

[[routes]]
path_prefix = "/nows"
upstream = "ws"
websocket = false
{plain_route}
[[routes]]
upstream = "ws"
""")
    return proxies(["--config", cfg, "--listen", "127.0.0.1:0"])


@pytest.fixture
def ws_origin():
    o = Origin("ws_origin.py", name="ws-origin")
    yield o
    o.stop()


@pytest.fixture
def plain_origin():
    o = Origin("origin.py", name="plain-origin")
    yield o
    o.stop()


_CLIENT_SSL = None


def client_ssl():
    """One client context for every connection (building one loads the system CA store: ~0.1 s each)."""
    global _CLIENT_SSL
    if _CLIENT_SSL is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _CLIENT_SSL = ctx
    return _CLIENT_SSL


def connect(p, path, **kw):
    return ws_connect(f"wss://127.0.0.1:{p.port}{path}", ssl=client_ssl(), server_hostname="localhost",
                      ping_interval=None, compression=None, max_size=None, open_timeout=10, close_timeout=5, **kw)


def metric(p, name):
    with urllib.request.urlopen(f"{p.admin}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def log_lines(p, status=None):
    out = []
    for line in p.output().splitlines():
        if line.startswith("{") and '"method"' in line:
            doc = json.loads(line)
            if status is None or doc.get("status") == status:
                out.append(doc)
    return out


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_websocket_echo_over_tls_is_a_logged_counted_tunnel(proxies, tmp_path, ws_origin):
    p = start_proxy(proxies, tmp_path, ws_origin)

    async def run():
        async with connect(p, "/echo") as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01binary")
            assert await ws.recv() == b"\x00\x01binary"
            assert metric(p, "edgeproxy_tunnels_active") == 1
        async with connect(p, "/headers") as ws:
            return json.loads(await ws.recv())

    hdrs = asyncio.run(run())
    names = {k.lower(): v for k, v in hdrs}
    # The origin saw the proxy's own Connection/Upgrade pair and the usual forwarding fields.
    assert names["upgrade"].lower() == "websocket" and names["connection"].lower() == "upgrade", hdrs
    assert names["x-forwarded-for"] == "127.0.0.1" and "edgeproxy" in names["via"], hdrs
    assert "sec-websocket-key" in names
    wait_for(lambda: metric(p, "edgeproxy_tunnels_active") == 0, what="tunnel gauge back to 0")
    assert metric(p, "edgeproxy_tunnels_total") == 2
    lines = wait_for(lambda: len(log_lines(p, 101)) == 2 and log_lines(p, 101), what="two tunnel log lines")
    echo = next(d for d in lines if d["path"] == "/echo")
    assert echo.get("tunnel") is True and "truncated" not in echo, echo
    # Two client frames (5 and 8 payload bytes, masked: 6 bytes of header each) and two server frames (2 each).
    assert echo["bytes_in"] >= 5 + 8 + 12 and echo["bytes_out"] >= 5 + 8 + 4, echo
    assert echo["upstream_status"] == 101 and echo["duration_ms"] >= 0


def test_ten_megabytes_echoed_with_bounded_proxy_memory(proxies, tmp_path, ws_origin):
    p = start_proxy(proxies, tmp_path, ws_origin)
    total = 10 << 20
    chunk = 64 << 10

    async def echo(n):
        async with connect(p, "/echo") as ws:
            sent = hashlib.sha256()
            got = hashlib.sha256()
            received = 0

            async def reader():
                nonlocal received
                while received < n:
                    m = await ws.recv()
                    got.update(m)
                    received += len(m)

            task = asyncio.create_task(reader())
            off = 0
            while off < n:
                b = os.urandom(min(chunk, n - off))
                sent.update(b)
                await ws.send(b)
                off += len(b)
            await asyncio.wait_for(task, 60)
            assert sent.digest() == got.digest()
            return received

    asyncio.run(echo(1 << 20))  # warm up: buffer pools, TLS buffers, the origin connection path
    before = rss_kb(p.p.pid)
    assert asyncio.run(echo(total)) == total
    after = rss_kb(p.p.pid)
    grown = after - before
    print(f"VmRSS before {before} kB, after 10 MiB echoed {after} kB (+{grown} kB)")
    # A tunnel that held what passes through it would grow by the 10 MiB it moved each way.
    assert grown < 6 * 1024, (before, after)
    line = wait_for(lambda: [d for d in log_lines(p, 101) if d["bytes_out"] >= total], what="the 10 MiB log line")[0]
    assert line["bytes_in"] >= total and line.get("tunnel") is True


def test_client_that_stops_reading_stalls_the_origin_not_the_proxy_memory(proxies, tmp_path, ws_origin):
    p = start_proxy(proxies, tmp_path, ws_origin)
    flood = 256 << 20
    before = rss_kb(p.p.pid)
    s = tls_connect(p.port)
    try:
        s.sendall(b"GET /flood?bytes=%d HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                  b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" % flood)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert b"\r\nConnection: upgrade\r\n" in head and b"\r\nUpgrade: websocket\r\n" in head.replace(
            b"Upgrade: Websocket", b"Upgrade: websocket"), head
        # The client reads nothing more. The origin's sends stall once the kernel buffers and the proxy's bounded
        # buffers are full: its progress stops growing.
        def sent():
            m = re.findall(r"FLOOD (\d+)", ws_origin.output())
            return int(m[-1]) if m else 0

        def stalled():
            a = sent()
            time.sleep(1.0)
            return a > 0 and sent() == a and a
        stuck_at = wait_for(stalled, timeout=60, what="the origin's sends to stall")
        after = rss_kb(p.p.pid)
        print(f"origin stalled after {stuck_at >> 10} KiB of {flood >> 20} MiB; proxy VmRSS {before} -> {after} kB")
        assert stuck_at < flood // 4, stuck_at
        assert after - before < 16 * 1024, (before, after)
        # Reading again drains the tunnel: backpressure, not a wedge.
        s.settimeout(10)
        got = 0
        while got < 8 << 20:
            b = s.recv(1 << 16)
            assert b
            got += len(b)
        wait_for(lambda: sent() > stuck_at, what="the origin to send again once the client reads")
    finally:
        s.close()


def test_idle_tunnel_is_closed_on_both_sides(proxies, tmp_path, ws_origin):
    p = start_proxy(proxies, tmp_path, ws_origin, tunnel_idle="1s")

    async def run():
        async with connect(p, "/echo") as ws:
            # Traffic keeps it open past the idle timeout...
            for _ in range(4):
                await ws.send("tick")
                assert await ws.recv() == "tick"
                await asyncio.sleep(0.4)
        t0 = time.monotonic()
        ws = await connect(p, "/idle")
        try:
            # ...silence closes it: the client sees the connection end without a close frame from the origin.
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return time.monotonic() - t0
        finally:
            await ws.close()

    waited = asyncio.run(run())
    assert 0.9 <= waited < 5, waited
    m = wait_for(lambda: re.search(r"CLOSED idle (\S+)", ws_origin.output()), what="the origin side closed")
    assert 0.9 <= float(m.group(1)) < 5, m.group(0)
    wait_for(lambda: metric(p, "edgeproxy_tunnels_active") == 0, what="tunnel gauge back to 0")
    idle = wait_for(lambda: [d for d in log_lines(p, 101) if d["path"] == "/idle"], what="idle tunnel logged")[0]
    assert idle.get("tunnel") is True and "truncated" not in idle


def test_thousand_tunnels_leak_no_descriptor(proxies, tmp_path, ws_origin):
    p = start_proxy(proxies, tmp_path, ws_origin)
    pid = p.p.pid
    baseline = fd_count(pid)
    n, concurrency = 1000, 100

    async def one(i, sem):
        async with sem:
            async with connect(p, "/echo") as ws:
                msg = f"tunnel {i}"
                await ws.send(msg)
                assert await ws.recv() == msg

    async def run():
        sem = asyncio.Semaphore(concurrency)
        await asyncio.wait_for(asyncio.gather(*(one(i, sem) for i in range(n))), 240)

    t0 = time.monotonic()
    asyncio.run(run())
    took = time.monotonic() - t0
    wait_for(lambda: metric(p, "edgeproxy_tunnels_active") == 0, timeout=30, what="every tunnel ended")
    wait_for(lambda: fd_count(pid) <= baseline, timeout=30, what="descriptors back to the baseline")
    assert metric(p, "edgeproxy_tunnels_total") == n
    print(f"{n} tunnels ({concurrency} at a time) in {took:.1f}s; fds {baseline} -> {fd_count(pid)}")


def test_route_with_websocket_false_strips_upgrade(proxies, tmp_path, ws_origin):
    p = start_proxy(proxies, tmp_path, ws_origin)

    async def run():
        with pytest.raises(InvalidStatus) as e:
            async with connect(p, "/nows/echo"):
                pass
        return e.value.response

    resp = asyncio.run(run())
    # The origin never saw Upgrade (as nginx without `proxy_set_header Upgrade`): `websockets` answers a plain
    # GET with 426 Upgrade Required, forwarded as a normal response.
    assert resp.status_code == 426, resp
    assert metric(p, "edgeproxy_tunnels_total") == 0
    # Same on a raw connection, which stays usable for the next request (keep-alive).
    s = tls_connect(p.port)
    try:
        req = (b"GET /nows/x HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        s.sendall(req)
        data = b""
        s.settimeout(10)
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        assert data.startswith(b"HTTP/1.1 426 "), data
    finally:
        s.close()


def test_non_101_answer_to_an_upgrade_is_a_normal_response(proxies, tmp_path, ws_origin):
    """An Upgrade the origin refuses (here: no Sec-WebSocket-Key → 400 from `websockets`) is forwarded as is."""
    p = start_proxy(proxies, tmp_path, ws_origin)
    s = tls_connect(p.port)
    try:
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        s.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        assert data.startswith(b"HTTP/1.1 400 "), data
    finally:
        s.close()
    assert metric(p, "edgeproxy_tunnels_total") == 0


# ------------------------------------------------------------------------------------------------ RFC 8441 (h2)

def ws_frame(payload, opcode=0x2):
    """One masked client frame (RFC 6455 §5.2)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def ws_parse(buf):
    """Complete unmasked server frames at the start of `buf`: ([(opcode, payload)], rest)."""
    out = []
    while len(buf) >= 2:
        op, n = buf[0] & 0x0F, buf[1] & 0x7F
        off = 2
        if n == 126:
            if len(buf) < 4:
                break
            n = struct.unpack("!H", buf[2:4])[0]
            off = 4
        elif n == 127:
            if len(buf) < 10:
                break
            n = struct.unpack("!Q", buf[2:10])[0]
            off = 10
        if len(buf) < off + n:
            break
        out.append((op, buf[off:off + n]))
        buf = buf[off + n:]
    return out, buf


class H2Client:
    """python-h2 over a TLS socket with ALPN h2."""

    def __init__(self, port):
        import h2.config
        import h2.connection
        self.sock = tls_connect(port, alpn=["h2"])
        assert self.sock.selected_alpn_protocol() == "h2"
        self.sock.settimeout(10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.flush()
        self.remote_settings = {}

    def flush(self):
        d = self.conn.data_to_send()
        if d:
            self.sock.sendall(d)

    def events(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        evs = self.conn.receive_data(data)
        self.flush()
        return evs


def test_rfc8441_websocket_over_http2(proxies, tmp_path, ws_origin):
    import h2.events
    import h2.settings
    p = start_proxy(proxies, tmp_path, ws_origin)
    c = H2Client(p.port)
    try:
        # The server announces SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 §3).
        def settings():
            for ev in c.events():
                if isinstance(ev, h2.events.RemoteSettingsChanged):
                    return {k: v.new_value for k, v in ev.changed_settings.items()}
        s = wait_for(settings, what="server SETTINGS")
        assert s.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1, s

        def open_stream(path):
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
                                      (":path", path), (":authority", "localhost"),
                                      ("sec-websocket-version", "13")])
            c.flush()
            return sid

        def response(sid):
            while True:
                for ev in c.events():
                    if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                        return dict(ev.headers)
                    if isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                        raise AssertionError(f"stream reset {ev.error_code}")

        sid = open_stream("/echo")
        hdrs = response(sid)
        assert hdrs[b":status"] == b"200", hdrs
        assert b"sec-websocket-accept" not in hdrs and b"upgrade" not in hdrs, hdrs

        # 1 MiB each way in 16 KiB messages, with HTTP/2 flow control (our WINDOW_UPDATEs as we consume).
        total = 1 << 20
        payload = os.urandom(total)
        frames = [ws_frame(payload[i:i + 16384]) for i in range(0, total, 16384)]
        pending = b"".join(frames)
        got = bytearray()
        buf = b""
        ended = False
        deadline = time.time() + 60
        while len(got) < total and time.time() < deadline:
            while pending:
                room = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size)
                if room <= 0:
                    break
                c.conn.send_data(sid, pending[:room])
                pending = pending[room:]
            c.flush()
            for ev in c.events():
                if isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    c.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                    buf += ev.data
                    msgs, buf = ws_parse(buf)
                    for _, m in msgs:
                        got += m
                elif isinstance(ev, h2.events.StreamEnded):
                    ended = True
            c.flush()
        assert bytes(got) == payload
        assert not ended
        # The client's END_STREAM is a half-close toward the origin: `websockets` sees EOF and closes, which comes
        # back as the stream's END_STREAM.
        c.conn.end_stream(sid)
        c.flush()
        wait_for(lambda: any(isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid for ev in c.events()),
                 what="END_STREAM from the origin's close")

        # A route with websocket = false answers an extended CONNECT with 501 (it cannot become a plain GET).
        sid2 = open_stream("/nows/echo")
        assert response(sid2)[b":status"] == b"501"
    finally:
        c.sock.close()
    wait_for(lambda: metric(p, "edgeproxy_tunnels_active") == 0, what="tunnel gauge back to 0")
    assert metric(p, "edgeproxy_tunnels_total") == 1
    line = wait_for(lambda: [d for d in log_lines(p) if d.get("tunnel")], what="the HTTP/2 tunnel log line")[0]
    assert line["status"] == 200 and line["upstream_status"] == 101 and line["protocol"] == "HTTP/2", line
    assert line["bytes_in"] >= total and line["bytes_out"] >= total, line


class H2Streams:
    """python-h2 client events sorted by stream: what each stream got (headers, data, end, reset)."""

    def __init__(self, port):
        self.c = H2Client(port)
        self.streams = {}
        self.goaway = None

    def _stream(self, sid):
        return self.streams.setdefault(sid, {"headers": None, "data": b"", "ended": False, "reset": None})

    def pump(self):
        import h2.events
        for ev in self.c.events():
            sid = getattr(ev, "stream_id", None)
            if isinstance(ev, h2.events.ResponseReceived):
                self._stream(sid)["headers"] = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                self.c.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                self._stream(sid)["data"] += ev.data
            elif isinstance(ev, h2.events.StreamEnded):
                self._stream(sid)["ended"] = True
            elif isinstance(ev, h2.events.StreamReset):
                self._stream(sid)["reset"] = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev.error_code
        self.c.flush()

    def until(self, pred, what, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.streams} goaway={self.goaway}"
            self.pump()
        return True

    def open_tunnel(self, path):
        sid = self.c.conn.get_next_available_stream_id()
        self.c.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
                                       (":path", path), (":authority", "localhost"),
                                       ("sec-websocket-version", "13")])
        self.c.flush()
        self._stream(sid)
        return sid

    def get(self, path):
        sid = self.c.conn.get_next_available_stream_id()
        self.c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "https"), (":path", path),
                                       (":authority", "localhost")], end_stream=True)
        self.c.flush()
        self._stream(sid)
        return sid

    def send(self, sid, data):
        self.c.conn.send_data(sid, data)
        self.c.flush()

    def closed(self, sid):
        s = self.streams[sid]
        return s["ended"] or s["reset"] is not None


def test_h2_tunnel_to_a_hung_origin_ends_alone(proxies, tmp_path, ws_origin, plain_origin):
    """The origin freezes (SIGSTOP) in the middle of an RFC 8441 tunnel: it neither reads nor answers, its kernel
    still holds the connection. Requests on other streams of the same HTTP/2 connection are answered while the
    tunnel hangs; after `tunnel_idle` the tunnel's stream ends by itself and its origin connection is closed; the
    client's connection stays open for new streams, and the tunnel is logged and no longer counted as active."""
    p = start_proxy(proxies, tmp_path, ws_origin, tunnel_idle="1s", plain=plain_origin)
    c = H2Streams(p.port)
    frozen = False
    try:
        tunnel = c.open_tunnel("/echo")
        c.until(lambda: c.streams[tunnel]["headers"] is not None, "the tunnel's response")
        assert c.streams[tunnel]["headers"][b":status"] == b"200", c.streams[tunnel]
        c.send(tunnel, ws_frame(b"before the freeze"))
        c.until(lambda: ws_parse(c.streams[tunnel]["data"])[0], "the echo before the freeze")
        assert ws_parse(c.streams[tunnel]["data"])[0] == [(2, b"before the freeze")]
        origin_conns = len(tcp_peers_of(p.p.pid, ws_origin.port))
        assert origin_conns == 1, origin_conns

        os.kill(ws_origin.p.pid, signal.SIGSTOP)
        frozen = True
        t0 = time.monotonic()
        c.send(tunnel, ws_frame(b"into the void"))
        # The hung tunnel does not hold up its neighbours.
        for i in range(3):
            sid = c.get(f"/plain/{i}")
            c.until(lambda: c.streams[sid]["ended"], f"GET /plain/{i} during the hang", timeout=5)
            assert c.streams[sid]["headers"][b":status"] == b"200", c.streams[sid]
            assert not c.closed(tunnel)
        c.until(lambda: c.closed(tunnel), "the hung tunnel to end", timeout=10)
        waited = time.monotonic() - t0
        assert 0.9 <= waited < 5, waited
        # RST_STREAM(CANCEL): an END_STREAM would tell the client that the origin finished sending.
        assert c.streams[tunnel]["reset"] == 8 and not c.streams[tunnel]["ended"], c.streams[tunnel]
        assert c.goaway is None, c.goaway
        # The proxy closed its side of the origin connection (the frozen origin's kernel still holds its own).
        wait_for(lambda: not tcp_peers_of(p.p.pid, ws_origin.port), what="the origin connection closed by the proxy")
        # The client's connection still serves.
        sid = c.get("/plain/after")
        c.until(lambda: c.streams[sid]["ended"], "GET /plain/after on the same connection", timeout=5)
        assert c.streams[sid]["headers"][b":status"] == b"200"
    finally:
        if frozen:
            os.kill(ws_origin.p.pid, signal.SIGCONT)
        c.c.sock.close()
    wait_for(lambda: metric(p, "edgeproxy_tunnels_active") == 0, what="tunnel gauge back to 0")
    line = wait_for(lambda: [d for d in log_lines(p) if d.get("tunnel")], what="the tunnel's log line")[0]
    assert line["status"] == 200 and line["upstream_status"] == 101 and line["protocol"] == "HTTP/2", line
    # As on HTTP/1, an idle end is a tunnel's normal end: not truncated, and the reset is ours, not the client's.
    assert "truncated" not in line, line
    assert metric(p, "edgeproxy_h2_client_resets_total") == 0
    print(f"hung tunnel ended after {waited:.2f} s: {c.streams[tunnel]}; log {line}")


def tcp_peers_of(pid, port):
    """The proxy's established TCP connections to 127.0.0.1:`port` (from /proc/net/tcp and its fds)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            t = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    out = []
    with open("/proc/net/tcp") as f:
        for row in f.read().splitlines()[1:]:
            cols = row.split()
            remote, state, inode = cols[2], cols[3], cols[9]
            if inode in inodes and state == "01" and int(remote.split(":")[1], 16) == port:
                out.append(remote)
    return out


def test_h2_tunnels_keep_working_through_fd_exhaustion(proxies, tmp_path, ws_origin, plain_origin):
    """Four RFC 8441 tunnels are open on one HTTP/2 connection when the proxy runs out of descriptors (its limit
    lowered with prlimit, the rest taken by silent TCP connections). The open tunnels keep echoing; a new tunnel,
    which needs an origin socket, gets 503 on its stream at once (not a hang, not a torn-down connection), and the
    origin is not blamed for the proxy's shortage (its passive health untouched: before, each such attempt counted
    as a failed connect toward `max_fails`); once descriptors come back, a new tunnel works and nothing has leaked."""
    import resource
    p = start_proxy(proxies, tmp_path, ws_origin, plain=plain_origin)
    c = H2Streams(p.port)
    idle = []
    try:
        tunnels = [c.open_tunnel("/echo") for _ in range(4)]
        c.until(lambda: all(c.streams[t]["headers"] for t in tunnels), "four tunnels open")
        assert all(c.streams[t]["headers"][b":status"] == b"200" for t in tunnels)

        def echo_round(tag):
            for t in tunnels:
                c.streams[t]["data"] = b""
                c.send(t, ws_frame(f"{tag} {t}".encode()))
            for t in tunnels:
                c.until(lambda: ws_parse(c.streams[t]["data"])[0], f"echo on tunnel {t} ({tag})")
                assert ws_parse(c.streams[t]["data"])[0] == [(2, f"{tag} {t}".encode())]

        echo_round("before")
        base_fds = fd_count(p.p.pid)
        soft, hard = resource.prlimit(p.p.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(p.p.pid, resource.RLIMIT_NOFILE, (base_fds + 8, hard))  # the soft limit: raised again below
        for _ in range(40):  # more than the room left: the rest wait in the backlog
            s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
            idle.append(s)
        wait_for(lambda: fd_count(p.p.pid) >= base_fds + 7, what="the proxy to run out of descriptors")

        echo_round("exhausted")
        refused = c.open_tunnel("/echo")
        c.until(lambda: c.closed(refused) or c.streams[refused]["headers"], "an answer to the tunnel with no fd",
                timeout=10)
        st = c.streams[refused]
        assert st["headers"] is not None and st["headers"][b":status"] == b"503", st
        assert c.goaway is None, c.goaway
        echo_round("after the refusal")
    finally:
        close_all_sockets(idle)
    try:
        resource.prlimit(p.p.pid, resource.RLIMIT_NOFILE, (soft, hard))
        # The shortage was the proxy's: the origin's passive health was not charged for it.
        with urllib.request.urlopen(f"{p.admin}/upstreams", timeout=10) as r:
            pools = {pool["name"]: pool for pool in json.loads(r.read())["pools"]}
        for a in (a for srv in pools["ws"]["servers"] for a in srv["addresses"]):
            assert a["state"] == "up" and a["consecutive_failures"] == 0, pools["ws"]
        with urllib.request.urlopen(f"{p.admin}/metrics", timeout=10) as r:
            text = r.read().decode()
        local = re.findall(r'^edgeproxy_upstream_errors_total\{[^}]*kind="local_resources"[^}]*\} (\S+)$', text, re.M)
        assert sum(float(v) for v in local) >= 1, local
        again = c.open_tunnel("/echo")
        c.until(lambda: c.streams[again]["headers"], "a new tunnel once descriptors are back")
        assert c.streams[again]["headers"][b":status"] == b"200", c.streams[again]
        tunnels.append(again)
        echo_round("recovered")
        print(f"tunnel with no fd answered {st['headers'][b':status'].decode()}; "
              f"accept paused {metric(p, 'edgeproxy_accept_exhausted_total'):.0f} times")
        # The descriptors did run out (accept4 hit EMFILE), so the answers above were given without any to spare.
        assert metric(p, "edgeproxy_accept_exhausted_total") >= 1
    finally:
        c.c.sock.close()
    wait_for(lambda: metric(p, "edgeproxy_tunnels_active") == 0, what="tunnel gauge back to 0")
    # Listeners, the admin connection the metric read used, and nothing of the tunnels or the silent clients.
    wait_for(lambda: fd_count(p.p.pid) <= base_fds - 4, what="the tunnels' descriptors released")


def close_all_sockets(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass
