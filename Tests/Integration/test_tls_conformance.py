"""TLS conformance job (issue 15, items 10-12): the probes of the tlsfuzzer scripts the issue names, written with
tlslite-ng and run side by side against EdgeProxy and nginx 1.22 (the same OpenSSL 3.0 underneath).

tlsfuzzer itself is not on PyPI and cannot be fetched in CI, so each probe here rebuilds one tlsfuzzer case from its
script (named in the test's docstring): the same ClientHello shape, the same expectation (ExpectServerHello... or
ExpectAlert(fatal, X) followed by ExpectClose). tlsfuzzer's ExpectClose wants a normal close: the probes check
that the connection ends with a FIN (`end == "eof"`), not a TCP reset, and that a client still writing after the
alert is not reset either (item 10). nginx closes without lingering after a failed handshake, so bytes a client
sends right after the alert can turn its FIN into an RST under load; against nginx those bytes wait for its FIN
(`lingers()`), against EdgeProxy they are sent at once.

Servers, configured the way tlsfuzzer's scripts assume (they offer TLS_RSA_WITH_AES_128_CBC_SHA, 0x002f, and no
signature_algorithms extension, so TLS 1.2's default SHA-1 signature applies, which OpenSSL 3.0 refuses at its
default security level 1; both servers therefore run at level 0):
* `edgeproxy`: an RSA certificate, the default cipher list plus AES128-SHA, and `min_version = "1.0"` (what lowers
  EdgeProxy to security level 0); `nginx`: the same RSA certificate, `ssl_ciphers HIGH:!aNULL:!MD5:@SECLEVEL=0`
  (nginx's default list at level 0).
* `edgeproxy-defaults` / `nginx-ecdsa`: an ECDSA certificate and each server's defaults, for the probes about what
  the default configuration refuses (a hello offering only 0x002f).

OCSP stapling (test-ocsp-stapling.py) runs against its own pair: a leaf issued by a CA made in the test, stapled
from a file on both (EdgeProxy `ocsp = "file:..."`, nginx `ssl_stapling on; ssl_stapling_file ...`), with the
fuzzer TLS settings above. The expected failure that nginx shares is at the end, marked xfail(strict=True) for both
servers, so it starts failing the suite the day it passes: record_size_limit (test-record-size-limit.py; OpenSSL 3.0
does not implement RFC 8449).
"""
import os
import socket
import subprocess
import tempfile
import time

import pytest
from tlslite.extensions import (ALPNExtension, ClientKeyShareExtension, PaddingExtension, SNIExtension,
                                SupportedVersionsExtension, TLSExtension)
from tlslite.messages import KeyShareEntry

import tls_wire as w
from conftest import Proxy, wait_for, write_file

RSA_AES128_SHA = 0x002F
EMPTY_RENEGOTIATION_INFO_SCSV = 0x00FF
FUZZER_CIPHERS = [RSA_AES128_SHA, EMPTY_RENEGOTIATION_INFO_SCSV]
EXT_RENEGOTIATION_INFO = 0xFF01
EXT_ALPN = 16

DEFAULT_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                   "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")

FUZZER_TLS = f'min_version = "1.0"\nciphers = "{DEFAULT_CIPHERS}:AES128-SHA"'


# -- servers ---------------------------------------------------------------------------------------------------------
def _edgeproxy(cert, key, tls_extra="", cert_extra=""):
    d = tempfile.mkdtemp(prefix="edgeproxy-conformance-")
    os.makedirs(os.path.join(d, "policies"))
    conf = write_file(d, "edgeproxy.toml", f"""listen = "127.0.0.1:0"
workers = 1

[[certificates]]
cert = "{cert}"
key = "{key}"
{cert_extra}

[tls]
{tls_extra}

[timeouts]
handshake = "5s"

[policies]
dir = "{os.path.join(d, 'policies')}"
""")
    return Proxy(["--config", conf])


class _Server:
    def __init__(self, name, port, stop, proc=None):
        self.name = name
        self.port = port
        self.stop = stop
        self.proc = proc

    def __repr__(self):
        return self.name


@pytest.fixture(scope="module")
def servers(certs):
    """All four servers, started once for the module; stopped at the end (also on failure)."""
    rsa_cert, rsa_key = certs["a-rsa"]
    ec_cert, ec_key = certs["a-ec"]
    started = {}
    try:
        p = _edgeproxy(rsa_cert, rsa_key, FUZZER_TLS)
        started["edgeproxy"] = _Server("edgeproxy", p.port, p.stop, p)
        n = w.Nginx(rsa_cert, rsa_key, [], ciphers="HIGH:!aNULL:!MD5:@SECLEVEL=0")
        started["nginx"] = _Server("nginx", n.port, n.stop)
        p = _edgeproxy(ec_cert, ec_key)
        started["edgeproxy-defaults"] = _Server("edgeproxy-defaults", p.port, p.stop, p)
        n = w.Nginx(ec_cert, ec_key, [])
        started["nginx-ecdsa"] = _Server("nginx-ecdsa", n.port, n.stop)
        yield started
    finally:
        for s in started.values():
            s.stop()


@pytest.fixture(params=["edgeproxy", "nginx"])
def server(request, servers):
    """The tlsfuzzer-style pair: every probe runs against both."""
    return servers[request.param]


@pytest.fixture(params=["edgeproxy-defaults", "nginx-ecdsa"])
def default_server(request, servers):
    """Each server with its default TLS settings (ECDSA certificate)."""
    return servers[request.param]


# -- helpers ---------------------------------------------------------------------------------------------------------
def fuzzer_hello(extensions=(), ciphers=FUZZER_CIPHERS, **kw):
    """tlsfuzzer's ClientHelloGenerator(ciphers, extensions=...) for TLS 1.2: no other extension."""
    return w.build_client_hello(ciphers, extensions, **kw)


def assert_alert_then_clean_close(answer, alert, server):
    """tlsfuzzer's ExpectAlert(fatal, alert) + ExpectClose: the alert, then a FIN (never a reset)."""
    assert answer.alert == (2, w.ALERT_NAMES_BY_NAME[alert]), f"{server}: {answer}"
    assert answer.end == "eof", f"{server}: the connection must end with a FIN after the alert, got {answer}"


def lingers(server):
    """nginx does not linger after a failed handshake (it close()s right after the alert): bytes the client sends
    before that close() arrive unread and turn its FIN into an RST. So against nginx the "still writing" bytes are
    sent only once its FIN is in, and the strict race (bytes sent at once after the alert) is checked on EdgeProxy,
    whose lingering close makes it safe (issue 15, item 10)."""
    return server.name.startswith("edgeproxy")


def alert_probe(server, hello, still_writing=True, **kw):
    """Sends `hello`, reads the first flight or alert; when `still_writing`, the client then keeps sending (the next
    record of its flight) as a client that has not read the alert yet would. Returns (answer, send error)."""
    errors = []

    def after(p, answer):
        if still_writing and answer.alert is not None:
            if not lingers(server):
                p.read_to_end(timeout=5)
            errors.append(p.send(w.records(20, b"\x01") + w.records(22, b"\x14\x00\x00\x0c" + os.urandom(12))))

    answer = w.probe_hello(server.port, hello, after=after, **kw)
    return answer, (errors[0] if errors else None)


def served_ok(response):
    return response.startswith(b"HTTP/1.1 200") or response.startswith(b"HTTP/1.0 200")


# -- item 10: a fatal alert, then a normal close ----------------------------------------------------------------------
def test_skip_client_key_exchange_alert_then_close(server):
    """tlsfuzzer test-message-skipping.py, "skip Client Key Exchange": ClientHello(0x002f), ExpectServerHello,
    ExpectCertificate, ExpectServerHelloDone, then ChangeCipherSpec and Finished without a ClientKeyExchange →
    ExpectAlert(fatal, unexpected_message), ExpectClose. The client writes its Finished after the server has already
    alerted (tlsfuzzer sends it blindly): it must not be reset, and must read the alert and a FIN."""
    p = w.RawProbe(server.port)
    try:
        assert p.send(w.records(22, fuzzer_hello(), version=b"\x03\x01")) is None
        a = p.read_until(lambda a: w.HS_SERVER_HELLO_DONE in a.types)
        assert a.types == [2, 11, 14], f"{server}: {a}"
        assert p.send(w.records(20, b"\x01")) is None
        # Wait until the alert has arrived: from here on the client is "still writing" after the server gave up.
        a = p.read_until(lambda a: False, timeout=5)
        assert a.alert == (2, 10), f"{server}: {a}"
        if not lingers(server):
            p.read_to_end(timeout=5)
        finished = w.records(22, b"\x14\x00\x00\x0c" + os.urandom(12))
        assert p.send(finished) is None, f"{server}: the client was reset while sending its Finished"
        a = p.read_to_end(timeout=5)
        assert a.end == "eof", f"{server}: expected a FIN after the alert, got {a}"
    finally:
        p.close()


def test_only_rsa_aes128_sha_with_defaults_alert_then_close(default_server):
    """The sanity hello of every tlsfuzzer script (ciphers [TLS_RSA_WITH_AES_128_CBC_SHA, SCSV]) against the default
    configuration, which offers no such suite: ExpectAlert(fatal, handshake_failure), ExpectClose."""
    answer, send_error = alert_probe(default_server, fuzzer_hello())
    assert_alert_then_clean_close(answer, "handshake_failure", default_server)
    assert send_error is None, f"{default_server}: a client still writing after the alert was reset"


def _tls13_hello(extra):
    exts = w.tls12_ecdhe_extensions() + [SupportedVersionsExtension().create([(3, 4)])] + list(extra)
    return w.build_client_hello([0x1301, 0x1302], exts, session_id=os.urandom(32))


def _share():
    return KeyShareEntry().create(29, bytearray(os.urandom(32)))


REJECTED_HELLOS = {
    # RFC 8446 4.2: an extension type appears at most once; OpenSSL answers illegal_parameter.
    "duplicate key_share extension": (lambda: _tls13_hello([ClientKeyShareExtension().create([_share()]),
                                                            ClientKeyShareExtension().create([_share()])]),
                                      "illegal_parameter"),
    # test-alpn-negotiation.py "empty element": a zero-length protocol name.
    "zero-length ALPN protocol name": (lambda: fuzzer_hello([ALPNExtension().create([bytearray(b"")])]),
                                       "decode_error"),
    # RFC 6066 3: a host name longer than 255 bytes is refused with unrecognized_name by OpenSSL.
    "60 KB server name": (lambda: fuzzer_hello([SNIExtension().create(bytearray(b"a" * 60000))]),
                          "unrecognized_name"),
}


@pytest.mark.parametrize("case", sorted(REJECTED_HELLOS))
def test_rejected_hello_gets_alert_then_close(server, case):
    """The hellos issue 15 found refused without a readable alert: each gets its alert, then a FIN, and a client
    that keeps writing is not reset."""
    build, alert = REJECTED_HELLOS[case]
    answer, send_error = alert_probe(server, build())
    assert_alert_then_clean_close(answer, alert, server)
    assert send_error is None, f"{server}: a client still writing after the alert was reset"


def test_handshake_timeout_closes_without_reset(servers):
    """A client that sends half a ClientHello and stops: at the handshake timeout (5 s here) the proxy closes with a
    FIN, not a reset."""
    s = servers["edgeproxy"]
    hello = w.records(22, fuzzer_hello(), version=b"\x03\x01")
    p = w.RawProbe(s.port, timeout=15)
    try:
        assert p.send(hello[:20]) is None
        a = p.read_to_end(timeout=12)
        assert a.end == "eof", a
        assert a.alert is None and not a.handshake, a
    finally:
        p.close()


def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_lingering_after_alert_is_bounded_and_idle(servers):
    """The lingering close behind the FIN (nginx's lingering_close): a client that neither closes nor stops after
    the alert keeps the proxy's socket open for at most 5 s (ClientConnection.lingerNanos), the proxy does not spin
    meanwhile, and once the socket is gone the client's next bytes draw a reset (the bounded "abuse" case)."""
    s = servers["edgeproxy-defaults"]
    pid = s.proc.p.pid
    baseline = len(os.listdir(f"/proc/{pid}/fd"))
    p = w.RawProbe(s.port)
    try:
        assert p.send(w.records(22, fuzzer_hello(), version=b"\x03\x01")) is None
        a = p.read_until(lambda a: False, timeout=5)
        assert a.alert == (2, 40), a
        cpu0 = _cpu_seconds(pid)
        assert len(os.listdir(f"/proc/{pid}/fd")) == baseline + 1  # lingering: the socket is still open
        assert p.send(b"\x17\x03\x03\x00\x05hello") is None  # read and discarded, no reset
        wait_for(lambda: len(os.listdir(f"/proc/{pid}/fd")) == baseline, timeout=8, what="the lingering socket to close")
        assert _cpu_seconds(pid) - cpu0 < 0.5, "the proxy spun while lingering"
        # The first bytes reach a closed socket and draw an RST; a later send then fails with EPIPE/ECONNRESET.
        wait_for(lambda: p.send(b"\x17\x03\x03\x00\x01x") is not None, timeout=5, what="a reset")
    finally:
        p.close()


# -- item 11: ALPN (test-alpn-negotiation.py) -------------------------------------------------------------------------
ALPN_SELECTED = {
    "only http/1.1": [b"http/1.1"],
    "http/1. and http/1.1": [b"http/1.", b"http/1.1"],
}
ALPN_REJECTED = {
    "only http/1.": ([b"http/1."], "no_application_protocol"),
    "only http/1.X": ([b"http/1.X"], "no_application_protocol"),
    "empty element": ([b""], "decode_error"),
    "empty list": ([], "decode_error"),
}


@pytest.mark.parametrize("case", sorted(ALPN_SELECTED))
def test_alpn_selected(server, case):
    """test-alpn-negotiation.py, the named case: ExpectServerHello with ALPN "http/1.1"."""
    a = w.probe_hello(server.port, fuzzer_hello([ALPNExtension().create([bytearray(p) for p in ALPN_SELECTED[case]])]),
                      timeout=5)
    assert a.types[:1] == [2], f"{server}: {a}"
    assert w.server_hello_alpn(a.message(2)) == b"http/1.1", f"{server}: {a}"


@pytest.mark.parametrize("case", sorted(ALPN_REJECTED))
def test_alpn_rejected(server, case):
    """test-alpn-negotiation.py, the named case: ExpectAlert(fatal, X), ExpectClose. "only http/1." and
    "only http/1.X" are RFC 7301 3.2's no_application_protocol (issue 15, item 11)."""
    names, alert = ALPN_REJECTED[case]
    a = w.probe_hello(server.port, fuzzer_hello([ALPNExtension().create([bytearray(p) for p in names])]), timeout=5)
    assert_alert_then_clean_close(a, alert, server)


def test_alpn_empty_extension(server):
    """test-alpn-negotiation.py "empty extension": an ALPN extension with no body → decode_error, ExpectClose."""
    a = w.probe_hello(server.port, fuzzer_hello([TLSExtension(extType=EXT_ALPN).create(bytearray())]), timeout=5)
    assert_alert_then_clean_close(a, "decode_error", server)


def test_alpn_lenient_setting(certs):
    """`[tls] alpn_strict = false`: no common protocol → the handshake continues without ALPN (no extension in the
    ServerHello), the pre-RFC-7301-§3.2 behaviour some deployments may need."""
    cert, key = certs["a-rsa"]
    p = _edgeproxy(cert, key, FUZZER_TLS + "\nalpn_strict = false")
    try:
        a = w.probe_hello(p.port, fuzzer_hello([ALPNExtension().create([bytearray(b"http/1.X")])]), timeout=5)
        assert a.alert is None and a.types[:1] == [2], a
        assert w.server_hello_alpn(a.message(2)) is None, a
    finally:
        p.stop()


# -- item 12: hellos over 64 KiB -------------------------------------------------------------------------------------
def _reshape(ciphers=None, extensions=None, session_id=None, compression=None):
    """A `reshape` for `full_handshake_with_hello`: tlsfuzzer's ClientHelloGenerator fields."""

    def apply(hello):
        if ciphers is not None:
            hello.cipher_suites = list(ciphers)
        if extensions is not None:
            hello.extensions = list(extensions)
        if session_id is not None:
            hello.session_id = bytearray(session_id)
        if compression is not None:
            hello.compression_methods = list(compression)

    return apply


def _complete(server, reshape, record_size=16384, min_hello=0):
    response, sent = w.full_handshake_with_hello(server.port, reshape, record_size=record_size)
    assert sent is not None and len(sent) >= min_hello, f"{server}: hello of {len(sent or b'')} bytes"
    assert served_ok(response), f"{server}: {response[:200]!r}"
    return sent


def test_client_hello_max_size(server):
    """tlsfuzzer test-client-hello-max-size.py, "max client hello": 32,767 cipher suites, a 32-byte session ID, 255
    compression methods and an ALPN list of 255×255 + 239 + "http/1.1" bytes (~131 KB, OpenSSL's largest
    ClientHello): a complete handshake, ALPN http/1.1, an HTTP response."""
    ciphers = list(range(93, 96)) + list(range(110, 132)) + list(range(198, 255)) + list(range(255, 22016))
    ciphers += list(range(22017, 32939)) + FUZZER_CIPHERS
    assert len(ciphers) == 32767
    names = [bytearray(b"A" * 255)] * 255 + [bytearray(b"B" * 239), bytearray(b"http/1.1")]
    sent = _complete(server, _reshape(ciphers, [ALPNExtension().create(names)], bytes(32), range(0, 255)),
                     min_hello=131000)
    assert len(sent) > 65536


@pytest.mark.parametrize("size", [0xFFD0, 0xFFFF - 5])
def test_large_hello_padding(server, size):
    """tlsfuzzer test-large-hello.py, "ext padding, N bytes" (range 0xff00..0xfffb): a padding extension that makes the
    hello larger than 64 KiB (from 0xffcc bytes on), over 5 records."""
    _complete(server, _reshape(FUZZER_CIPHERS, [PaddingExtension().create(size)]), min_hello=65536)


def test_large_hello_huge(server):
    """tlsfuzzer test-large-hello.py, "huge hello": 32,765 cipher suites and one 65,531-byte extension #80."""
    i = 0xFFFE // 2 - 2
    ciphers = list(range(0x0100, 0x5600)) + list(range(0x5601, 0x5601 + i - (0x5600 - 0x0100)))
    ciphers += [EMPTY_RENEGOTIATION_INFO_SCSV, RSA_AES128_SHA]
    _complete(server, _reshape(ciphers, [TLSExtension(extType=80).create(bytearray(0xFFFF - 4))]), min_hello=131000)


def test_16383_extensions(server):
    """tlsfuzzer test-extensions.py, "16383 extensions": 16,382 empty extensions of types 90.. and
    renegotiation_info (a 65,533-byte extensions block), ExpectServerHello with renegotiation_info."""
    exts = [TLSExtension(extType=t).create(bytearray()) for t in range(90, 90 + 16383 - 1)]
    exts.append(TLSExtension(extType=EXT_RENEGOTIATION_INFO).create(bytearray(b"\x00")))
    _complete(server, _reshape([RSA_AES128_SHA], exts), min_hello=65536)


def test_32760_signature_algorithms(server):
    """tlsfuzzer test-signature-algorithms.py, its case with 32,760 signature methods (the most the extension holds
    next to one supported group): ECDHE_RSA, 32,759 unassigned schemes followed by rsa_pkcs1_sha256, which the
    server must find and sign its ServerKeyExchange with; the hello is over 64 KiB."""
    from tlslite.extensions import SignatureAlgorithmsExtension, SupportedGroupsExtension
    algs = [(0x09 + i // 256 % 0x60, i % 256) for i in range(32759)] + [(4, 1)]
    exts = [SignatureAlgorithmsExtension().create(algs), SupportedGroupsExtension().create([23])]
    response, sent = w.full_handshake_with_hello(server.port, _reshape([0xC02F], exts), rsa_kex=False)
    assert len(sent) > 65536
    assert served_ok(response), f"{server}: {response[:200]!r}"


@pytest.mark.parametrize("ext_len,record_len", [
    (2 ** 16 - 5, 16384),  # "maximum size: max fragment - 65531B extension"
    (2 ** 15, 16384),  # "big, needs fragmentation: max fragment - 32768B extension"
    (1024, 1),  # "medium, maximum fragmentation: 1 fragment - 1024B extension"
])
def test_record_layer_fragmentation(server, ext_len, record_len):
    """tlsfuzzer test-record-layer-fragmentation.py, the case in the comment: extension #21 of `ext_len` bytes, the
    hello cut into records of `record_len` bytes; a complete handshake."""
    _complete(server, _reshape(FUZZER_CIPHERS, [TLSExtension(extType=21).create(bytearray(ext_len))]),
              record_size=record_len)


def test_record_over_plaintext_limit_rejected(server):
    """tlsfuzzer test-record-layer-fragmentation.py, "non fragmented, over fragmentation limit: 65535 fragment -
    16332B extension": one record over 2^14 bytes → ExpectAlert (record_overflow), ExpectClose."""
    hello = fuzzer_hello([TLSExtension(extType=21).create(bytearray(2 ** 14 - 52))])
    answer, _ = alert_probe(server, hello, still_writing=False, record_size=2 ** 16 - 1)
    assert_alert_then_clean_close(answer, "record_overflow", server)


def test_sanity_after_probes(server):
    """Every tlsfuzzer script runs "sanity" first and last: the server still completes a plain handshake."""
    _complete(server, _reshape(FUZZER_CIPHERS, []))


# -- OCSP stapling ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stapling_servers():
    """EdgeProxy and nginx with the same CA-issued RSA leaf and the same OCSP response file (made by `openssl ocsp`
    for that leaf), the fuzzer TLS settings otherwise."""
    from ocsp_ca import TestCA
    ca = TestCA()
    started = {}
    try:
        leaf = ca.issue(key_type="rsa")
        resp = ca.response_file(leaf["leaf"], os.path.join(ca.dir, "staple.der"))
        p = _edgeproxy(leaf["chain"], leaf["key"], FUZZER_TLS, cert_extra=f'ocsp = "file:{resp}"')
        p.wait_log(r"OCSP: stapling a good response")  # read by the stapler thread right after start
        started["edgeproxy"] = _Server("edgeproxy", p.port, p.stop, p)
        n = w.Nginx(leaf["chain"], leaf["key"], [], ciphers="HIGH:!aNULL:!MD5:@SECLEVEL=0",
                    extra=f"        ssl_stapling on;\n        ssl_stapling_file {resp};")
        started["nginx"] = _Server("nginx", n.port, n.stop)
        yield started
    finally:
        for s in started.values():
            s.stop()
        ca.cleanup()


@pytest.mark.parametrize("name", ["edgeproxy", "nginx"])
def test_ocsp_stapling(stapling_servers, name):
    """tlsfuzzer test-ocsp-stapling.py, "sanity": status_request → ExpectServerHello with status_request,
    ExpectCertificate, ExpectCertificateStatus. Both servers staple the same file."""
    server = stapling_servers[name]
    status_request = TLSExtension(extType=5).create(bytearray(b"\x01\x00\x00\x00\x00"))
    a = w.probe_hello(server.port, fuzzer_hello([status_request]), timeout=5)
    assert 22 in a.types, f"{server}: no CertificateStatus: {a}"
    assert a.types.index(11) < a.types.index(22) < a.types.index(14), f"{server}: {a}"


def test_no_certificate_status_without_status_request(stapling_servers):
    """tlsfuzzer test-ocsp-stapling.py's counterpart: a hello without status_request gets no CertificateStatus
    (RFC 6066 §8: only in response to the extension)."""
    for server in stapling_servers.values():
        a = w.probe_hello(server.port, fuzzer_hello([]), timeout=5)
        assert 11 in a.types and 22 not in a.types, f"{server}: {a}"


# -- expected failures shared with nginx -------------------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="record_size_limit (RFC 8449) is not implemented by OpenSSL 3.0, so neither "
                                       "EdgeProxy nor nginx acknowledges it")
def test_record_size_limit(server):
    """tlsfuzzer test-record-size-limit.py, "check if server accepts maximum size in TLS 1.2": record_size_limit
    16385 → ExpectServerHello with record_size_limit."""
    rsl = TLSExtension(extType=28).create(bytearray((16385).to_bytes(2, "big")))
    a = w.probe_hello(server.port, fuzzer_hello([rsl]), timeout=5)
    assert a.types[:1] == [2], f"{server}: {a}"
    assert 28 in w.parse_server_hello_extensions(b"\x02\x00\x00\x00" + a.message(2)), f"{server}: {a}"
