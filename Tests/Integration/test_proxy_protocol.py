"""PROXY protocol in (issue 12 §3): an L4 load balancer in front of EdgeProxy names the client with a v1 or v2
header before the TLS ClientHello. Real HAProxy (`mode tcp`, `send-proxy` / `send-proxy-v2`) in front, a real curl
client bound to its own loopback address (127.0.0.5): the origin must see that address in X-Forwarded-For and
Forwarded, not HAProxy's. Peers outside `proxy_protocol_from` and malformed headers are refused and counted."""
import json
import shutil
import socket
import ssl
import struct
import subprocess
import time
import urllib.request

import pytest

from conftest import Process, curl, dead_port, wait_for, write_file


def start(proxies, tmp_path, origin, allowed='["127.0.0.1/32"]', name="p.toml"):
    cfg = write_file(tmp_path, name, f'upstreams = ["{origin.url}"]\nlisten_proxy_protocol = true\n'
                                     f'proxy_protocol_from = {allowed}\n')
    return proxies(["--config", cfg, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--workers", "1"])


def metrics(p):
    with urllib.request.urlopen(f"{p.admin}/metrics", timeout=5) as r:
        return r.read().decode()


def metric(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def forwarded_headers(body):
    doc = json.loads(body)
    return {k.lower(): v for k, v in doc["headers"]}


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed (scripts/install-deps)")
@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_client_address_through_haproxy(proxies, origin, tmp_path, send):
    p = start(proxies, tmp_path, origin)
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
    server ep 127.0.0.1:{p.port} {send}
""")
    lb = Process(["haproxy", "-db", "-f", cfg], name="haproxy")
    try:
        wait_for(lambda: accepts(port), what="haproxy to listen")
        r = curl("--interface", "127.0.0.5", f"https://127.0.0.1:{port}/echo")
        assert r.returncode == 0, r.stderr
        h = forwarded_headers(r.stdout)
        assert h["x-forwarded-for"] == "127.0.0.5", h
        assert "for=127.0.0.5" in h["forwarded"], h
        version = "2" if send.endswith("v2") else "1"
        assert metric(metrics(p), "edgeproxy_proxy_protocol_headers_total", version=version) >= 1
    finally:
        lb.stop()


def v2_header(src_ip6, src_port):
    addrs = socket.inet_pton(socket.AF_INET6, src_ip6) + socket.inet_pton(socket.AF_INET6, "::1")
    body = addrs + struct.pack("!HH", src_port, 443)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x21]) + struct.pack("!H", len(body)) + body


def https_get_after(port, prefix, path="/echo"):
    """Sends `prefix` raw, then TLS and one GET on the same connection; returns the response body."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(prefix)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1]


def test_v2_ipv6_client_and_v1_split_across_packets(proxies, origin, tmp_path):
    p = start(proxies, tmp_path, origin)
    h = forwarded_headers(https_get_after(p.port, v2_header("2001:db8::7", 40000)))
    assert h["x-forwarded-for"] == "2001:db8::7"
    assert 'for="[2001:db8::7]"' in h["forwarded"]
    # v1 arriving in two pieces before the ClientHello (the listener waits for the CRLF).
    raw = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw.sendall(b"PROXY TCP4 198.51.100.9 127.0")
    time.sleep(0.2)  # not synchronisation: makes the proxy see the first piece alone (what is being tested)
    raw.sendall(b".0.1 5555 443\r\n")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert forwarded_headers(data.split(b"\r\n\r\n", 1)[1])["x-forwarded-for"] == "198.51.100.9"
    # A v2 LOCAL header (a load balancer's own health check) keeps the socket's address.
    local = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
    assert forwarded_headers(https_get_after(p.port, local))["x-forwarded-for"] == "127.0.0.1"


def closed_without_answer(port, payload, source="127.0.0.1"):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    try:
        if payload:
            s.sendall(payload)
        return s.recv(100) == b""
    except ConnectionResetError:
        return True
    finally:
        s.close()


def test_untrusted_sources_and_bad_headers_are_refused(proxies, origin, tmp_path):
    p = start(proxies, tmp_path, origin, allowed='["127.0.0.1/32", "10.0.0.0/8"]')
    # A peer outside proxy_protocol_from could claim any address: refused before reading anything.
    assert closed_without_answer(p.port, b"PROXY TCP4 1.2.3.4 127.0.0.1 1 443\r\n", source="127.0.0.9")
    bad = [
        b"PROXY TCP4 1.2.3.400 127.0.0.1 1 443\r\n",  # bad address
        b"PROXY TCP4 1.2.3.4 127.0.0.1 1 443\n",  # LF without CR
        b"PROXY TCP4 " + b"1" * 200,  # no CRLF within 107 bytes
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x04\x01" + b"\x00" * 1025,  # v2 over the 1,040-byte bound
        b"\x16\x03\x01\x00\x05hello",  # a ClientHello without the header
    ]
    for payload in bad:
        assert closed_without_answer(p.port, payload), payload
    text = metrics(p)
    assert metric(text, "edgeproxy_proxy_protocol_rejected_total", reason="source") == 1
    assert metric(text, "edgeproxy_proxy_protocol_rejected_total", reason="malformed") == len(bad)
    # Still serving.
    h = forwarded_headers(https_get_after(p.port, b"PROXY TCP4 10.9.8.7 127.0.0.1 1 443\r\n"))
    assert h["x-forwarded-for"] == "10.9.8.7"


def test_config_requires_the_trusted_networks(tmp_path):
    from conftest import edgeproxy_bin

    cfg = write_file(tmp_path, "bad.toml", "listen_proxy_protocol = true\n")
    r = subprocess.run([edgeproxy_bin(), "check", "--config", cfg], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "proxy_protocol_from" in r.stdout + r.stderr
    cfg = write_file(tmp_path, "bad2.toml", 'listen_proxy_protocol = true\nproxy_protocol_from = ["10.0.0.0/33"]\n')
    r = subprocess.run([edgeproxy_bin(), "check", "--config", cfg], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "bad2.toml:2:" in r.stdout + r.stderr and "10.0.0.0/33" in r.stdout + r.stderr
