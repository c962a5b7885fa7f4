"""TLS to origins (issue 12 §1): `https://` servers in a pool, with nginx 1.22 as the TLS origin and a CA made in the
test (python `cryptography`, as ocsp_ca.py uses). Verification on by default (CA file, host name, dates), mutual TLS
to an origin that requires a client certificate, resumption to the origin counted in
`edgeproxy_upstream_tls_handshakes_total{resumed=...}` under keep-alive churn, and `verify = false` against a
self-signed origin (logged at warning level). Real processes on loopback only."""
import datetime
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import curl, write_file
from tls_wire import NginxProcess, free_port, nginx_binary, nginx_conf

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="nginx is installed by scripts/install-deps")


# --- certificates ------------------------------------------------------------------------------------------------

def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write(path, *items):
    with open(path, "wb") as f:
        for it in items:
            if isinstance(it, x509.Certificate):
                f.write(it.public_bytes(serialization.Encoding.PEM))
            else:
                f.write(it.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    return path


class CA:
    __test__ = False

    def __init__(self, directory, name):
        self.dir = directory
        self.name = name
        self.key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=3))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.file = _write(os.path.join(directory, name.replace(" ", "-") + ".pem"), self.cert)

    def issue(self, label, dns=("origin.test",), ips=(), expired=False, client=False):
        """A leaf (cert file with the leaf only, key file)."""
        key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        if expired:
            before, after = now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)
        else:
            before, after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)
        import ipaddress
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label)]))
             .issuer_name(self.cert.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(before).not_valid_after(after)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage(
                 [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        return (_write(os.path.join(self.dir, f"{label}.pem"), cert),
                _write(os.path.join(self.dir, f"{label}.key"), key))


@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="edgeproxy-tls-origin-")
    ca = CA(d, "Origin Test CA")
    other = CA(d, "Some Other CA")
    out = {
        "dir": d,
        "ca": ca.file,
        "other_ca": other.file,
        "good": ca.issue("good", dns=("origin.test",), ips=("127.0.0.1",)),
        "expired": ca.issue("expired", dns=("origin.test",), ips=("127.0.0.1",), expired=True),
        "elsewhere": ca.issue("elsewhere", dns=("elsewhere.test",)),
        "client": ca.issue("edgeproxy-client", dns=(), client=True),
    }
    # A self-signed origin certificate (no CA at all), for verify = false.
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self-signed.test")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2)).sign(key, hashes.SHA256()))
    out["self_signed"] = (_write(os.path.join(d, "self.pem"), cert), _write(os.path.join(d, "self.key"), key))
    yield out
    shutil.rmtree(d, ignore_errors=True)


# --- nginx as the TLS origin -------------------------------------------------------------------------------------

class TLSOrigin(NginxProcess):
    """nginx serving HTTPS on a free loopback port; the body names what nginx saw of the TLS connection."""

    def __init__(self, cert, key, extra="", listen=""):
        self.dir = tempfile.mkdtemp(prefix="edgeproxy-tls-origin-nginx-")
        self.port = free_port()
        self.big = os.urandom(3 * 1024 * 1024 + 17)
        with open(os.path.join(self.dir, "big.bin"), "wb") as f:
            f.write(self.big)
        self.launch(nginx_conf(self.dir, f"""
    server {{
        listen 127.0.0.1:{self.port} ssl {listen};
        server_name origin.test;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets on;
{extra}
        client_max_body_size 64m;
        location = /big {{ default_type application/octet-stream; alias {self.dir}/big.bin; }}
        location /up/ {{ root {self.dir}; dav_methods PUT; create_full_put_path on; }}
        location / {{
            return 200 "tls-origin proto=$ssl_protocol sni=$ssl_server_name alpn=$ssl_alpn_protocol reused=$ssl_session_reused client=$ssl_client_s_dn pp=$proxy_protocol_addr\\n";
        }}
    }}""", worker_connections=256, access_log=False))


@pytest.fixture
def tls_origin():
    started = []

    def start(cert, key, extra="", listen=""):
        o = TLSOrigin(cert, key, extra, listen)
        started.append(o)
        return o

    yield start
    for o in started:
        o.stop()


def start_proxy(proxies, tmp_path, server, tls_table, extra=""):
    cfg = write_file(tmp_path, "tls-origin.toml", f"""
admin = "127.0.0.1:0"

[upstreams.default]
servers = ["{server}"]
{extra}

[upstreams.default.tls]
{tls_table}
""")
    return proxies(["--config", cfg, "--listen", "127.0.0.1:0"])


def get(p, path="/", http="--http1.1"):
    r = curl(http, "-w", "\n%{http_code}", f"https://127.0.0.1:{p.port}{path}", timeout=20)
    assert r.returncode == 0, r.stderr
    body, code = r.stdout.rsplit("\n", 1)
    return int(code), body


def metric_sum(p, name, **labels):
    with urllib.request.urlopen(f"{p.admin}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def resolve(name, port):
    """A server URL for `name` that reaches 127.0.0.1 (the name is only what SNI and verification use)."""
    return f"https://{name}:{port}"


# --- tests -------------------------------------------------------------------------------------------------------

def test_request_through_verified_tls_origin_http1_and_http2(proxies, tmp_path, pki, tls_origin):
    o = tls_origin(*pki["good"])
    p = start_proxy(proxies, tmp_path, f"https://localhost:{o.port}", f'ca_file = "{pki["ca"]}"\nsni = "origin.test"')
    for http in ("--http1.1", "--http2"):
        code, body = get(p, "/", http)
        assert code == 200, (http, body, p.output())
        assert "tls-origin" in body
        assert "sni=origin.test" in body, body
        assert "alpn=http/1.1" in body, body
        assert re.search(r"proto=TLSv1\.[23]", body), body
    assert metric_sum(p, "edgeproxy_upstream_tls_handshakes_total") >= 1


def test_large_bodies_both_ways_over_tls(proxies, tmp_path, pki, tls_origin):
    # 3 MiB down (many TLS records, buffer-full pauses) and 4 MiB up (partial SSL_write, WANT_WRITE), HTTP/1.1 and
    # HTTP/2 clients.
    import hashlib
    o = tls_origin(*pki["good"])
    p = start_proxy(proxies, tmp_path, f"https://127.0.0.1:{o.port}", f'ca_file = "{pki["ca"]}"')
    want = hashlib.sha256(o.big).hexdigest()
    upload = tmp_path / "upload.bin"
    upload.write_bytes(os.urandom(4 * 1024 * 1024))
    for http in ("--http1.1", "--http2"):
        r = subprocess.run(["curl", "-sSk", http, "--max-time", "60", f"https://127.0.0.1:{p.port}/big"],
                           capture_output=True, timeout=90)
        assert r.returncode == 0, r.stderr
        assert hashlib.sha256(r.stdout).hexdigest() == want, (http, len(r.stdout))
        # nginx's WebDAV PUT reads the whole body and stores it: the stored file must be the upload.
        name = http.strip("-").replace(".", "")
        r = subprocess.run(["curl", "-sSk", http, "--max-time", "60", "-T", str(upload),
                            "-w", "\n%{http_code}", f"https://127.0.0.1:{p.port}/up/{name}.bin"],
                           capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, r.stderr
        assert r.stdout.endswith("\n201"), (http, r.stdout[-300:])
        with open(os.path.join(o.dir, "up", f"{name}.bin"), "rb") as f:
            assert f.read() == upload.read_bytes(), http


def test_ip_literal_origin_verifies_the_address_and_sends_no_sni(proxies, tmp_path, pki, tls_origin):
    o = tls_origin(*pki["good"])
    p = start_proxy(proxies, tmp_path, f"https://127.0.0.1:{o.port}", f'ca_file = "{pki["ca"]}"')
    code, body = get(p)
    assert code == 200, (body, p.output())
    assert "sni= " in body, body  # no SNI for an IP literal


def test_wrong_ca_is_502_with_a_clear_log_line(proxies, tmp_path, pki, tls_origin):
    o = tls_origin(*pki["good"])
    p = start_proxy(proxies, tmp_path, f"https://127.0.0.1:{o.port}", f'ca_file = "{pki["other_ca"]}"')
    code, _ = get(p)
    assert code == 502
    m = p.wait_log(r"TLS handshake with origin https://127\.0\.0\.1:%d .*failed: certificate verify failed: "
                   r"unable to get local issuer certificate" % o.port)
    assert m
    assert metric_sum(p, "edgeproxy_upstream_tls_handshake_failures_total", reason="verify") >= 1
    assert metric_sum(p, "edgeproxy_upstream_tls_handshakes_total") == 0


def test_expired_certificate_is_502(proxies, tmp_path, pki, tls_origin):
    o = tls_origin(*pki["expired"])
    p = start_proxy(proxies, tmp_path, f"https://127.0.0.1:{o.port}", f'ca_file = "{pki["ca"]}"')
    code, _ = get(p)
    assert code == 502
    p.wait_log(r"TLS handshake with origin https://127\.0\.0\.1:%d .*failed: certificate verify failed: "
               r"certificate has expired" % o.port)


def test_host_name_mismatch_is_502(proxies, tmp_path, pki, tls_origin):
    o = tls_origin(*pki["elsewhere"])  # a valid certificate of the right CA, for elsewhere.test only
    p = start_proxy(proxies, tmp_path, f"https://localhost:{o.port}", f'ca_file = "{pki["ca"]}"\nsni = "origin.test"')
    code, _ = get(p)
    assert code == 502
    p.wait_log(r"TLS handshake with origin https://localhost:%d .*failed: certificate verify failed: "
               r"hostname mismatch" % o.port)


class HAProxyMTLSOrigin:
    """HAProxy 2.6 terminating TLS with `verify required`: unlike nginx (which finishes the handshake and answers
    400 itself), it refuses a client without a certificate in the handshake."""

    def __init__(self, cert, key, ca, verify="required", accept_proxy=False):
        self.dir = tempfile.mkdtemp(prefix="edgeproxy-tls-origin-haproxy-")
        self.port = free_port()
        pem = os.path.join(self.dir, "server.pem")
        with open(pem, "w") as out:
            for f in (cert, key):
                out.write(open(f).read())
        conf = os.path.join(self.dir, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write(f"""
global
    maxconn 256
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:{self.port} {"accept-proxy " if accept_proxy else ""}ssl crt {pem} ca-file {ca} verify {verify} alpn http/1.1
    http-request return status 200 content-type text/plain lf-string "haproxy-mtls client=%[ssl_c_s_dn] pp=%[src]"
""")
        self.log = open(os.path.join(self.dir, "haproxy.log"), "wb")
        self.p = subprocess.Popen(["haproxy", "-db", "-f", conf], stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.p.poll() is not None:
                raise AssertionError("haproxy exited:\n" + open(os.path.join(self.dir, "haproxy.log")).read())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("haproxy did not listen")

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_origin_requiring_a_client_certificate(proxies, tmp_path, pki):
    o = HAProxyMTLSOrigin(*pki["good"], pki["ca"])
    try:
        without = start_proxy(proxies, tmp_path, f"https://127.0.0.1:{o.port}", f'ca_file = "{pki["ca"]}"')
        code, _ = get(without)
        assert code == 502
        without.wait_log(r"TLS handshake with origin https://127\.0\.0\.1:%d .*failed: .*certificate required"
                         % o.port)
        assert metric_sum(without, "edgeproxy_upstream_tls_handshake_failures_total", reason="alert") >= 1
        without.stop()

        cert, key = pki["client"]
        p = start_proxy(proxies, tmp_path, f"https://127.0.0.1:{o.port}",
                        f'ca_file = "{pki["ca"]}"\nclient_cert = "{cert}"\nclient_key = "{key}"')
        for http in ("--http1.1", "--http2"):
            code, body = get(p, "/", http)
            assert code == 200, (body, p.output())
            assert "client=/CN=edgeproxy-client" in body, body
    finally:
        o.stop()


def test_nginx_origin_with_optional_client_certificate(proxies, tmp_path, pki, tls_origin):
    # nginx's `ssl_verify_client on` completes the handshake without a certificate and answers 400 itself: that
    # answer is the origin's and passes through; with the client certificate nginx sees its subject.
    o = tls_origin(*pki["good"], extra=f"        ssl_verify_client on;\n        ssl_client_certificate {pki['ca']};")
    without = start_proxy(proxies, tmp_path, f"https://127.0.0.1:{o.port}", f'ca_file = "{pki["ca"]}"')
    code, _ = get(without)
    assert code == 400
    without.stop()
    cert, key = pki["client"]
    p = start_proxy(proxies, tmp_path, f"https://127.0.0.1:{o.port}",
                    f'ca_file = "{pki["ca"]}"\nclient_cert = "{cert}"\nclient_key = "{key}"')
    code, body = get(p)
    assert code == 200, (body, p.output())
    assert "client=CN=edgeproxy-client" in body, body


@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
def test_resumption_under_keep_alive_churn(proxies, tmp_path, pki, tls_origin, version):
    # keepalive_requests 1: nginx closes the origin connection after every response, so every request needs a new
    # origin connection (and handshake). With the per-pool session cache nearly all of them resume.
    o = tls_origin(*pki["good"], extra=f"        keepalive_requests 1;\n        ssl_protocols {version};")
    p = start_proxy(proxies, tmp_path, f"https://127.0.0.1:{o.port}", f'ca_file = "{pki["ca"]}"')
    n = 60
    # One client connection, many requests (curl reuses it): the proxy side keeps its client, the origin side churns.
    urls = [f"https://127.0.0.1:{p.port}/r{i}" for i in range(n)]
    r = subprocess.run(["curl", "-sS", "-k", "--http1.1", "--max-time", "60", "-w", "%{http_code}\n"]
                       + [a for u in urls for a in ("-o", "/dev/null", u)],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["200"] * n, r.stdout
    resumed = metric_sum(p, "edgeproxy_upstream_tls_handshakes_total", resumed="true")
    full = metric_sum(p, "edgeproxy_upstream_tls_handshakes_total", resumed="false")
    assert resumed + full >= n * 0.9, (resumed, full)  # the churn really made new origin connections
    ratio = resumed / (resumed + full)
    print(f"{version}: {int(resumed)} resumed, {int(full)} full, resumed ratio {ratio:.3f}")
    assert ratio > 0.9, (resumed, full)


def test_verify_false_against_self_signed_origin_warns(proxies, tmp_path, pki, tls_origin):
    o = tls_origin(*pki["self_signed"])
    verified = start_proxy(proxies, tmp_path, f"https://127.0.0.1:{o.port}", "")
    code, _ = get(verified)
    assert code == 502, "the system CA store does not trust a self-signed origin"
    verified.stop()

    p = start_proxy(proxies, tmp_path, f"https://127.0.0.1:{o.port}", "verify = false")
    assert re.search(r"warning.*upstreams\.default\.tls\.verify = false: origin certificates are NOT verified",
                     p.output()), p.output()
    code, body = get(p)
    assert code == 200, (body, p.output())


def test_bad_ca_file_refuses_to_start(tmp_path, pki):
    from conftest import edgeproxy_bin
    cfg = write_file(tmp_path, "bad.toml", f"""
[upstreams.default]
servers = ["https://127.0.0.1:1"]

[upstreams.default.tls]
ca_file = "{tmp_path}/missing.pem"
""")
    r = subprocess.run([edgeproxy_bin(), "--config", cfg, "--listen", "127.0.0.1:0"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0
    assert "upstreams.default.tls: cannot load CA file" in r.stdout + r.stderr, r.stdout + r.stderr


def upstreams_doc(p):
    with urllib.request.urlopen(f"{p.admin}/upstreams", timeout=10) as r:
        import json
        return json.loads(r.read())


def test_health_checks_run_over_tls(proxies, tmp_path, pki, tls_origin):
    # Two servers in one pool: one the CA vouches for, one whose certificate names another host. Active checks over
    # TLS keep the first up and take the second down ("TLS handshake failed"); every request lands on the first.
    good = tls_origin(*pki["good"])
    bad = tls_origin(*pki["elsewhere"])
    hc = "\n[upstreams.default.health_check]\ninterval = \"200ms\"\ntimeout = \"150ms\"\nrise = 1\nfall = 1\n"
    cfg = write_file(tmp_path, "tls-health.toml", f"""
admin = "127.0.0.1:0"

[upstreams.default]
servers = ["https://127.0.0.1:{good.port}", "https://127.0.0.1:{bad.port}"]
{hc}
[upstreams.default.tls]
ca_file = "{pki["ca"]}"
sni = "origin.test"
""")
    p = proxies(["--config", cfg, "--listen", "127.0.0.1:0"])

    def states():
        servers = upstreams_doc(p)["pools"][0]["servers"]
        return {s["server"]: (s["state"], s["addresses"][0]["reason"]) for s in servers}

    from conftest import wait_for
    want_bad = f"https://127.0.0.1:{bad.port}"
    want_good = f"https://127.0.0.1:{good.port}"
    wait_for(lambda: states()[want_bad][0] == "down" and states()[want_good][0] == "up", timeout=15,
             what="health checks over TLS to settle")
    assert "TLS handshake failed" in states()[want_bad][1], states()
    for _ in range(6):
        code, body = get(p)
        assert code == 200, (body, p.output())
    assert states()[want_good][0] == "up", states()


@pytest.mark.parametrize("version", ["v1", "v2", "v2-tlvs"])
def test_proxy_protocol_header_goes_before_the_tls_handshake(proxies, tmp_path, pki, tls_origin, version):
    # proxy_protocol on an https:// pool: the header is written raw, then the ClientHello, for requests and for
    # health checks. v1 and v2 against nginx (`listen ... ssl proxy_protocol`); v2 with every TLV against HAProxy
    # (`accept-proxy ssl`): nginx 1.22 refuses a v2 header longer than 107 bytes on an SSL listener ("header is too
    # large while reading PROXY protocol": it peeks the header before TLS into a small buffer), which is why TLVs
    # are opt-in (proxy_protocol_tlvs).
    if version != "v2-tlvs":
        o = tls_origin(*pki["good"], listen="proxy_protocol")
        stop = lambda: None
        pp = f'proxy_protocol = "{version}"\n'
    else:
        o = HAProxyMTLSOrigin(*pki["good"], pki["ca"], verify="none", accept_proxy=True)
        stop = o.stop
        pp = 'proxy_protocol = "v2"\nproxy_protocol_tlvs = ["alpn", "authority", "ssl", "ja4"]\n'
    try:
        p = start_proxy(proxies, tmp_path, f"https://127.0.0.1:{o.port}", f'ca_file = "{pki["ca"]}"',
                        extra=pp + '[upstreams.default.health_check]\ninterval = "200ms"\n'
                              'timeout = "150ms"\nrise = 1\nfall = 1')
        for http in ("--http1.1", "--http2"):
            code, body = get(p, "/", http)
            assert code == 200, (body, p.output())
            assert "pp=127.0.0.1" in body, body
        # The address must stay up through a few health-check rounds (interval 200 ms): a check that sent its
        # header after the ClientHello (or none) would fail and take it down at once (fall = 1).
        time.sleep(1.0)
        servers = upstreams_doc(p)["pools"][0]["servers"]
        assert servers[0]["state"] == "up", servers
    finally:
        stop()
