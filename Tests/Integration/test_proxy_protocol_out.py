"""PROXY protocol out (issue 12 §3): a pool with `proxy_protocol = "v1" | "v2"` writes the header first on every
origin connection, so an origin behind EdgeProxy (real nginx with `listen ... proxy_protocol`, real HAProxy with
`accept-proxy`) sees the client's address. Connections carrying one client's identity are reused only for that
client connection, and closed with it; health checks send a header naming nobody (v1 UNKNOWN, v2 LOCAL)."""
import json
import os
import shutil
import socket
import urllib.request

import pytest

from conftest import HTTPReader, Process, curl, dead_port, wait_for, write_file
from tls_wire import nginx_binary, nginx_conf

needs_nginx = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (scripts/install-deps)")
needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class NginxPP:
    """nginx as a plain-HTTP origin that requires the PROXY protocol; its body names what the header said."""

    def __init__(self, tmp_path):
        self.dir = str(tmp_path / "nginx")
        os.makedirs(self.dir, exist_ok=True)
        self.port = dead_port()
        body = ('{"addr":"$proxy_protocol_addr","port":"$proxy_protocol_port",'
                '"server_addr":"$proxy_protocol_server_addr","server_port":"$proxy_protocol_server_port",'
                '"connection":"$connection","remote":"$remote_addr"}')
        conf = write_file(self.dir, "nginx.conf", nginx_conf(self.dir, f"""
    server {{
        listen 127.0.0.1:{self.port} proxy_protocol;
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
        # Refuses upgrades (a 2xx without switching would be the proxy's 502): the same JSON, as a 403.
        location /ws {{
            default_type application/json;
            return 403 '{body}';
        }}
    }}""", worker_connections=256, http_extra="""    keepalive_requests 1000;
    keepalive_timeout 60s;"""))
        self.proc = Process([nginx_binary(), "-c", conf, "-e", f"{self.dir}/error.log"], name="nginx")
        wait_for(lambda: accepts(self.port) or not self.proc.alive(), what="nginx to listen")
        assert self.proc.alive(), self.proc.output()

    def access_log(self):
        try:
            with open(f"{self.dir}/access.log") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def error_log(self):
        with open(f"{self.dir}/error.log") as f:
            return f.read()

    def stop(self):
        self.proc.stop()


@pytest.fixture
def nginx_pp(tmp_path):
    n = NginxPP(tmp_path)
    yield n
    n.stop()


def start(proxies, tmp_path, origin_port, version, extra="", top=""):
    cfg = write_file(tmp_path, f"pp-{version}.toml", f"""{top}
[upstreams.default]
servers = ["http://127.0.0.1:{origin_port}"]
proxy_protocol = "{version}"
{extra}
""")
    return proxies(["--config", cfg, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--workers", "1"])


def get(sock, path="/"):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n".encode())
    status, _, body = HTTPReader(sock).response()
    assert status == 200, (status, body)
    return json.loads(body)


def client(port, source):
    """A TLS connection to the proxy from loopback address `source`."""
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return ctx.wrap_socket(raw, server_hostname="a.test")


@needs_nginx
@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("http", ["--http1.1", "--http2"])
def test_nginx_behind_sees_the_client(proxies, tmp_path, nginx_pp, version, http):
    p = start(proxies, tmp_path, nginx_pp.port, version)
    r = curl(http, "--interface", "127.0.0.6", f"{p.base}/who")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["addr"] == "127.0.0.6", doc
    assert doc["server_addr"] == "127.0.0.1" and doc["server_port"] == str(p.port), doc
    assert doc["remote"] == "127.0.0.1", doc  # the TCP peer is the proxy; the header carries the client


@needs_nginx
def test_without_the_header_nginx_refuses(proxies, tmp_path, nginx_pp):
    """The control: the same origin without `proxy_protocol` on the pool fails (nginx: "broken header")."""
    cfg = write_file(tmp_path, "plain.toml", f'upstreams = ["http://127.0.0.1:{nginx_pp.port}"]\n')
    p = proxies(["--config", cfg, "--listen", "127.0.0.1:0", "--workers", "1"])
    r = curl("-o", "/dev/null", "-w", "%{http_code}", f"{p.base}/")
    assert r.stdout == "502", (r.stdout, r.stderr)
    assert "broken header" in nginx_pp.error_log()


@needs_nginx
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_connections_are_private_to_one_client(proxies, tmp_path, nginx_pp, version):
    """Keep-alive still works per client (same nginx connection for one client's requests), but a request is never
    sent on a connection that names another client — even when that connection is idle and the other's is not."""
    p = start(proxies, tmp_path, nginx_pp.port, version)
    a = client(p.port, "127.0.0.8")
    b = client(p.port, "127.0.0.9")
    try:
        seen = {"a": [], "b": []}
        for _ in range(5):
            for name, sock, addr in (("a", a, "127.0.0.8"), ("b", b, "127.0.0.9")):
                doc = get(sock)
                assert doc["addr"] == addr, (name, doc)
                seen[name].append(doc["connection"])
        assert len(set(seen["a"])) == 1, seen  # reused for the same client
        assert len(set(seen["b"])) == 1, seen
        assert set(seen["a"]).isdisjoint(seen["b"]), seen
    finally:
        a.close()
        b.close()


@needs_nginx
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_http2_extended_connect_carries_the_client(proxies, tmp_path, nginx_pp, version):
    """An RFC 8441 extended CONNECT (WebSocket over HTTP/2) opens its origin connection like any HTTP/2 request: the
    header names the client. (It used to name nobody: the tunnel's forwarder never learnt its client.) nginx here
    refuses the upgrade with a 403 and its JSON body, which the stream relays as a normal response."""
    import ssl

    import h2.config
    import h2.connection
    import h2.events
    p = start(proxies, tmp_path, nginx_pp.port, version)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", p.port), timeout=10, source_address=("127.0.0.11", 0))
    sock = ctx.wrap_socket(raw, server_hostname="a.test")
    try:
        assert sock.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
                                (":path", "/ws"), (":authority", "a.test"), ("sec-websocket-version", "13")])
        sock.sendall(conn.data_to_send())
        status, body, ended = None, b"", False
        while not ended:
            data = sock.recv(65536)
            assert data, "the proxy closed the connection"
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    status = dict(ev.headers)[b":status"]
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                    body += ev.data
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    ended = True
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    if status == b"403" and ev.error_code == 0:
                        ended = True  # RFC 9113 §8.1: the response is complete, the request half was still open
                    else:
                        raise AssertionError(f"stream reset {ev.error_code} after status {status}, body {body!r}")
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
        assert status == b"403", (status, body)
        doc = json.loads(body)
        assert doc["addr"] == "127.0.0.11", doc
        assert doc["server_port"] == str(p.port), doc
    finally:
        sock.close()


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


@needs_nginx
def test_private_connections_close_with_their_client(proxies, tmp_path, nginx_pp):
    p = start(proxies, tmp_path, nginx_pp.port, "v1")
    warm = client(p.port, "127.0.0.10")  # the proxy's buffers and TLS state exist before the baseline
    get(warm)
    warm.close()
    base = None

    def settled():
        nonlocal base
        n = fd_count(p.p.pid)
        ok = base == n
        base = n
        return ok
    wait_for(settled, what="fd count to settle", interval=0.3)
    socks = [client(p.port, f"127.0.1.{i}") for i in range(1, 21)]
    for s in socks:
        get(s)
    # 20 client sockets + 20 private origin connections.
    assert fd_count(p.p.pid) >= base + 40
    for s in socks:
        s.close()
    wait_for(lambda: fd_count(p.p.pid) <= base, what="client and origin fds to be closed")


@needs_nginx
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_health_checks_send_a_header(proxies, tmp_path, nginx_pp, version):
    p = start(proxies, tmp_path, nginx_pp.port, version, extra="""
[upstreams.default.health_check]
interval = "100ms"
timeout = "100ms"
rise = 1
fall = 1
""")
    # Every check must pass: wait for 5 in nginx's access log (with their PROXY header, or nginx would have
    # refused them), then no failure may have been counted.
    wait_for(lambda: nginx_pp.access_log().count("edgeproxy-health-check") >= 5, what="5 health checks")
    with urllib.request.urlopen(f"{p.admin}/metrics", timeout=5) as r:
        text = r.read().decode()
    fails = [l for l in text.splitlines() if l.startswith("edgeproxy_upstream_health_check_failures_total{")]
    assert fails and all(l.endswith(" 0") for l in fails), fails
    assert "broken header" not in nginx_pp.error_log()
    r = curl("--interface", "127.0.0.11", f"{p.base}/")
    assert json.loads(r.stdout)["addr"] == "127.0.0.11"


@needs_haproxy
@needs_nginx
def test_client_address_end_to_end_through_both_sides(proxies, tmp_path, nginx_pp):
    """HAProxy (mode tcp, send-proxy-v2) → EdgeProxy (listen_proxy_protocol) → nginx (listen proxy_protocol): the
    address nginx sees is the client's, two hops away."""
    p = start(proxies, tmp_path, nginx_pp.port, "v2",
              top='listen_proxy_protocol = true\nproxy_protocol_from = ["127.0.0.1/32"]\n')
    port = dead_port()
    cfg = write_file(tmp_path, "haproxy.cfg", f"""
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend lb
    bind 127.0.0.1:{port}
    default_backend edge
backend edge
    server ep 127.0.0.1:{p.port} send-proxy-v2
""")
    lb = Process(["haproxy", "-db", "-f", cfg], name="haproxy")
    try:
        wait_for(lambda: accepts(port), what="haproxy to listen")
        r = curl("--interface", "127.0.0.12", f"https://127.0.0.1:{port}/")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["addr"] == "127.0.0.12", r.stdout
    finally:
        lb.stop()


@needs_haproxy
@pytest.mark.parametrize("tlvs", [None, '["authority"]'])
def test_haproxy_reads_the_v2_tlvs(proxies, tmp_path, tlvs):
    """A second implementation reads what v2 carries: HAProxy (accept-proxy) as the origin answers with the
    client address and the AUTHORITY TLV (the client's SNI) it decoded: present only when proxy_protocol_tlvs
    asks for it (none by default, like HAProxy's own send-proxy-v2)."""
    port = dead_port()
    cfg = write_file(tmp_path, "haproxy-origin.cfg", f"""
global
    maxconn 100
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend origin
    bind 127.0.0.1:{port} accept-proxy
    http-request return status 200 content-type text/plain lf-string "%[src] [%[fc_pp_authority]]"
""")
    origin = Process(["haproxy", "-db", "-f", cfg], name="haproxy-origin")
    try:
        wait_for(lambda: accepts(port), what="haproxy to listen")
        p = start(proxies, tmp_path, port, "v2", extra=f"proxy_protocol_tlvs = {tlvs}" if tlvs else "")
        r = curl("--interface", "127.0.0.13", "--resolve", f"a.test:{p.port}:127.0.0.1",
                 f"https://a.test:{p.port}/")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == ("127.0.0.13 [a.test]" if tlvs else "127.0.0.13 []"), r.stdout
    finally:
        origin.stop()
