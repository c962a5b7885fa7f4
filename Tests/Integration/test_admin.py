"""The admin API outside loopback (issue 16 section 2): bearer-token auth, the read-only exemption, refusing to start
without a token on a non-loopback address, and setting it all up without a config file (flags and environment).

Everything binds loopback: a token protects a loopback admin listener the same way, and the non-loopback rules are
checked where they are decided (start-up refusal and `edgeproxy check`), so nothing listens beyond this host.
"""
import os
import subprocess
import tempfile
import urllib.error
import urllib.request

import pytest

from conftest import edgeproxy_bin

TOKEN = "s3cret-admin-token-0123456789abcdef"


def token_file(text=TOKEN + "\n"):
    fd, path = tempfile.mkstemp(prefix="edgeproxy-admin-token-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def request(proxy, method, path, token=None, authorization=None):
    req = urllib.request.Request(proxy.admin + path, method=method, data=b"" if method == "POST" else None)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if authorization is not None:
        req.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def write_config(text):
    d = tempfile.mkdtemp(prefix="edgeproxy-admin-")
    path = os.path.join(d, "edgeproxy.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def run_briefly(args, env=None, timeout=20):
    full_env = dict(os.environ)
    full_env.pop("EDGEPROXY_ADMIN_TOKEN", None)
    full_env.update(env or {})
    return subprocess.run([edgeproxy_bin()] + args, capture_output=True, text=True, timeout=timeout, env=full_env)


ALL_ENDPOINTS = [("GET", "/metrics"), ("GET", "/healthz"), ("GET", "/keys"), ("POST", "/keys/rotate"),
                 ("POST", "/reload")]


def test_every_endpoint_needs_the_token_and_failures_look_alike(proxies):
    p = proxies(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--admin-token-file", token_file()])
    denied = []
    for method, path in ALL_ENDPOINTS:
        for kw in [{}, {"token": "wrong"}, {"token": TOKEN[:-1]}, {"token": TOKEN + "x"},
                   {"authorization": f"Basic {TOKEN}"}, {"authorization": TOKEN}, {"token": TOKEN.upper()}]:
            status, headers, body = request(p, method, path, **kw)
            assert status == 401, (method, path, kw, status)
            denied.append((headers.get("WWW-Authenticate"), headers.get("Content-Length"), body))
    # Missing header, other scheme, wrong token, prefix of the token: one identical answer, nothing to tell apart.
    assert len(set(denied)) == 1, set(denied)
    assert denied[0] == ('Bearer realm="edgeproxy-admin"', "13", b"unauthorized\n")
    for method, path in ALL_ENDPOINTS:
        status, _, body = request(p, method, path, token=TOKEN)
        assert status in (200, 409), (method, path, status, body)  # rotate: 409 is a valid answer per key source
    assert request(p, "GET", "/healthz", authorization=f"bearer  {TOKEN}")[0] == 200, "scheme is case-insensitive"
    status, _, body = request(p, "GET", "/metrics", token=TOKEN)
    assert b"edgeproxy_admin_unauthorized_total" in body
    assert TOKEN not in p.output(), "the token is never logged"


def test_read_only_endpoints_can_be_exempted_mutating_ones_never(proxies):
    cfg = write_config(
        'listen = "127.0.0.1:0"\nadmin = "127.0.0.1:0"\nadmin_token_env = "MY_ADMIN_TOKEN"\n'
        "admin_token_exempt_read_only = true\n"
    )
    p = proxies(["--config", cfg], env={"MY_ADMIN_TOKEN": TOKEN})
    assert request(p, "GET", "/metrics")[0] == 200
    assert request(p, "GET", "/healthz")[0] == 200
    assert request(p, "HEAD", "/healthz")[0] == 200
    for method, path in [("GET", "/keys"), ("POST", "/keys/rotate"), ("POST", "/reload")]:
        assert request(p, method, path)[0] == 401, (method, path)
        assert request(p, method, path, token="nope")[0] == 401, (method, path)
    assert request(p, "POST", "/reload", token=TOKEN)[0] == 200


def test_container_setup_without_a_config_file(proxies):
    """--admin plus EDGEPROXY_ADMIN_TOKEN: what a container needs, with no file written."""
    p = proxies(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"], env={"EDGEPROXY_ADMIN_TOKEN": TOKEN})
    assert request(p, "GET", "/healthz")[0] == 401
    assert request(p, "GET", "/healthz", token=TOKEN)[0] == 200


def test_non_loopback_admin_without_a_token_refuses_to_start():
    r = run_briefly(["--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0"])
    assert r.returncode != 0
    err = r.stdout + r.stderr
    assert "--admin: admin address 0.0.0.0:0 is not a loopback address" in err, err
    assert "bearer token" in err and "EDGEPROXY_ADMIN_TOKEN" in err, err
    # admin_allow_remote alone no longer opens it.
    cfg = write_config('admin = "0.0.0.0:9443"\nadmin_allow_remote = true\n')
    r = run_briefly(["check", "--config", cfg])
    assert r.returncode == 1 and f"{cfg}:1:1: admin address 0.0.0.0:9443 is not a loopback address" in r.stdout + r.stderr
    # With a token source it is a valid configuration.
    cfg = write_config('admin = "0.0.0.0:9443"\nadmin_token_env = "EDGEPROXY_ADMIN_TOKEN"\n')
    r = run_briefly(["check", "--config", cfg])
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("content,env,message", [
    (None, {}, "cannot open"),
    ("short\n", {}, "at least 16 characters"),
    ("has a space in the middle!!\n", {}, "printable ASCII without spaces"),
    ("", {"EDGEPROXY_ADMIN_TOKEN": "tiny"}, "at least 16 characters"),
])
def test_unusable_tokens_refuse_to_start(content, env, message):
    if env:
        args = ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
    elif content is None:
        args = ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--admin-token-file", "/nonexistent/token"]
    else:
        args = ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--admin-token-file", token_file(content)]
    r = run_briefly(args, env=env)
    assert r.returncode != 0
    assert message in r.stdout + r.stderr, r.stdout + r.stderr
    assert "tiny" not in r.stdout + r.stderr and "short" not in (r.stdout + r.stderr).replace("shorter", "")


def test_keys_status_cli_sends_the_token_from_the_environment(proxies):
    p = proxies(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"], env={"EDGEPROXY_ADMIN_TOKEN": TOKEN})
    args = ["keys", "status", "--admin", f"127.0.0.1:{p.admin_port}", "--json"]
    r = run_briefly(args)
    assert r.returncode == 1 and "401" in r.stderr, r.stderr
    r = run_briefly(args, env={"EDGEPROXY_ADMIN_TOKEN": TOKEN})
    assert r.returncode == 0 and '"source"' in r.stdout, r.stdout + r.stderr
