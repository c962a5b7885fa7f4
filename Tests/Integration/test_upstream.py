"""Origin failures (death before headers / mid-body, refused, slow) and round-robin across origins."""
import json
import time

from conftest import Origin, curl, dead_port, write_file


def status_of(url, *extra, timeout=30):
    r = curl("-o", "/dev/null", "-w", "%{http_code}", *extra, url, timeout=timeout)
    return r


def test_origin_dies_before_headers_502(proxies, origin):
    p = proxies(["--listen", "127.0.0.1:0", "--upstream", origin.url])
    r = status_of(p.base + "/die-before-headers")
    assert r.stdout == "502", (r.stdout, r.stderr)
    # The proxy itself is fine afterwards.
    r = status_of(p.base + "/ok")
    assert r.stdout == "200"


def test_origin_dies_mid_body_is_an_abort(proxies, origin):
    p = proxies(["--listen", "127.0.0.1:0", "--upstream", origin.url])
    n = 1_000_000
    # HTTP/1.1: the abort is a TCP reset (over h2 it is RST_STREAM, see test_http2.py).
    r = curl("--http1.1", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", p.base + f"/die-mid-body/{n}")
    assert r.returncode in (18, 56), f"curl exit {r.returncode} (a clean end is a bug): {r.stdout} {r.stderr}"
    code, size = r.stdout.split()
    assert code == "200"
    assert int(size) < n
    r = status_of(p.base + "/ok")
    assert r.stdout == "200"


def test_refused_upstream_is_skipped(proxies, origin):
    dead = dead_port()
    p = proxies(["--listen", "127.0.0.1:0", "--upstream", f"http://127.0.0.1:{dead}", "--upstream", origin.url])
    for i in range(6):
        r = curl("-w", " %{http_code}", p.base + "/echo")
        assert r.returncode == 0, r.stderr
        body, code = r.stdout.rsplit(" ", 1)
        assert code == "200", (i, r.stdout)
        assert json.loads(body)["origin_port"] == origin.port


def test_only_dead_upstream_502(proxies):
    p = proxies(["--listen", "127.0.0.1:0", "--upstream", f"http://127.0.0.1:{dead_port()}"])
    for _ in range(2):
        r = status_of(p.base + "/")
        assert r.stdout == "502", (r.stdout, r.stderr)


def test_upstream_read_timeout_504(proxies, origin, tmp_path):
    cfg = write_file(tmp_path, "t.toml", f'upstreams = ["{origin.url}"]\n\n[timeouts]\nupstream_read = "1s"\n')
    p = proxies(["--config", cfg, "--listen", "127.0.0.1:0"])
    t0 = time.time()
    r = status_of(p.base + "/slow/3000", timeout=6)
    took = time.time() - t0
    assert r.stdout == "504", (r.stdout, r.stderr, f"after {took:.1f}s")
    assert 0.9 <= took < 2.8, took
    # A response inside the timeout is fine.
    r = status_of(p.base + "/slow/200")
    assert r.stdout == "200"


def test_connect_timeout_does_not_cut_a_slow_response(proxies, origin, tmp_path):
    """The (short) connect timeout bounds only the connect; waiting for the response is under upstream_read."""
    cfg = write_file(tmp_path, "t.toml", f'upstreams = ["{origin.url}"]\n\n[timeouts]\n'
                     'upstream_connect = "1s"\nupstream_read = "10s"\n')
    p = proxies(["--config", cfg, "--listen", "127.0.0.1:0"])
    r = status_of(p.base + "/slow/2500", timeout=8)
    assert r.stdout == "200", (r.stdout, r.stderr)


def test_round_robin_two_origins(proxies, origin):
    other = Origin()
    try:
        p = proxies(["--listen", "127.0.0.1:0", "--upstream", origin.url, "--upstream", other.url])
        seen = []
        for _ in range(6):
            r = curl(p.base + "/echo")
            assert r.returncode == 0, r.stderr
            seen.append(json.loads(r.stdout)["origin_port"])
        assert set(seen) == {origin.port, other.port}, seen
        assert min(seen.count(origin.port), seen.count(other.port)) >= 2, seen
    finally:
        other.stop()
