"""Built-in page, plain proxying over TLS 1.2/1.3, SNI/certificate selection, openssl s_client, wrk, admin, check."""
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess

import pytest

from conftest import ROOT, curl, edgeproxy_bin, write_file


def require(tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


# --- 1. built-in page -------------------------------------------------------------------------------------------

def test_builtin_page_html_and_json(proxies):
    p = proxies(["--listen", "127.0.0.1:0"])
    r = curl("-D", "-", p.base + "/")
    assert r.returncode == 0, r.stderr
    assert re.search(r"(?im)^content-type:\s*text/html", r.stdout), r.stdout[:500]
    assert "<h1>EdgeProxy</h1>" in r.stdout
    assert "TLS version" in r.stdout

    r = curl("--tlsv1.3", "-H", "Accept: application/json", "--resolve", f"a.test:{p.port}:127.0.0.1",
             f"https://a.test:{p.port}/some/path?q=1")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    for k in ("tls_version", "cipher", "alpn", "sni", "resumed", "ticket_outcome", "ja3_hash", "ja4", "client",
              "method", "path"):
        assert k in doc, (k, doc)
    assert doc["tls_version"] in ("TLSv1.3", "1.3", "TLS 1.3"), doc
    assert doc["cipher"].startswith("TLS_"), doc
    assert doc["alpn"] == "h2", doc  # the default ALPN list prefers h2, and curl offers it
    assert doc["sni"] == "a.test", doc
    assert doc["resumed"] is False, doc
    assert doc["method"] == "GET" and doc["path"] == "/some/path?q=1", doc
    assert doc["client"].startswith("127.0.0.1"), doc

    r = curl("--tlsv1.2", "--tls-max", "1.2", "-H", "Accept: application/json", p.base + "/")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert "1.2" in doc["tls_version"], doc
    assert doc["cipher"].startswith("ECDHE-"), doc
    assert doc["sni"] is None, doc  # an IP literal carries no SNI


def test_no_arguments_listens_on_8443(proxies):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 8443))
    except OSError as e:
        pytest.fail(f"port 127.0.0.1:8443 is busy ({e}); this test needs it free to run edgeproxy with no arguments")
    finally:
        s.close()
    p = proxies([])
    assert p.port == 8443
    assert "self-signed" in p.output()
    r = curl("-H", "Accept: application/json", "https://127.0.0.1:8443/")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["tls_version"].endswith("1.3")
    r = curl("https://127.0.0.1:8443/")
    assert r.returncode == 0 and "<h1>EdgeProxy</h1>" in r.stdout


# --- 2. proxying over TLS 1.2 and 1.3 ------------------------------------------------------------------------------

@pytest.mark.parametrize("tls_flags,version", [(["--tlsv1.2", "--tls-max", "1.2"], "TLSv1.2"), (["--tlsv1.3"], "TLSv1.3")])
def test_proxy_forwarding_headers(proxies, origin, tls_flags, version):
    p = proxies(["--listen", "127.0.0.1:0", "--upstream", origin.url])
    # Body through the proxy, with the negotiated version confirmed by curl itself.
    r = subprocess.run(["curl", "-sS", "-v", "-k", *tls_flags, p.base + "/bytes/300000"], capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert f"SSL connection using {version}".encode() in r.stderr
    assert len(r.stdout) == 300000 and r.stdout == (bytes(range(256)) * 1200)[:300000]

    # Hop-by-hop removal and forwarding headers (upload a body too). HTTP/1.1: Connection-nominated fields exist
    # only there (curl drops Connection over h2, which test_http2.py covers).
    body = os.urandom(5000)
    r = subprocess.run(
        ["curl", "-sS", "-k", "--http1.1", *tls_flags, "--data-binary", "@-",
         "--resolve", f"a.test:{p.port}:127.0.0.1", f"https://a.test:{p.port}/echo?x=1",
         "-H", "Connection: keep-alive, X-Hop",
         "-H", "X-Hop: secret",
         "-H", "Keep-Alive: timeout=5",
         "-H", "TE: trailers",
         "-H", "Upgrade: websocket",
         "-H", "Proxy-Connection: keep-alive",
         "-H", "X-Keep: yes",
         "-H", "X-Forwarded-For: 203.0.113.9"],
        input=body, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["method"] == "POST" and doc["path"] == "/echo?x=1"
    assert doc["body_length"] == len(body)
    assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()
    hdrs = [(k.lower(), v) for k, v in doc["headers"]]
    names = [k for k, _ in hdrs]
    h = dict(hdrs)
    assert h["host"] == f"a.test:{p.port}"
    assert names.count("host") == 1
    assert h["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert h["x-forwarded-proto"] == "https"
    assert h["forwarded"] == f'for=127.0.0.1;proto=https;host="a.test:{p.port}"'
    assert "edgeproxy" in h["via"] and h["via"].startswith("1.1 ")
    assert h["x-keep"] == "yes"
    # Upgrade is hop-by-hop: without `Connection: upgrade` naming it, it is not meant for the origin (stripped).
    for gone in ("x-hop", "keep-alive", "te", "upgrade", "proxy-connection"):
        assert gone not in names, (gone, hdrs)
    for k, v in hdrs:
        if k == "connection":
            assert "x-hop" not in v.lower(), hdrs

    # With `Connection: upgrade`, on a route that allows upgrades (the default; test_websocket.py covers
    # `websocket = false`, where it is stripped as above), the proxy sends its own Connection/Upgrade pair. This
    # origin does not switch: its 200 is forwarded as a normal response.
    r = subprocess.run(
        ["curl", "-sS", "-k", "--http1.1", *tls_flags, "--resolve", f"a.test:{p.port}:127.0.0.1",
         f"https://a.test:{p.port}/echo", "-H", "Connection: keep-alive, Upgrade", "-H", "Upgrade: websocket",
         "-w", "\n%{http_code}"],
        capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out, code = r.stdout.rsplit(b"\n", 1)
    assert code == b"200"
    h = {k.lower(): v for k, v in json.loads(out)["headers"]}
    assert h["upgrade"] == "websocket" and h["connection"].lower() == "upgrade", h


def test_keep_alive_chunked_and_bodiless_responses(proxies, origin):
    """One client connection, several exchanges: chunked body, 204/304 without framing, HEAD, then a normal one."""
    from conftest import HTTPReader, tls_connect
    p = proxies(["--listen", "127.0.0.1:0", "--upstream", origin.url])
    s = tls_connect(p.port)
    try:
        rd = HTTPReader(s)

        def ask(method, path):
            s.sendall(f"{method} {path} HTTP/1.1\r\nHost: ka.test\r\n\r\n".encode())
            return rd.response(head_request=(method == "HEAD"))

        st, h, body = ask("GET", "/chunked/200000")
        assert st == 200 and body == (bytes(range(256)) * 800)[:200000]
        assert dict(h).get("transfer-encoding", "").lower() == "chunked", h
        assert ask("GET", "/status/204")[0] == 204
        assert ask("GET", "/status/304")[0] == 304
        st, h, body = ask("HEAD", "/bytes/5000")
        assert st == 200 and dict(h).get("content-length") == "5000" and body == b""
        st, _, body = ask("GET", "/bytes/70000")
        assert st == 200 and body == (bytes(range(256)) * 274)[:70000]
        assert origin.output().count("REQ ") == 5
    finally:
        s.close()


# --- 3. SNI and key types ----------------------------------------------------------------------------------------

def s_client_cert(port, *args):
    """Runs openssl s_client and returns (subject line, public key algorithm, full output)."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                       input=b"", capture_output=True, timeout=20)
    out = r.stdout.decode("latin-1")
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
    assert m, f"no certificate from s_client (rc {r.returncode}):\n{out}\n{r.stderr.decode('latin-1')}"
    x = subprocess.run(["openssl", "x509", "-noout", "-subject", "-text"], input=m.group(0).encode(),
                       capture_output=True, timeout=10).stdout.decode()
    subject = re.search(r"subject=(.*)", x).group(1)
    alg = re.search(r"Public Key Algorithm: (\S+)", x).group(1)
    return subject, alg, out


def test_sni_and_key_type_selection(proxies, certs):
    args = ["--listen", "127.0.0.1:0"]
    for name in ("a-ec", "a-rsa", "b-ec"):
        args += ["--cert", certs[name][0], "--key", certs[name][1]]
    p = proxies(args)

    subj, alg, _ = s_client_cert(p.port, "-servername", "a.test")
    assert "CN = a.test" in subj or "CN=a.test" in subj
    subj, alg, _ = s_client_cert(p.port, "-servername", "b.test")
    assert "b.test" in subj and alg == "id-ecPublicKey"

    subj, alg, out = s_client_cert(p.port, "-servername", "a.test", "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
    assert "a.test" in subj and alg == "rsaEncryption", out
    assert "ECDHE-RSA-AES128-GCM-SHA256" in out
    subj, alg, out = s_client_cert(p.port, "-servername", "a.test", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert "a.test" in subj and alg == "id-ecPublicKey", out
    assert "ECDHE-ECDSA-AES128-GCM-SHA256" in out


# --- 5. openssl s_client request -----------------------------------------------------------------------------------

def test_s_client_request(proxies, origin):
    p = proxies(["--listen", "127.0.0.1:0", "--upstream", origin.url])
    req = b"GET /echo HTTP/1.1\r\nHost: s-client.test\r\nConnection: close\r\n\r\n"
    r = subprocess.run(["openssl", "s_client", "-quiet", "-connect", f"127.0.0.1:{p.port}", "-servername", "a.test"],
                       input=req, capture_output=True, timeout=20)
    out = r.stdout
    assert out.startswith(b"HTTP/1.1 200"), (out[:300], r.stderr[-500:])
    body = out.split(b"\r\n\r\n", 1)[1]
    doc = json.loads(body)
    assert dict((k.lower(), v) for k, v in doc["headers"])["host"] == "s-client.test"


# --- 6. wrk ----------------------------------------------------------------------------------------------------------

def test_wrk_100_connections(proxies, tmp_path):
    require("wrk")
    cfg = write_file(tmp_path, "wrk.toml", '[access_log]\npath = "off"\n')
    p = proxies(["--listen", "127.0.0.1:0", "--workers", "2", "--config", cfg])
    r = subprocess.run(["wrk", "-t2", "-c100", "-d2s", "--timeout", "5s", p.base + "/"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    m = re.search(r"(\d+) requests in", out)
    assert m and int(m.group(1)) > 100, out
    assert "Socket errors" not in out, out
    assert "Non-2xx" not in out, out
    assert p.alive()


def metric_sum(text, name, **labels):
    """Sum of every sample of `name` whose labels include `labels`; None if the metric is absent."""
    total, found = 0.0, False
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
            found = True
    return total if found else None


# --- 11. admin ---------------------------------------------------------------------------------------------------------

def test_admin_health_and_metrics(proxies, origin):
    p = proxies(["--listen", "127.0.0.1:0", "--upstream", origin.url, "--admin", "127.0.0.1:0"])
    assert p.admin_port and p.admin_port != p.port
    r = curl(p.admin + "/healthz")
    assert r.returncode == 0 and r.stdout == "ok\n", (r.stdout, r.stderr)
    for flags in (["--tlsv1.2", "--tls-max", "1.2"], ["--tlsv1.3"], ["--tlsv1.3"]):
        assert curl(*flags, p.base + "/").returncode == 0
    r = curl(p.admin + "/metrics")
    assert r.returncode == 0, r.stderr
    m = r.stdout
    accepted = metric_sum(m, "edgeproxy_connections_accepted_total")
    assert accepted is not None and accepted >= 3, m
    hs = [l for l in m.splitlines() if l.startswith("edgeproxy_tls_handshakes_total{")]
    assert hs and all('version="' in l and 'outcome="' in l for l in hs), hs
    assert metric_sum(m, "edgeproxy_tls_handshakes_total", version="TLSv1.2", outcome="full") == 1, hs
    assert metric_sum(m, "edgeproxy_tls_handshakes_total", version="TLSv1.3") == 2, hs
    assert metric_sum(m, "edgeproxy_http_requests_total", status_class="2xx") == 3, m
    assert re.search(r"(?m)^edgeproxy_loop_busy_seconds", m), m
    r = curl("-o", "/dev/null", "-w", "%{http_code}", p.admin + "/nope")
    assert r.stdout == "404"


def test_access_log_file(proxies, origin, tmp_path):
    cfg = write_file(tmp_path, "log.toml", f'upstreams = ["{origin.url}"]\n\n[access_log]\npath = "access.log"\n')
    p = proxies(["--config", cfg, "--listen", "127.0.0.1:0"])
    assert curl(p.base + "/ok").returncode == 0
    assert curl(p.base + "/status/404").returncode == 0
    log = tmp_path / "access.log"

    def lines():
        if not log.exists():
            return None
        ls = [json.loads(l) for l in log.read_text().splitlines() if l.strip()]
        return ls if len(ls) >= 2 else None
    from conftest import wait_for
    ls = wait_for(lines, timeout=10, what="two access log lines in the file")
    assert [(l["method"], l["path"], l["status"]) for l in ls] == [("GET", "/ok", 200), ("GET", "/status/404", 404)]
    assert all(l["upstream"] == origin.url for l in ls), ls
    assert '"path":"/ok"' not in p.output(), "access log lines also went to stdout"


# --- 12. check ---------------------------------------------------------------------------------------------------------

def test_check_command(tmp_path):
    write_file(tmp_path, "bad.toml", 'listen = "127.0.0.1:0"\n\n[timeouts]\nidel = "5s"\n')
    r = subprocess.run([edgeproxy_bin(), "check", "--config", "bad.toml"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert re.search(r"bad\.toml:4:\d+:", r.stderr), r.stderr
    assert "idel" in r.stderr

    write_file(tmp_path, "good.toml", 'listen = "127.0.0.1:0"\nupstreams = ["http://127.0.0.1:9"]\n\n'
                                      '[timeouts]\nidle = "5s"\n')
    r = subprocess.run([edgeproxy_bin(), "check", "--config", "good.toml"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, (r.stdout, r.stderr)

    # The shipped reference configuration is itself valid.
    r = subprocess.run([edgeproxy_bin(), "check", "--config", os.path.join(ROOT, "edgeproxy.example.toml")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, (r.stdout, r.stderr)


# --- TLS versions: TLS 1.0 can be enabled for legacy clients; it is off by default -----------------------------------

def _s_client_version(port, *args):
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", *args],
                       input=b"", capture_output=True, timeout=20)
    out = r.stdout.decode("latin-1") + r.stderr.decode("latin-1")
    # "New, TLSv1.3, Cipher is ..." is printed right after the handshake (the SSL-Session block with "Protocol :"
    # may be missing in TLS 1.3 when s_client exits before the ticket arrives).
    m = re.search(r"^New, (TLSv1(?:\.\d)?), Cipher is (?!\(NONE\))", out, re.M)
    return (m.group(1) if m else None), out


def test_tls10_off_by_default_and_enableable(proxies, tmp_path):
    legacy = ["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"]
    p = proxies(["--listen", "127.0.0.1:0"])
    version, out = _s_client_version(p.port, *legacy)
    assert version is None, f"TLS 1.0 must be refused by default:\n{out[-800:]}"

    cfg = write_file(tmp_path, "legacy.toml", '[tls]\nmin_version = "1.0"\n'
                     'ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA"\n')
    p = proxies(["--listen", "127.0.0.1:0", "--config", cfg])
    version, out = _s_client_version(p.port, *legacy)
    assert version in ("TLSv1", "TLSv1.0"), out[-800:]
    version, out = _s_client_version(p.port, "-tls1_3")
    assert version == "TLSv1.3", out[-800:]
