"""The test-only key-material endpoint must always announce itself (issue 15, item 15).

With EDGEPROXY_TEST_ONLY_EXPOSE_TICKET_KEYS=I-understand-this-leaks-keys the admin API serves
GET /test/ticket-key-material for every ticket source (it reads the ring, whatever filled it); the warning used to be
logged only on the Redis path, so a memory- or file-keyed proxy leaked keys silently. test_redis.py covers Redis.
"""
import json
import os
import urllib.error
import urllib.request

import pytest

from conftest import write_file

HOOK = {"EDGEPROXY_TEST_ONLY_EXPOSE_TICKET_KEYS": "I-understand-this-leaks-keys"}
WARNING = "EDGEPROXY_TEST_ONLY_EXPOSE_TICKET_KEYS is set"


def _config(tmp_path, tickets):
    pol = tmp_path / "policies"
    pol.mkdir()
    return write_file(tmp_path, "edgeproxy.toml", f"""listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
workers = 1

[policies]
dir = "{pol}"

[tickets]
{tickets}
""")


def _material(proxy):
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.admin_port}/test/ticket-key-material", timeout=10) as r:
        return r.status, json.loads(r.read())


@pytest.mark.parametrize("source", ["memory", "files"])
def test_warning_whenever_the_endpoint_is_enabled(proxies, tmp_path, source):
    tickets = 'source = "memory"'
    if source == "files":
        key = tmp_path / "ticket.key"
        key.write_bytes(os.urandom(80))
        os.chmod(key, 0o600)
        tickets = f'source = "files"\nfiles = ["{key}"]'
    p = proxies(["--config", _config(tmp_path, tickets)], env=HOOK)
    status, body = _material(p)
    assert status == 200 and body, body  # the endpoint is on and serves key material ...
    assert WARNING in p.output(), p.output()  # ... so the operator must have been warned


def test_no_warning_and_no_endpoint_without_the_exact_value(proxies, tmp_path):
    p = proxies(["--config", _config(tmp_path, 'source = "memory"')],
                env={"EDGEPROXY_TEST_ONLY_EXPOSE_TICKET_KEYS": "yes"})
    with pytest.raises(urllib.error.HTTPError) as e:
        _material(p)
    assert e.value.code == 404
    assert WARNING not in p.output()
