"""Wire-level helpers for the session-ticket tests: run `openssl s_client -msg`, parse the server's flight.

Nothing here is mocked: every helper drives a real client process against a real server on loopback and reports
what crossed the wire. `openssl s_client -msg` prints one line per record header and per handshake message, each
followed by its bytes in hex; the record headers' first byte is the content type, which is how a received
ChangeCipherSpec shows up (OpenSSL 3.0's client prints no "ChangeCipherSpec" line for an inbound CCS).
"""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

HEADER = re.compile(r"^(<<<|>>>) ([^,]+), (\w+)(?: \[length ([0-9a-fA-F]+)\])?(?:, (.*))?$")
HEXLINE = re.compile(r"^    ((?:[0-9a-f]{2} ?)+)$")

CT_NAMES = {20: "ChangeCipherSpec", 21: "Alert", 22: "Handshake", 23: "ApplicationData"}
EXT_SESSION_TICKET = 0x0023


class WireEvent:
    def __init__(self, direction, version, kind, name):
        self.direction = direction  # "in" (server -> client) or "out"
        self.version = version
        self.kind = kind  # RecordHeader, Handshake, ChangeCipherSpec, Alert, InnerContent, ...
        self.name = name  # handshake message name, alert text, or for a record header its content type name
        self.data = bytearray()

    def __repr__(self):
        return f"{'<<<' if self.direction == 'in' else '>>>'} {self.kind}:{self.name}"


class Handshake:
    """One s_client run: the parsed wire events, the HTTP response, and the client's own summary."""

    def __init__(self, args, output, returncode, sess_out):
        self.args = args
        self.output = output
        self.returncode = returncode
        self.sess_out = sess_out
        self.events = parse_msg_output(output)
        m = re.search(r"^(New|Reused), (TLSv[\d.]+), Cipher is (\S+)", output, re.M)
        self.client_says_reused = bool(m and m.group(1) == "Reused")
        self.version = m.group(2) if m else None
        self.body = None
        for line in output.splitlines():
            if line.startswith("{") and '"ticket_outcome"' in line:
                self.body = json.loads(line)

    # -- the server's flight -----------------------------------------------------------------------------------
    def server_flight(self):
        """Server-to-client handshake messages in wire order, with `CCS` where a ChangeCipherSpec record arrived.

        Record headers are only turned into tokens for CCS; handshake messages come from the Handshake lines
        (OpenSSL prints them after decrypting, so TLS 1.3's encrypted messages are included)."""
        flight = []
        for e in self.events:
            if e.direction != "in":
                continue
            if e.kind == "RecordHeader" and e.name == "ChangeCipherSpec":
                flight.append("CCS")
            elif e.kind == "Handshake":
                flight.append(e.name)
        return flight

    def server_messages(self, name):
        return [e for e in self.events if e.direction == "in" and e.kind == "Handshake" and e.name == name]

    @property
    def server_sent_certificate(self):
        return "Certificate" in self.server_flight()

    @property
    def full_handshake(self):
        return self.server_sent_certificate

    @property
    def abbreviated(self):
        f = self.server_flight()
        return "ServerHello" in f and "Finished" in f and "Certificate" not in f

    @property
    def tickets(self):
        """NewSessionTicket messages the server sent."""
        return len(self.server_messages("NewSessionTicket"))

    def ticket_lengths(self):
        """Lengths of the ticket bodies in each NewSessionTicket (TLS 1.2: lifetime u32 | ticket<u16>)."""
        out = []
        for e in self.server_messages("NewSessionTicket"):
            d = bytes(e.data)
            if self.version == "TLSv1.2" and len(d) >= 10:
                out.append(int.from_bytes(d[8:10], "big"))
            elif len(d) >= 13:  # TLS 1.3: lifetime u32 | age_add u32 | nonce<u8> | ticket<u16> | exts
                nl = d[12]
                p = 13 + nl
                out.append(int.from_bytes(d[p:p + 2], "big"))
        return out

    def ticket_bodies(self):
        """The opaque ticket bytes of each NewSessionTicket the server sent."""
        out = []
        for e in self.server_messages("NewSessionTicket"):
            d = bytes(e.data)
            p = 8 if self.version == "TLSv1.2" else 13 + d[12]
            ln = int.from_bytes(d[p:p + 2], "big")
            out.append(d[p + 2:p + 2 + ln])
        return out

    def ticket_key_names(self):
        """The 16-byte key name (hex) at the start of each ticket the server sent (RFC 5077 section 4 layout,
        which OpenSSL uses for both TLS 1.2 and TLS 1.3 tickets)."""
        out = []
        for e in self.server_messages("NewSessionTicket"):
            d = bytes(e.data)
            if self.version == "TLSv1.2":
                p = 10
            else:
                p = 13 + d[12] + 2
            out.append(d[p:p + 16].hex())
        return out

    def tickets_after_server_finished(self):
        f = self.server_flight()
        if "Finished" not in f:
            return 0
        return f[f.index("Finished") + 1:].count("NewSessionTicket")

    def ticket_before_ccs(self):
        """TLS 1.2: True when a NewSessionTicket precedes the server's ChangeCipherSpec."""
        f = self.server_flight()
        return "NewSessionTicket" in f and "CCS" in f and f.index("NewSessionTicket") < f.index("CCS")

    def server_hello_extensions(self):
        sh = self.server_messages("ServerHello")
        if not sh:
            return []
        return parse_server_hello_extensions(bytes(sh[0].data))

    def describe(self):
        return f"flight={self.server_flight()} reused={self.client_says_reused} body={self.body}"


def parse_msg_output(text):
    events = []
    cur = None
    for line in text.splitlines():
        m = HEADER.match(line)
        if m:
            direction = "in" if m.group(1) == "<<<" else "out"
            kind = m.group(3)
            name = (m.group(5) or "").strip()
            cur = WireEvent(direction, m.group(2), kind, name)
            events.append(cur)
            continue
        h = HEXLINE.match(line)
        if h and cur is not None:
            cur.data += bytes.fromhex(h.group(1).replace(" ", ""))
            if cur.kind == "RecordHeader" and len(cur.data) >= 1:
                cur.name = CT_NAMES.get(cur.data[0], f"type{cur.data[0]}")
            continue
        cur = None
    return events


def parse_server_hello_extensions(d):
    """Extension types in a ServerHello handshake message (with its 4-byte header)."""
    p = 4 + 2 + 32
    sid_len = d[p]
    p += 1 + sid_len + 2 + 1
    if p + 2 > len(d):
        return []
    end = p + 2 + int.from_bytes(d[p:p + 2], "big")
    p += 2
    types = []
    while p + 4 <= end:
        t = int.from_bytes(d[p:p + 2], "big")
        ln = int.from_bytes(d[p + 2:p + 4], "big")
        types.append(t)
        p += 4 + ln
    return types


def http_request(host="localhost", path="/"):
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n").encode()


def s_client(port, version, sess_in=None, sess_out=None, request=True, servername="localhost", timeout=20,
             extra=()):
    """Runs one `openssl s_client -msg` connection (one HTTP request, `Connection: close`), returns a Handshake.

    version: "1.2" or "1.3". sess_in/sess_out: PEM session files (a ticket lives in the session)."""
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2" if version == "1.2" else "-tls1_3",
            "-msg", "-ign_eof", "-servername", servername]
    if sess_in:
        args += ["-sess_in", sess_in]
    if sess_out:
        args += ["-sess_out", sess_out]
    args += list(extra)
    stdin = http_request(servername) if request else b""
    p = subprocess.run(args, input=stdin, capture_output=True, timeout=timeout)
    out = p.stdout.decode("utf-8", "replace") + "\n" + p.stderr.decode("utf-8", "replace")
    return Handshake(args, out, p.returncode, sess_out)


def session_has_ticket(path):
    """True when the PEM session saved by s_client carries a ticket."""
    p = subprocess.run(["openssl", "sess_id", "-in", path, "-noout", "-text"], capture_output=True, text=True)
    return "TLS session ticket:" in p.stdout


# -- looking inside a ticket (diagnosis only) -----------------------------------------------------------------------
def open_ticket(ticket, keyfile_bytes):
    """Decrypts an OpenSSL ticket (name16 | iv16 | AES-CBC ciphertext | HMAC-SHA256) sealed under an nginx-format
    key file (80 B: name | hmac32 | aes32; 48 B: name | aes16 | hmac16) and returns the DER SSL_SESSION, or None
    when `cryptography` is unavailable or the name does not match."""
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:
        return None
    k = keyfile_bytes
    if ticket[:16] != k[:16]:
        return None
    aes = k[48:80] if len(k) == 80 else k[16:32]
    iv, ct = ticket[16:32], ticket[32:-32]
    pt = Cipher(algorithms.AES(aes), modes.CBC(iv)).decryptor().update(ct)
    return pt[:-pt[-1] - 1]


def der_items(d):
    """Top-level (tag, value) pairs inside a DER SEQUENCE."""
    def length(p):
        n = d[p]
        if n < 0x80:
            return n, p + 1
        k = n & 0x7F
        return int.from_bytes(d[p + 1:p + 1 + k], "big"), p + 1 + k
    assert d[0] == 0x30
    end_len, p = length(1)
    end = p + end_len
    out = []
    while p < end:
        tag = d[p]
        ln, q = length(p + 1)
        out.append((tag, d[q:q + ln]))
        p = q + ln
    return out


def session_id_context(der):
    """The sid_ctx ([4] OCTET STRING) of a DER SSL_SESSION (b"" when absent)."""
    for tag, val in der_items(der):
        if tag == 0xA4:
            return val[2:2 + val[1]]
    return b""


# -- admin API -----------------------------------------------------------------------------------------------------
def admin(proxy, method, path, timeout=10):
    req = urllib.request.Request(f"http://127.0.0.1:{proxy.admin_port}{path}", method=method,
                                 data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode()


def keys(proxy):
    status, body = admin(proxy, "GET", "/keys")
    assert status == 200, body
    return json.loads(body)


def rotate(proxy):
    status, body = admin(proxy, "POST", "/keys/rotate")
    assert status == 200, body
    return body


METRIC = re.compile(r"^(\w+)(?:\{([^}]*)\})?\s+(\S+)$")


def metrics(proxy):
    """Parses GET /metrics into [(name, {labels}, value)]."""
    _, text = admin(proxy, "GET", "/metrics")
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = METRIC.match(line.strip())
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric_sum(proxy, name, **want):
    return sum(v for n, labels, v in metrics(proxy)
               if n == name and all(labels.get(k) == str(x) for k, x in want.items()))


def handshakes(proxy, outcome, version):
    return metric_sum(proxy, "edgeproxy_tls_handshakes_total", outcome=outcome, version=version)


def access_log_tickets(proxy):
    """The `ticket` field of every access-log line the proxy wrote so far (stdout), in order."""
    out = []
    for line in proxy.output().splitlines():
        i = line.find("{")
        if i < 0 or '"ticket"' not in line:
            continue
        try:
            out.append(json.loads(line[i:])["ticket"])
        except (ValueError, KeyError):
            continue
    return out


def wait_access_log(proxy, n, timeout=10.0):
    """Waits until at least n access-log lines with a ticket field were written; returns them."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = access_log_tickets(proxy)
        if len(got) >= n:
            return got
        time.sleep(0.05)
    raise AssertionError(f"expected {n} access-log lines, got {access_log_tickets(proxy)}\n{proxy.output()}")


# -- configuration -------------------------------------------------------------------------------------------------
def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_config(directory, cert, key, tickets=None, extra=""):
    """Writes an EdgeProxy TOML config into `directory`: loopback listener and admin on port 0, one worker, the
    given certificate, no policies (an empty directory, so no fingerprint policy changes the ticket decision),
    and a [tickets] table from the `tickets` dict. Returns the path."""
    pol = os.path.join(directory, "policies")
    os.makedirs(pol, exist_ok=True)
    lines = [
        'listen = "127.0.0.1:0"',
        'admin = "127.0.0.1:0"',
        "workers = 1",
        "",
        "[[certificates]]",
        f'cert = "{cert}"',
        f'key = "{key}"',
        "",
        "[policies]",
        f'dir = "{pol}"',
        "",
        "[tickets]",
    ]
    for k, v in (tickets or {}).items():
        lines.append(f"{k} = {toml_value(v)}")
    path = os.path.join(directory, "edgeproxy.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n" + extra)
    return path


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def write_ticket_key(path, size=80):
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    os.chmod(path, 0o600)
    return path


# -- nginx ---------------------------------------------------------------------------------------------------------
def nginx_binary():
    return shutil.which("nginx") or (os.path.exists("/usr/sbin/nginx") and "/usr/sbin/nginx") or None


class Nginx:
    """A throwaway nginx (daemon off, everything in a temp dir) serving TLS on a free loopback port."""

    def __init__(self, cert, key, ticket_key_files, protocols="TLSv1.2 TLSv1.3"):
        self.dir = tempfile.mkdtemp(prefix="edgeproxy-nginx-")
        self.port = free_port()
        keys_conf = "\n".join(f"        ssl_session_ticket_key {p};" for p in ticket_key_files)
        conf = f"""
daemon off;
master_process off;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {self.dir}/access.log;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    server {{
        listen 127.0.0.1:{self.port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols {protocols};
        ssl_session_cache off;
        ssl_session_tickets on;
        # Same TLS 1.3 suite preference as EdgeProxy's default: a TLS 1.3 ticket only resumes under a suite with
        # the same hash, so an SHA-384 ticket from nginx's default order could never resume on EdgeProxy.
        ssl_prefer_server_ciphers on;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
{keys_conf}
        location / {{ return 200 "nginx\\n"; }}
    }}
}}
"""
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.log = open(os.path.join(self.dir, "stdout.log"), "wb")
        self.p = subprocess.Popen([nginx_binary(), "-p", self.dir, "-c", self.conf], stdout=self.log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.p.poll() is not None:
                raise AssertionError("nginx exited:\n" + self.error_log())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nginx did not listen:\n" + self.error_log())

    def error_log(self):
        try:
            with open(os.path.join(self.dir, "error.log")) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
