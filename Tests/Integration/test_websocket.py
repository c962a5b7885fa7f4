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


def start_proxy(proxies, tmp_path, origin, tunnel_idle="60s", workers=1):
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

[[routes]]
upstream = "ws"
""")
    return proxies(["--config", cfg, "--listen", "127.0.0.1:0"])


@pytest.fixture
def ws_origin():
    o = Origin("ws_origin.py", name="ws-origin")
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
