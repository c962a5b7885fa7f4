"""Integration-test harness: builds nothing, starts real processes, always cleans up.

The `edgeproxy` binary comes from $EDGEPROXY_BIN or .build/release/edgeproxy (the test script builds it).
Ports come from the OS (port 0 / the proxy reports what it bound).
"""
import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.dirname(os.path.abspath(__file__))

# Every temporary file and directory the harness and the tests make (process logs, certificates, nginx, Redis and
# CA directories) goes under one directory per session, removed when the session passes and kept, with its path
# printed, when it fails. pytest's own tmp_path keeps its usual root (and retention), set before the switch.
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
SCRATCH = tempfile.mkdtemp(prefix="edgeproxy-it-")
tempfile.tempdir = SCRATCH


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    else:
        print(f"\nprocess logs and scratch files of this run: {SCRATCH}", file=sys.stderr)


def edgeproxy_bin():
    b = os.environ.get("EDGEPROXY_BIN") or os.path.join(ROOT, ".build", "release", "edgeproxy")
    if not os.path.exists(b):
        pytest.fail(f"edgeproxy binary not found at {b}: run `swift build -c release --product edgeproxy` first")
    return b


def wait_for(pred, timeout=20.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


class Process:
    """A child process whose output goes to a file; killed (with its group) at cleanup."""

    def __init__(self, args, env=None, cwd=None, name="proc"):
        self.log_path = tempfile.mktemp(prefix=f"{name}-", suffix=".log")
        self.log = open(self.log_path, "wb")
        self.p = subprocess.Popen(
            args, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )

    def output(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def wait(self, timeout):
        return self.p.wait(timeout=timeout)

    def stop(self):
        if self.alive():
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.log.close()


class Origin(Process):
    """A Python origin from this directory (`origin.py`, or another script printing "READY <port>")."""

    def __init__(self, script="origin.py", name="origin"):
        super().__init__([sys.executable, os.path.join(HERE, script)], name=name)
        try:
            self.port = int(wait_for(lambda: (re.search(r"READY (\d+)", self.output()) or [None, None])[1],
                                     what="origin READY"))
        except BaseException:
            self.stop()
            raise

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"


class Proxy(Process):
    """The real edgeproxy binary. Finds its bound ports from its log lines."""

    def __init__(self, args, cwd=None, env=None):
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        super().__init__([edgeproxy_bin()] + args, cwd=cwd or ROOT, env=full_env, name="edgeproxy")
        try:
            wait_for(lambda: (not self.alive()) or re.search(r"edgeproxy listening", self.output()),
                     what="edgeproxy to listen")
            if not self.alive():
                raise AssertionError("edgeproxy exited at start:\n" + self.output())
            line = next(l for l in self.output().splitlines() if "edgeproxy listening" in l)
            m = re.search(r"address=\S*?:(\d+)", line)
            self.port = int(m.group(1))
            m = re.search(r"admin=\S*?:(\d+)", line)
            self.admin_port = int(m.group(1)) if m else None
        except BaseException:
            self.stop()
            raise

    def wait_log(self, pattern, timeout=10.0, after=0):
        """Waits for `pattern` (regex) in the log beyond character offset `after`; returns the match."""
        return wait_for(lambda: re.search(pattern, self.output()[after:]), timeout=timeout,
                        what=f"log line matching {pattern!r}")

    @property
    def admin(self):
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def base(self):
        return f"https://127.0.0.1:{self.port}"


@pytest.fixture
def origin():
    o = Origin()
    yield o
    o.stop()


@pytest.fixture
def proxies():
    started = []

    def start(args, **kw):
        p = Proxy(args, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture(scope="session")
def certs():
    """Test-time certificates: an ECDSA and an RSA cert for a.test, and an ECDSA cert for b.test."""
    d = tempfile.mkdtemp(prefix="edgeproxy-certs-")

    def run(*a):
        subprocess.run(a, check=True, capture_output=True)

    out = {}
    for name, alg in [("a-ec", "ec"), ("a-rsa", "rsa"), ("b-ec", "ec")]:
        host = "a.test" if name.startswith("a") else "b.test"
        key = os.path.join(d, f"{name}.key")
        crt = os.path.join(d, f"{name}.pem")
        if alg == "ec":
            run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
        else:
            run("openssl", "genrsa", "-out", key, "2048")
        run("openssl", "req", "-new", "-x509", "-key", key, "-out", crt, "-days", "2", "-subj", f"/CN={host}",
            "-addext", f"subjectAltName=DNS:{host},DNS:localhost,IP:127.0.0.1")
        out[name] = (crt, key)
    yield out
    shutil.rmtree(d, ignore_errors=True)


def curl(*args, timeout=60):
    """Runs curl; returns CompletedProcess (text)."""
    return subprocess.run(["curl", "-sS", "-k", "--max-time", str(timeout)] + list(args),
                          capture_output=True, text=True, timeout=timeout + 10)


def tls_connect(port, server_name="localhost", alpn=None, version=None):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if version:
        ctx.minimum_version = version
        ctx.maximum_version = version
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=server_name)


def read_response(sock, limit=1 << 24):
    """Reads until the peer closes; returns bytes (raises on reset)."""
    chunks = []
    total = 0
    while total < limit:
        try:
            b = sock.recv(65536)
        except (ssl.SSLZeroReturnError,):
            break
        if not b:
            break
        chunks.append(b)
        total += len(b)
    return b"".join(chunks)


def rss_kb(pid):
    total = 0
    for p in [pid]:
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def dead_port():
    """A loopback port with nothing listening on it (bound by the OS, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def admin(proxy, method, path):
    """One request to the proxy's admin listener: (status, body text), whatever the status."""
    c = http.client.HTTPConnection("127.0.0.1", proxy.admin_port, timeout=10)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def write_file(directory, name, text):
    path = os.path.join(str(directory), name)
    with open(path, "w") as f:
        f.write(text)
    return path


class HTTPReader:
    """Reads HTTP/1.1 responses one at a time from a (TLS) socket, keeping leftover bytes for the next."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self):
        try:
            b = self.sock.recv(65536)
        except ssl.SSLZeroReturnError:
            b = b""
        if not b:
            self.eof = True
        self.buf += b
        return bool(b)

    def _line(self):
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError("connection closed before end of line; have %r" % self.buf[:200])
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed with {len(self.buf)} of {n} body bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, head_request=False):
        """Returns (status, headers as list of (lower-name, value), body)."""
        status_line = self._line().decode("latin-1")
        status = int(status_line.split(" ")[1])
        headers = []
        while True:
            line = self._line()
            if not line:
                break
            k, v = line.decode("latin-1").split(":", 1)
            headers.append((k.strip().lower(), v.strip()))
        h = dict(headers)
        if head_request or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in h.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exact(size)
                self._line()
        elif "content-length" in h:
            body = self._exact(int(h["content-length"]))
        else:
            while self._fill():
                pass
            body, self.buf = self.buf, b""
        return status, headers, body

    def drain_to_eof(self, timeout=5.0):
        """Reads until the peer closes or `timeout` passes with nothing more. Returns (leftover bytes, closed)."""
        self.sock.settimeout(timeout)
        try:
            while not self.eof:
                self._fill()
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError) as e:
            if isinstance(e, socket.timeout):
                rest, self.buf = self.buf, b""
                return rest, False
            self.eof = True
        rest, self.buf = self.buf, b""
        return rest, True

    def at_eof(self, timeout=5.0):
        """True when the peer closes (clean close or reset) with no further bytes."""
        rest, closed = self.drain_to_eof(timeout)
        return closed and not rest
