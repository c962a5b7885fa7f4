"""256 MiB streamed each way through the proxy with its resident memory sampled during the transfer."""
import hashlib
import json
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import curl, rss_kb

SIZE = 256 * 1024 * 1024
BLOCK = bytes(range(256)) * 256  # 64 KiB: the origin's /bytes pattern
RSS_HEADROOM_KB = 64 * 1024


@pytest.fixture(scope="module")
def expected_sha():
    h = hashlib.sha256()
    for _ in range(SIZE // len(BLOCK)):
        h.update(BLOCK)
    return h.hexdigest()


class RSSSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.samples = 0
        self.stop_flag = threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                self.peak = max(self.peak, rss_kb(self.pid))
                self.samples += 1
            except OSError:
                return
            time.sleep(0.05)

    def stop(self):
        self.stop_flag.set()
        self.join(5)


@pytest.fixture
def streaming_proxy(proxies, origin):
    p = proxies(["--listen", "127.0.0.1:0", "--upstream", origin.url])
    # Warm up both paths (TLS contexts, buffers, upstream pool) before the baseline.
    assert curl(p.base + "/bytes/1048576", "-o", "/dev/null").returncode == 0
    r = subprocess.run(["curl", "-sS", "-k", "-T", "-", "-H", "Transfer-Encoding: chunked", p.base + "/upload"],
                       input=BLOCK * 16, capture_output=True, timeout=30)
    assert r.returncode == 0 and json.loads(r.stdout)["body_length"] == len(BLOCK) * 16, r
    time.sleep(0.2)
    return p, rss_kb(p.p.pid)


def test_download_256mib_bounded_memory(streaming_proxy, expected_sha):
    p, baseline = streaming_proxy
    sampler = RSSSampler(p.p.pid)
    sampler.start()
    t0 = time.time()
    c = subprocess.Popen(["curl", "-sS", "-k", "--max-time", "120", "-o", "-", p.base + f"/bytes/{SIZE}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    h = hashlib.sha256()
    n = 0
    try:
        while True:
            b = c.stdout.read(1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
        err = c.stderr.read()
        c.wait(timeout=30)
    finally:
        if c.poll() is None:
            c.kill()
            c.wait()
        sampler.stop()
    took = time.time() - t0
    assert c.returncode == 0, err
    assert n == SIZE
    assert h.hexdigest() == expected_sha
    assert sampler.samples >= 5, f"transfer too quick to sample ({took:.1f}s)"
    assert sampler.peak < baseline + RSS_HEADROOM_KB, \
        f"proxy RSS grew from {baseline} KiB to {sampler.peak} KiB while streaming {SIZE >> 20} MiB down"
    print(f"download {SIZE >> 20} MiB in {took:.1f}s, RSS {baseline} -> peak {sampler.peak} KiB")


def test_chunked_upload_256mib_bounded_memory(streaming_proxy, expected_sha):
    p, baseline = streaming_proxy
    sampler = RSSSampler(p.p.pid)
    sampler.start()
    t0 = time.time()
    errf = tempfile.TemporaryFile()
    c = subprocess.Popen(["curl", "-sS", "-k", "--max-time", "120", "-T", "-", "-H", "Transfer-Encoding: chunked",
                          p.base + "/upload"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf)
    write_error = []

    def feed():
        try:
            for _ in range(SIZE // len(BLOCK)):
                c.stdin.write(BLOCK)
            c.stdin.close()
        except BrokenPipeError as e:
            write_error.append(e)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        out = c.stdout.read()
        c.wait(timeout=30)
        errf.seek(0)
        err = errf.read()
    finally:
        if c.poll() is None:
            c.kill()
            c.wait()
        feeder.join(10)
        sampler.stop()
    took = time.time() - t0
    assert c.returncode == 0, err
    assert not write_error, write_error
    doc = json.loads(out)
    assert doc["body_length"] == SIZE
    assert doc["body_sha256"] == expected_sha
    assert sampler.samples >= 5, f"transfer too quick to sample ({took:.1f}s)"
    assert sampler.peak < baseline + RSS_HEADROOM_KB, \
        f"proxy RSS grew from {baseline} KiB to {sampler.peak} KiB while streaming {SIZE >> 20} MiB up"
    print(f"upload {SIZE >> 20} MiB in {took:.1f}s, RSS {baseline} -> peak {sampler.peak} KiB")
