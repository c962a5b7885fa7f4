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


def nginx_conf(directory, servers, worker_connections=64, access_log=True, http_extra=""):
    """The frame every throwaway nginx of the tests shares (daemon off, one process, every path under `directory`)
    around `servers`, the server blocks."""
    log = f"{directory}/access.log" if access_log else "off"
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log {log};
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
{http_extra}
{servers}
}}
"""


class NginxProcess:
    """A throwaway nginx run from `self.dir` on `conf` (see nginx_conf); `launch` returns once `self.port` accepts."""

    def launch(self, conf):
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


class Nginx(NginxProcess):
    """A throwaway nginx serving TLS on a free loopback port."""

    def __init__(self, cert, key, ticket_key_files, protocols="TLSv1.2 TLSv1.3", ciphers=None, extra=""):
        self.dir = tempfile.mkdtemp(prefix="edgeproxy-nginx-")
        self.port = free_port()
        keys_conf = "\n".join(f"        ssl_session_ticket_key {p};" for p in ticket_key_files)
        self.launch(nginx_conf(self.dir, f"""
    server {{
        listen 127.0.0.1:{self.port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols {protocols};
{f"        ssl_ciphers {ciphers};" if ciphers else ""}
        ssl_session_cache off;
        ssl_session_tickets on;
        # Same TLS 1.3 suite preference as EdgeProxy's default: a TLS 1.3 ticket only resumes under a suite with
        # the same hash, so an SHA-384 ticket from nginx's default order could never resume on EdgeProxy.
        ssl_prefer_server_ciphers on;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
{keys_conf}
{extra}
        location / {{ return 200 "nginx\\n"; }}
    }}"""))


# -- raw TLS probes (tlsfuzzer-style) --------------------------------------------------------------------------------
# Probes in the style of tlsfuzzer (https://github.com/tlsfuzzer/tlsfuzzer), which is not on PyPI: the ClientHello is
# built with tlslite-ng's message classes, framed into records here, and the server's answer is read record by record
# as plaintext (everything up to a TLS 1.2 ChangeCipherSpec, or up to a TLS 1.3 ServerHello, is plaintext).
ALERT_NAMES = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
               40: "handshake_failure", 47: "illegal_parameter", 50: "decode_error", 51: "decrypt_error",
               70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
               109: "missing_extension", 110: "unsupported_extension", 112: "unrecognized_name",
               120: "no_application_protocol"}


def records(content_type, payload, version=b"\x03\x03", size=16384):
    """`payload` framed as TLS records of at most `size` bytes each."""
    out = bytearray()
    for i in range(0, max(len(payload), 1), size):
        frag = payload[i:i + size]
        out += bytes([content_type]) + version + len(frag).to_bytes(2, "big") + frag
    return bytes(out)


class ServerAnswer:
    """What the server sent back to a probe: handshake message types in order, the alert (level, description) if
    one came, and how the connection ended: "eof" (FIN), "reset" (ECONNRESET), "timeout" or "open"."""

    def __init__(self):
        self.handshake = []  # (type, body) in wire order
        self.alert = None
        self.ccs = False
        self.end = "open"
        self.raw = bytearray()

    @property
    def types(self):
        return [t for t, _ in self.handshake]

    def message(self, htype):
        for t, b in self.handshake:
            if t == htype:
                return b
        return None

    @property
    def alert_name(self):
        if self.alert is None:
            return None
        return ALERT_NAMES.get(self.alert[1], str(self.alert[1]))

    def __repr__(self):
        return f"ServerAnswer(handshake={self.types}, alert={self.alert_name}, ccs={self.ccs}, end={self.end})"


class RawProbe:
    """One TCP connection to a TLS server driven byte by byte."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.answer = ServerAnswer()
        self._buf = bytearray()
        self._hs = bytearray()

    def send(self, data):
        """Sends bytes; returns None, or the exception name when the kernel refused them (peer reset)."""
        try:
            self.sock.sendall(data)
            return None
        except OSError as e:
            return type(e).__name__

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            b = self.sock.recv(65536)
        except socket.timeout:
            self.answer.end = "timeout"
            return False
        except ConnectionResetError:
            self.answer.end = "reset"
            return False
        if not b:
            self.answer.end = "eof"
            return False
        self.answer.raw += b
        self._buf += b
        return True

    def _parse(self):
        while len(self._buf) >= 5:
            ln = int.from_bytes(self._buf[3:5], "big")
            if len(self._buf) < 5 + ln:
                return
            ctype, frag = self._buf[0], bytes(self._buf[5:5 + ln])
            del self._buf[:5 + ln]
            if ctype == 21 and len(frag) >= 2 and not self.answer.ccs:
                self.answer.alert = (frag[0], frag[1])
            elif ctype == 20:
                self.answer.ccs = True
            elif ctype == 22 and not self.answer.ccs:
                self._hs += frag
                while len(self._hs) >= 4:
                    mlen = int.from_bytes(self._hs[1:4], "big")
                    if len(self._hs) < 4 + mlen:
                        break
                    self.answer.handshake.append((self._hs[0], bytes(self._hs[4:4 + mlen])))
                    del self._hs[:4 + mlen]

    def read_until(self, pred, timeout=10.0):
        """Reads until `pred(answer)` holds, an alert arrives, or the connection ends. Returns the answer."""
        deadline = time.time() + timeout
        while not pred(self.answer) and self.answer.alert is None and time.time() < deadline:
            if not self._fill(max(0.01, deadline - time.time())):
                break
            self._parse()
        return self.answer

    def read_to_end(self, timeout=5.0):
        """Reads (and parses) until EOF, reset or `timeout`; sets `answer.end`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self._fill(max(0.01, deadline - time.time())):
                break
            self._parse()
        return self.answer

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


HS_SERVER_HELLO, HS_SERVER_HELLO_DONE = 2, 14


def build_client_hello(ciphers, extensions, version=(3, 3), session_id=b"", compression=(0,)):
    """A ClientHello handshake message (with its 4-byte header) built by tlslite-ng. `extensions`: tlslite
    extension objects in wire order."""
    from tlslite.messages import ClientHello as TLSLiteClientHello
    h = TLSLiteClientHello()
    h.create(version, bytearray(os.urandom(32)), bytearray(session_id), list(ciphers), extensions=list(extensions))
    h.compression_methods = list(compression)
    return bytes(h.write())


def tls12_ecdhe_extensions(server_name="localhost", alpn=None, extra=()):
    """The extensions a minimal TLS 1.2 ECDHE-ECDSA/RSA client needs, plus `extra` (tlslite extension objects)."""
    from tlslite.extensions import (ALPNExtension, ECPointFormatsExtension, SignatureAlgorithmsExtension,
                                    SNIExtension, SupportedGroupsExtension)
    exts = []
    if server_name is not None:
        exts.append(SNIExtension().create(bytearray(server_name.encode())))
    exts += [SupportedGroupsExtension().create([29, 23, 24]), ECPointFormatsExtension().create([0]),
             SignatureAlgorithmsExtension().create([(4, 3), (8, 4), (4, 1), (5, 3), (8, 5)])]
    if alpn is not None:
        exts.append(ALPNExtension().create([bytearray(p) for p in alpn]))
    return exts + list(extra)


# ECDHE-ECDSA/RSA AES-GCM: what EdgeProxy's default cipher list accepts.
TLS12_ECDHE_CIPHERS = [0xC02B, 0xC02F, 0xC02C, 0xC030]


def probe_hello(port, hello, record_size=16384, after=None, timeout=10.0):
    """Sends one ClientHello message framed in records, reads the server's first flight (to ServerHelloDone, a
    TLS 1.3 ServerHello, or an alert). `after(probe, answer)` may continue the conversation. Then reads to the end
    of the connection and returns the ServerAnswer (its `end` says how the server closed)."""
    p = RawProbe(port, timeout=timeout)
    try:
        err = p.send(records(22, hello, version=b"\x03\x01", size=record_size))
        if err:
            p.answer.end = "reset"
            return p.answer
        p.read_until(lambda a: HS_SERVER_HELLO_DONE in a.types or (HS_SERVER_HELLO in a.types and a.ccs),
                     timeout=timeout)
        if after is not None:
            after(p, p.answer)
        if p.answer.end == "open":
            p.read_to_end(timeout=timeout)
        return p.answer
    finally:
        p.close()


def full_handshake_with_hello(port, reshape, record_size=16384, request=None, timeout=20.0, rsa_kex=True):
    """A complete TLS 1.2 handshake by tlslite-ng whose ClientHello is rewritten by `reshape(hello)` just before it
    is sent (the handshake hash covers the rewritten bytes, so the server's Finished must match it), then one HTTP
    request. Returns (response bytes, the ClientHello as sent). Raises when the handshake fails.

    rsa_kex: offer TLS_RSA_WITH_AES_128_CBC_SHA (0x002f) like tlsfuzzer's scripts (the server needs an RSA
    certificate and that suite enabled); else ECDHE-ECDSA/RSA AES-GCM."""
    from schannel_client import read_until_close
    from tlslite import HandshakeSettings, TLSConnection
    from tlslite.messages import ClientHello as TLSLiteClientHello

    sent = {}

    class Conn(TLSConnection):
        def _sendMsg(self, msg, *a, **kw):
            if isinstance(msg, TLSLiteClientHello) and "hello" not in sent:
                reshape(msg)
                sent["hello"] = bytes(msg.write())
            return TLSConnection._sendMsg(self, msg, *a, **kw)

    s = HandshakeSettings()
    s.minVersion = (3, 3)
    s.maxVersion = (3, 3)
    s.useEncryptThenMAC = False
    s.usePaddingExtension = False
    s.useExtendedMasterSecret = False
    if rsa_kex:
        s.cipherNames = ["aes128"]
        s.macNames = ["sha"]
        s.keyExchangeNames = ["rsa"]
    else:
        s.cipherNames = ["aes128gcm"]
        s.keyExchangeNames = ["ecdhe_ecdsa", "ecdhe_rsa"]
        s.eccCurves = ["secp256r1", "x25519"]
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn = Conn(raw)
    conn.recordSize = record_size
    try:
        conn.handshakeClientCert(settings=s)
        conn.recordSize = 16384
        conn.write(request or b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        return read_until_close(conn), sent.get("hello")
    finally:
        try:
            conn.close()
        except Exception:
            pass
        raw.close()


ALERT_NAMES_BY_NAME = {v: k for k, v in ALERT_NAMES.items()}


def server_hello_alpn(body):
    """The protocol a ServerHello body (without the 4-byte header) selected with ALPN, or None."""
    if body is None:
        return None
    p = 2 + 32
    p += 1 + body[p] + 2 + 1
    if p + 2 > len(body):
        return None
    end = p + 2 + int.from_bytes(body[p:p + 2], "big")
    p += 2
    while p + 4 <= end:
        t = int.from_bytes(body[p:p + 2], "big")
        ln = int.from_bytes(body[p + 2:p + 4], "big")
        if t == 16:
            return bytes(body[p + 4 + 3:p + 4 + ln])
        p += 4 + ln
    return None
