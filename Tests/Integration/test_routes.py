"""Pools and routes (issue 10 §2): SNI/Host/path routing to the right origin, 421/404, DNS re-resolution when an
origin "container" moves to another address, and health checks under load. Real processes on loopback only."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from conftest import HERE, Origin, Process, curl, wait_for, write_file


class BoundOrigin(Process):
    """Tests/Integration/origin.py's handler bound to a chosen loopback address and port."""

    def __init__(self, host, port=0):
        code = (f"import sys; sys.path.insert(0, {HERE!r}); import origin; "
                f"srv = origin.Server(({host!r}, {port}), origin.Handler); "
                "print('READY %d' % srv.server_address[1], flush=True); srv.serve_forever()")
        super().__init__([sys.executable, "-c", code], name=f"origin-{host}")
        try:
            self.port = int(wait_for(lambda: (re.search(r"READY (\d+)", self.output()) or [None, None])[1],
                                     what=f"origin on {host} READY"))
        except BaseException:
            self.stop()
            raise
        self.host = host


class Trap:
    """Accepts connections on an address and counts them (then closes them): proves nothing is sent there."""

    def __init__(self, host, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.times = []
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.times.append(time.time())
            c.close()

    def close(self):
        self.stopped = True
        self.thread.join(timeout=2)
        self.sock.close()


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def request(p, name, path, host=None, http="--http1.1"):
    """curl with SNI `name` (resolved to 127.0.0.1) and optionally another Host; returns (status, body)."""
    args = [http, "--resolve", f"{name}:{p.port}:127.0.0.1", "-w", "\n%{http_code}"]
    if host:
        args += ["-H", f"Host: {host}"]
    r = curl(*args, f"https://{name}:{p.port}{path}", timeout=20)
    assert r.returncode == 0, r.stderr
    body, code = r.stdout.rsplit("\n", 1)
    return int(code), body


def origin_port(body):
    return json.loads(body)["origin_port"]


# --- Two pools behind two SNI names, and a path route --------------------------------------------------------------

def test_sni_host_and_path_routes_land_on_the_right_origin(proxies, tmp_path):
    a, b, static = Origin(), Origin(), Origin()
    try:
        cfg = write_file(tmp_path, "routes.toml", f"""
admin = "127.0.0.1:0"

[upstreams.site_a]
servers = ["{a.url}"]

[upstreams.site_b]
servers = ["{b.url}"]
balance = "least-outstanding"

[upstreams.static]
servers = ["{static.url}"]

[[routes]]
sni = "a.test"
upstream = "site_a"

[[routes]]
host = ["b.test", "*.b.test"]
path_prefix = "/echo/static"
upstream = "static"

[[routes]]
host = ["b.test", "*.b.test"]
upstream = "site_b"
""")
        p = proxies(["--config", cfg, "--listen", "127.0.0.1:0"])
        for http in ("--http1.1", "--http2"):
            code, body = request(p, "a.test", "/echo", http=http)
            assert (code, origin_port(body)) == (200, a.port), http
            code, body = request(p, "b.test", "/echo/x", http=http)
            assert (code, origin_port(body)) == (200, b.port), http
            code, body = request(p, "www.b.test", "/echo/static/app.js", http=http)
            assert (code, origin_port(body)) == (200, static.port), http
            code, body = request(p, "b.test", "/echo/staticfile", http=http)
            assert (code, origin_port(body)) == (200, b.port), ("whole segments only", http)
            code, body = request(p, "b.test", "/echo/x/../static/y", http=http)
            assert (code, origin_port(body)) == (200, static.port), ("dot segments resolved", http)
            # Misdirected: the TLS connection is for a.test, the request for b.test.
            code, _ = request(p, "a.test", "/echo", host="b.test", http=http)
            assert code == 421, http
            # No route and no default pool: 404, never another site's origin.
            code, _ = request(p, "localhost", "/echo", host="c.test", http=http)
            assert code == 404, http
        before = {o.port: o.output().count("REQ ") for o in (a, b, static)}
        assert all(v > 0 for v in before.values()), before
        doc = get_json(f"{p.admin}/upstreams")
        assert [x["name"] for x in doc["pools"]] == ["site_a", "site_b", "static"]
        assert doc["pools"][1]["balance"] == "least-outstanding"
        assert doc["pools"][0]["servers"][0]["addresses"][0]["address"] == f"127.0.0.1:{a.port}"
        assert doc["pools"][0]["servers"][0]["state"] == "up"
        with urllib.request.urlopen(f"{p.admin}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        assert re.search(r'edgeproxy_upstream_addresses\{[^}]*pool="site_a"', metrics) or \
            re.search(r'edgeproxy_upstream_addresses\{[^}]*server="http://127.0.0.1:%d"' % a.port, metrics), metrics[:2000]
    finally:
        for o in (a, b, static):
            o.stop()


# --- Reload swaps pools and routes -----------------------------------------------------------------------------

def test_reload_swaps_routes_and_pools(proxies, tmp_path):
    a, b = Origin(), Origin()
    try:
        def config(target):
            return f'admin = "127.0.0.1:0"\n[upstreams.site]\nservers = ["{target.url}"]\n' \
                   '[[routes]]\nhost = "a.test"\nupstream = "site"\n'
        cfg = write_file(tmp_path, "reload.toml", config(a))
        p = proxies(["--config", cfg, "--listen", "127.0.0.1:0"])
        code, body = request(p, "a.test", "/echo")
        assert (code, origin_port(body)) == (200, a.port)
        write_file(tmp_path, "reload.toml", config(b) + '[[routes]]\nhost = "b.test"\nupstream = "site"\n')
        req = urllib.request.Request(f"{p.admin}/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
        code, body = request(p, "a.test", "/echo")
        assert (code, origin_port(body)) == (200, b.port), "the reloaded pool serves"
        code, body = request(p, "b.test", "/echo")
        assert (code, origin_port(body)) == (200, b.port), "the new route is in force"
        assert get_json(f"{p.admin}/upstreams")["pools"][0]["servers"][0]["server"] == b.url
    finally:
        a.stop()
        b.stop()


# --- The container-like restart: a host name in /etc/hosts moves to another loopback address ------------------------

HOSTS = "/etc/hosts"
NAME = "edgeproxy-moving-origin.test"


def test_origin_moving_to_another_address_is_followed_within_resolve_interval(proxies, tmp_path):
    if os.geteuid() != 0:
        pytest.fail("this test maps a name in /etc/hosts and must run as root")
    with open(HOSTS) as f:
        saved = f.read()
    old = new = trap = None
    try:
        old = BoundOrigin("127.0.0.2")
        port = old.port
        with open(HOSTS, "a") as f:
            f.write(f"\n127.0.0.2 {NAME}\n")
        cfg = write_file(tmp_path, "moving.toml", f"""
admin = "127.0.0.1:0"

[upstreams.app]
servers = ["http://{NAME}:{port}"]
resolve_interval = "1s"

[[routes]]
upstream = "app"
""")
        p = proxies(["--config", cfg, "--listen", "127.0.0.1:0"])
        for _ in range(5):
            code, _ = request(p, "localhost", "/echo")
            assert code == 200
        # The "container" is recreated with a new address; the port stays.
        old.stop()
        new = BoundOrigin("127.0.0.3", port)
        trap = Trap("127.0.0.2", port)
        with open(HOSTS, "w") as f:
            f.write(saved + f"\n127.0.0.3 {NAME}\n")
        moved_at = time.time()
        first_ok = None
        while time.time() - moved_at < 10:
            code, _ = request(p, "localhost", "/echo")
            if code == 200:
                first_ok = time.time()
                break
            time.sleep(0.05)
        assert first_ok is not None, "never reached the moved origin"
        took = first_ok - moved_at
        assert took <= 1.0 + 1.0, f"reached again after {took:.2f}s (resolve_interval 1s + 1s)"
        trap_before = len(trap.times)
        for _ in range(30):
            code, body = request(p, "localhost", "/echo")
            assert code == 200
        assert len(trap.times) == trap_before, "requests were sent to the dead address after the move"
        assert new.output().count("REQ ") >= 30
        doc = get_json(f"{p.admin}/upstreams")
        addresses = [a["address"] for a in doc["pools"][0]["servers"][0]["addresses"]]
        assert addresses == [f"127.0.0.3:{port}"], addresses
    finally:
        with open(HOSTS, "w") as f:
            f.write(saved)
        for x in (old, new):
            if x:
                x.stop()
        if trap:
            trap.close()


# --- Health: kill one of three origins under wrk -------------------------------------------------------------------

WRK_SCRIPT = """
local f = nil
function setup(thread) thread:set("id", tostring(thread)) end
function init(args) f = io.open(args[1] .. "/" .. id:gsub("[^%w]", "") .. ".txt", "a") end
function response(status, headers, body)
  if status >= 400 then f:write(string.format("%d %d\\n", os.time(), status)); f:flush() end
end
"""


def test_killed_origin_is_taken_out_and_comes_back(proxies, tmp_path):
    if not shutil.which("wrk"):
        pytest.fail("wrk is required (scripts/install-deps installs it)")
    origins = [Origin(), Origin(), Origin()]
    interval, fall, rise = 1.0, 2, 2
    try:
        servers = ", ".join(f'"{o.url}"' for o in origins)
        cfg = write_file(tmp_path, "health.toml", f"""
admin = "127.0.0.1:0"

[access_log]
path = "off"

[upstreams.app]
servers = [{servers}]

[upstreams.app.health_check]
path = "/status/200"
interval = "1s"
timeout = "500ms"
rise = {rise}
fall = {fall}

[[routes]]
upstream = "app"
""")
        p = proxies(["--config", cfg, "--listen", "127.0.0.1:0"])
        errors_dir = tmp_path / "wrk-errors"
        errors_dir.mkdir()
        script = write_file(tmp_path, "errors.lua", WRK_SCRIPT)
        wrk = subprocess.Popen(["wrk", "-t2", "-c50", "-d20s", "--timeout", "5s", "-s", script, p.base + "/ok",
                                "--", str(errors_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(4)
            victim = origins[1]
            victim_port = victim.port
            killed_at = time.time()
            victim.stop()

            def state():
                doc = get_json(f"{p.admin}/upstreams")
                for s in doc["pools"][0]["servers"]:
                    if s["server"].endswith(f":{victim_port}"):
                        return s
            down = wait_for(lambda: (s := state()) and s["state"] == "down" and s, timeout=fall * interval + 3,
                            what="the killed origin to be marked down")
            assert "health check" in down["addresses"][0]["reason"] or "ejected" in down["addresses"][0]["reason"]
            time.sleep(6)
            restarted = Process([sys.executable, os.path.join(HERE, "origin.py"), str(victim_port)], name="origin")
            origins[1] = restarted
            wait_for(lambda: "READY" in restarted.output(), what="restarted origin")
            back_from = time.time()
            wait_for(lambda: state()["state"] == "up", timeout=rise * interval + 3, what="the origin to come back")
            came_back = time.time() - back_from
            assert came_back >= (rise - 1) * interval * 0.5, f"up after {came_back:.2f}s: rise was not honoured"
            out, _ = wrk.communicate(timeout=40)
        finally:
            if wrk.poll() is None:
                wrk.kill()
                wrk.wait()
        assert "Socket errors" not in out, out
        errors = []
        for name in os.listdir(errors_dir):
            with open(errors_dir / name) as f:
                errors += [tuple(map(int, line.split())) for line in f if line.strip()]
        window_end = killed_at + fall * interval + 1  # os.time() has one-second granularity
        late = [e for e in errors if e[0] > window_end]
        assert not late, f"client-visible errors after the first fall interval: {late[:10]} (of {len(errors)})"
        print(f"wrk: {len(errors)} error responses, all within {fall * interval + 1:.0f}s of the kill; "
              f"marked down, back up after {came_back:.2f}s\n{out}")
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        assert requests > 1000, out
        assert restarted.output().count("REQ GET /ok") > 0, "the origin gets traffic again after it came back"
    finally:
        for o in origins:
            o.stop()
