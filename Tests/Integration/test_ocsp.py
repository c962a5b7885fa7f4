"""Issue #11 section 2: OCSP stapling, with real parts on loopback.

A CA made in the test (openssl CLI, ocsp_ca.py) issues leaves whose Authority Information Access names a real OCSP
responder on 127.0.0.1 (OpenSSL's `openssl ocsp` responder behind ocsp_responder.py, reading the CA's index file).
The real edgeproxy binary fetches, validates and staples; `openssl s_client -status` (TLS 1.2 and 1.3) shows what
is stapled. Covered: good → stapled; revoked → not stapled and logged; responder stopped → the last good staple is
kept until it expires, then none; `ocsp = "file:PATH"` (good, revoked, expired, another certificate's response, a
response signed by another CA) and SIGHUP picking up a new file; `ocsp = "off"`; `GET /certificates`; metrics;
configuration errors.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile

import pytest

import tls_wire as w
from conftest import edgeproxy_bin, wait_for, write_file
from ocsp_ca import Responder, TestCA


@pytest.fixture(scope="module")
def ca():
    c = TestCA()
    yield c
    c.cleanup()


@pytest.fixture
def responders():
    started = []

    def start(ca, validity=("-ndays", "1")):
        r = Responder(ca, validity)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def config(certs, workers=2):
    """A config with the admin listener and the given [[certificates]] (dicts: chain, key, ocsp)."""
    d = tempfile.mkdtemp(prefix="edgeproxy-ocsp-")
    os.makedirs(os.path.join(d, "policies"))
    tables = "".join(f'\n[[certificates]]\ncert = "{c["chain"]}"\nkey = "{c["key"]}"\n'
                     + (f'ocsp = "{c["ocsp"]}"\n' if "ocsp" in c else "") for c in certs)
    return write_file(d, "edgeproxy.toml", f'''listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
workers = {workers}
{tables}
[policies]
dir = "{os.path.join(d, 'policies')}"
''')


def staple(port, version="1.3", servername="localhost"):
    """What `openssl s_client -status` received: None (no staple) or the stapled certificate status ("good"...)."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", servername,
                        "-tls1_3" if version == "1.3" else "-tls1_2", "-status"],
                       input=b"", capture_output=True, timeout=20)
    out = p.stdout.decode("utf-8", "replace")
    assert "Verification" in out or "Cipher is" in out, f"handshake failed:\n{out}\n{p.stderr.decode()}"
    if "OCSP response: no response sent" in out:
        return None
    assert "OCSP Response Status: successful" in out, out
    return re.search(r"Cert Status: (\w+)", out).group(1)


def certificates(proxy):
    status, body = w.admin(proxy, "GET", "/certificates")
    assert status == 200, body
    return json.loads(body)["certificates"]


def ocsp_state(proxy, i=0):
    return certificates(proxy)[i]["ocsp"]


def wait_status(proxy, status, timeout=20.0, i=0):
    try:
        return wait_for(lambda: ocsp_state(proxy, i)["status"] == status and ocsp_state(proxy, i), timeout=timeout,
                        what=f"OCSP status {status}")
    except AssertionError as e:
        raise AssertionError(f"{e}; now {ocsp_state(proxy, i)}\n{proxy.output()[-3000:]}") from None


def test_auto_fetches_validates_and_staples(ca, responders, proxies):
    r = responders(ca)
    leaf = ca.issue(ocsp_url=r.url)
    p = proxies(["--config", config([leaf])])
    st = wait_status(p, "good")
    assert r.requests() >= 1
    for version in ("1.2", "1.3"):
        assert staple(p.port, version) == "good", version
    # /certificates: names, expiry, key type, staple state.
    c = certificates(p)[0]
    assert c["names"] == ["localhost", "127.0.0.1"] or "localhost" in c["names"], c
    assert c["key_type"] == "ECDSA" and re.match(r"\d{4}-\d\d-\d\dT", c["not_after"]), c
    assert st["source"] == "auto" and st["responder"] == r.url and st["stapled"] is True, st
    assert 0 <= st["staple_age_seconds"] < 120 and st["next_refresh_in_seconds"] > 0, st
    # Metrics: staple age, next refresh, validity, no failures.
    assert w.metric_sum(p, "edgeproxy_ocsp_staple_valid") == 1
    assert w.metric_sum(p, "edgeproxy_ocsp_next_refresh_seconds") > 0
    assert 0 <= w.metric_sum(p, "edgeproxy_ocsp_staple_age_seconds") < 120
    assert w.metric_sum(p, "edgeproxy_ocsp_fetch_failures_total") == 0
    # A reload with the same certificate keeps its staple (no refetch, no gap).
    asked = r.requests()
    before = p.output().count("reload complete")
    p.signal(signal.SIGHUP)
    wait_for(lambda: p.output().count("reload complete") > before, what="reload")
    assert staple(p.port) == "good" and ocsp_state(p)["this_update"] == st["this_update"]
    assert r.requests() == asked


def test_revoked_is_not_stapled_and_is_logged(ca, responders, proxies):
    r = responders(ca)
    leaf = ca.issue(ocsp_url=r.url)
    ca.revoke(leaf["serial"])
    p = proxies(["--config", config([leaf])])
    wait_status(p, "revoked")
    assert staple(p.port, "1.2") is None and staple(p.port, "1.3") is None
    p.wait_log(r"OCSP: certificate is REVOKED: not stapling")


def test_revocation_seen_at_refresh_withdraws_the_staple(ca, responders, proxies):
    """Responses valid for one minute: the refresh after 30 s finds the certificate revoked; the good staple, still
    unexpired, is withdrawn at once rather than served until its nextUpdate."""
    r = responders(ca, ("-nmin", "1"))
    leaf = ca.issue(ocsp_url=r.url)
    p = proxies(["--config", config([leaf])])
    st = wait_status(p, "good")
    assert staple(p.port) == "good"
    ca.revoke(leaf["serial"])
    now = wait_status(p, "revoked", timeout=60)
    assert now["this_update"] != st["this_update"] and now["stapled"] is False, now
    assert staple(p.port, "1.2") is None and staple(p.port, "1.3") is None
    p.wait_log(r"OCSP: certificate is REVOKED: not stapling")


def test_outage_keeps_last_good_until_expiry_then_stops(ca, responders, proxies):
    """Responses valid for one minute (`-nmin 1`): refreshed after 30 s; the responder is stopped after the first
    fetch, so the refresh fails (counted), the good staple stays until nextUpdate, and then nothing is stapled."""
    r = responders(ca, ("-nmin", "1"))
    leaf = ca.issue(ocsp_url=r.url)
    p = proxies(["--config", config([leaf])])
    st = wait_status(p, "good")
    r.stop()
    assert staple(p.port) == "good"
    # The refresh at half the window fails; the last good response is still stapled.
    wait_for(lambda: w.metric_sum(p, "edgeproxy_ocsp_fetch_failures_total") >= 1, timeout=60,
             what="a failed refresh")
    now = ocsp_state(p)
    assert now["status"] == "good" and now["next_update"] == st["next_update"], now
    assert staple(p.port, "1.2") == "good" and staple(p.port, "1.3") == "good"
    assert "keeping the last good staple until it expires" in p.output()
    # At nextUpdate it stops stapling: never an expired response.
    wait_status(p, "expired", timeout=60)
    assert staple(p.port, "1.2") is None and staple(p.port, "1.3") is None
    assert w.metric_sum(p, "edgeproxy_ocsp_staple_valid") == 0 or wait_for(
        lambda: w.metric_sum(p, "edgeproxy_ocsp_staple_valid") == 0, what="staple_valid 0")


def test_file_mode_and_reload(ca, proxies, tmp_path):
    """ocsp = "file:PATH": a good file is stapled; SIGHUP re-reads it: revoked → none; a response for another
    certificate, one signed by another CA, and an expired one are all refused (nothing stapled)."""
    leaf = ca.issue()  # no AIA: file mode needs none
    resp = str(tmp_path / "staple.der")
    ca.response_file(leaf["leaf"], resp)
    p = proxies(["--config", config([dict(leaf, ocsp=f"file:{resp}")])])
    st = wait_status(p, "good")
    assert st["source"] == f"file:{resp}" and st["next_refresh"] is None, st
    assert staple(p.port, "1.2") == "good" and staple(p.port, "1.3") == "good"

    def replace_and_reload(make, expect):
        tmp = resp + ".new"
        make(tmp)
        os.replace(tmp, resp)
        before = p.output().count("reload complete")
        p.signal(signal.SIGHUP)
        wait_for(lambda: p.output().count("reload complete") > before, what="reload")
        return wait_status(p, expect)

    ca.revoke(leaf["serial"])
    replace_and_reload(lambda f: ca.response_file(leaf["leaf"], f), "revoked")
    assert staple(p.port) is None
    other = ca.issue()
    st = replace_and_reload(lambda f: ca.response_file(other["leaf"], f), "invalid")
    assert "no matching OCSP_CERTID" in st["last_error"], st
    assert staple(p.port) is None
    foreign = TestCA("Another CA")
    try:
        foreign_leaf = foreign.issue()
        # The same serial and name would not help: the signature must chain to this certificate's issuer.
        st = replace_and_reload(lambda f: foreign.response_file(foreign_leaf["leaf"], f), "invalid")
        assert staple(p.port) is None
    finally:
        foreign.cleanup()
    fresh = ca.issue()
    p2 = proxies(["--config", config([dict(fresh, ocsp=f"file:{ca.expired_response_file(fresh['leaf'], resp)}")])])
    st = wait_status(p2, "invalid")
    assert "not valid now" in st["last_error"] or "expired" in st["last_error"], st
    assert staple(p2.port, "1.2") is None and staple(p2.port, "1.3") is None


def test_off_and_certificates_listing(ca, responders, proxies, tmp_path):
    """Two certificates for different names: one stapled (auto), one with ocsp = "off"; `/certificates` lists both
    and SNI picks the right staple."""
    r = responders(ca)
    a = ca.issue("a.test", ocsp_url=r.url, key_type="rsa")
    b = dict(ca.issue("b.test", ocsp_url=r.url), ocsp="off")
    p = proxies(["--config", config([a, b])])
    wait_status(p, "good", i=0)
    certs = certificates(p)
    assert [c["names"][0] for c in certs] == ["a.test", "b.test"], certs
    assert certs[0]["key_type"] == "RSA" and certs[1]["key_type"] == "ECDSA"
    assert certs[1]["ocsp"]["status"] == "off" and certs[1]["ocsp"]["stapled"] is False
    assert staple(p.port, servername="a.test") == "good"
    assert staple(p.port, servername="b.test") is None


def test_no_responder_url_means_no_staple(ca, proxies):
    leaf = ca.issue()
    p = proxies(["--config", config([leaf])])
    st = wait_status(p, "no_responder")
    assert st["responder"] is None
    assert staple(p.port) is None


@pytest.mark.parametrize("value,message", [
    ('"sometimes"', r'"sometimes" is not one of "auto", "off", "file:PATH"'),
    ('"file:"', r'"file:" needs a path'),
    ("true", r"expected a string"),
])
def test_config_errors(ca, tmp_path, value, message):
    leaf = ca.issue()
    conf = write_file(str(tmp_path), "e.toml", f'[[certificates]]\ncert = "{leaf["chain"]}"\nkey = "{leaf["key"]}"\n'
                                                  f"ocsp = {value}\n")
    r = subprocess.run([edgeproxy_bin(), "check", "--config", conf], capture_output=True, timeout=30)
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode != 0 and re.search(rf"{re.escape(conf)}:4:1: .*{message}", out), out


def test_unknown_certificate_key_is_an_error(ca, tmp_path):
    leaf = ca.issue()
    conf = write_file(str(tmp_path), "e.toml", f'[[certificates]]\ncert = "{leaf["chain"]}"\nkey = "{leaf["key"]}"\n'
                                                  'ocsp_url = "http://x/"\n')
    r = subprocess.run([edgeproxy_bin(), "check", "--config", conf], capture_output=True, timeout=30)
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode != 0 and f"{conf}:4:1:" in out and "ocsp_url" in out, out


def test_issuer_missing_then_added_by_reload(ca, responders, proxies, tmp_path):
    """A chain file without the issuer cannot be checked (no_issuer, nothing stapled); once the operator adds the
    issuer and reloads, the same leaf is fetched and stapled."""
    r = responders(ca)
    leaf = ca.issue(ocsp_url=r.url)
    chain = str(tmp_path / "chain.pem")
    with open(chain, "w") as f:
        f.write(open(leaf["leaf"]).read())
    p = proxies(["--config", config([dict(leaf, chain=chain)])])
    wait_status(p, "no_issuer")
    assert staple(p.port) is None
    with open(chain, "w") as f:
        f.write(open(leaf["chain"]).read())
    p.signal(signal.SIGHUP)
    wait_status(p, "good")
    assert staple(p.port) == "good"
