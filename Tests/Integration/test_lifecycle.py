"""Graceful shutdown (SIGTERM drains in-flight requests) and certificate reload (SIGHUP, POST /reload)."""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import HTTPReader, curl, tls_connect, wait_for, write_file


def test_sigterm_drains_in_flight_request(proxies, origin):
    p = proxies(["--listen", "127.0.0.1:0", "--upstream", origin.url])
    assert curl(p.base + "/ok").returncode == 0
    slow = subprocess.Popen(["curl", "-sS", "-k", "--max-time", "20", "-w", " %{http_code}", p.base + "/slow/2000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: "REQ GET /slow/2000" in origin.output(), timeout=10, what="the slow request at the origin")
        assert slow.poll() is None
        p.signal(signal.SIGTERM)

        def refused():
            try:
                socket.create_connection(("127.0.0.1", p.port), timeout=1).close()
                return False
            except ConnectionRefusedError:
                return True
            except ConnectionResetError:
                # The SYN met the listener as it closed (it was queued, or the close raced the handshake): not
                # accepted either; the next try sees the port closed.
                return False
        wait_for(refused, timeout=1.0, what="new connections to be refused after SIGTERM")
        assert slow.poll() is None, "the in-flight request ended before its origin answered"

        out, err = slow.communicate(timeout=20)
        assert slow.returncode == 0, err
        assert out == "slow ok\n 200", out
        assert p.wait(timeout=15) == 0, p.output()[-2000:]
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()


def cert_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def get(reader, sock, path="/"):
    sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: reload.test\r\n\r\n")
    return reader.response()


@pytest.mark.parametrize("trigger", ["sighup", "admin"])
def test_certificate_reload_keeps_connections(proxies, certs, tmp_path, trigger):
    crt, key = tmp_path / "cur.pem", tmp_path / "cur.key"
    shutil.copy(certs["a-ec"][0], crt)
    shutil.copy(certs["a-ec"][1], key)
    cfg = write_file(tmp_path, "edge.toml", 'listen = "127.0.0.1:0"\n\n[[certificates]]\ncert = "cur.pem"\n'
                                            'key = "cur.key"\n')
    args = ["--config", cfg]
    if trigger == "admin":
        args += ["--admin", "127.0.0.1:0"]
    p = proxies(args)

    old = tls_connect(p.port)
    try:
        assert old.getpeercert(binary_form=True) == cert_der(certs["a-ec"][0])
        rd = HTTPReader(old)
        status, headers, _ = get(rd, old)
        assert status == 200
        assert "close" not in [v.lower() for k, v in headers if k == "connection"]

        # Swap the files atomically (a reload must never see half a file).
        shutil.copy(certs["b-ec"][0], tmp_path / "new.pem")
        shutil.copy(certs["b-ec"][1], tmp_path / "new.key")
        os.replace(tmp_path / "new.key", key)
        os.replace(tmp_path / "new.pem", crt)
        mark = len(p.output())
        if trigger == "sighup":
            p.signal(signal.SIGHUP)
        else:
            r = curl("-X", "POST", p.admin + "/reload", "-w", " %{http_code}")
            assert r.stdout.endswith(" 200"), (r.stdout, r.stderr)
        p.wait_log("reload complete", after=mark)

        status, _, _ = get(rd, old)
        assert status == 200, "the connection opened before the reload stopped working"

        new = tls_connect(p.port)
        try:
            assert new.getpeercert(binary_form=True) == cert_der(certs["b-ec"][0]), "new connection: old certificate"
            status, _, _ = get(HTTPReader(new), new)
            assert status == 200
        finally:
            new.close()
        status, _, _ = get(rd, old)
        assert status == 200
    finally:
        old.close()
    assert p.alive()


def test_reload_with_broken_certificate_keeps_old(proxies, certs, tmp_path):
    crt, key = tmp_path / "cur.pem", tmp_path / "cur.key"
    shutil.copy(certs["a-ec"][0], crt)
    shutil.copy(certs["a-ec"][1], key)
    cfg = write_file(tmp_path, "edge.toml", 'listen = "127.0.0.1:0"\n\n[[certificates]]\ncert = "cur.pem"\n'
                                            'key = "cur.key"\n')
    p = proxies(["--config", cfg, "--admin", "127.0.0.1:0"])
    shutil.copy(certs["b-ec"][1], key)  # key no longer matches the certificate
    r = curl("-X", "POST", p.admin + "/reload", "-w", " %{http_code}")
    assert r.stdout.endswith(" 422"), (r.stdout, r.stderr)
    s = tls_connect(p.port)
    try:
        assert s.getpeercert(binary_form=True) == cert_der(certs["a-ec"][0])
    finally:
        s.close()
