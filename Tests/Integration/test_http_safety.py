"""Request smuggling defences, size limits and pipelining, as raw bytes over a real TLS connection."""
import json

import pytest

from conftest import HTTPReader, tls_connect


@pytest.fixture
def proxy(proxies, origin):
    return proxies(["--listen", "127.0.0.1:0", "--upstream", origin.url])


def rejects(proxy, raw, expected_status, origin=None):
    """Sends `raw`, expects one error response with Connection: close, then the connection closed by the proxy.
    With `origin`, also asserts nothing reached it."""
    s = tls_connect(proxy.port)
    try:
        s.sendall(raw)
        rd = HTTPReader(s)
        status, headers, body = rd.response()
        rest, closed = rd.drain_to_eof()
    finally:
        s.close()
    assert status == expected_status, (status, headers, body[:200])
    conn = [v.lower() for k, v in headers if k == "connection"]
    assert "close" in conn, headers
    if origin is not None:
        assert "REQ " not in origin.output(), "a request with a malformed head reached the origin"
    assert closed, f"connection still open 5 s after the {status} response"
    assert rest == b"", f"{len(rest)} bytes beyond the {status} response's Content-Length: {rest[:100]!r}"


H = b"Host: smuggle.test\r\n"

CASES = {
    "cl_and_te": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n\r\n", 400),
    "te_and_cl": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
                  b"0\r\n\r\n", 400),
    "two_content_lengths": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n"
                            b"hello!", 400),
    "content_length_list": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!", 400),
    "bad_chunk_size": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\nhello\r\n0\r\n\r\n", 400),
    "obs_fold": (b"GET /echo HTTP/1.1\r\n" + H + b"X-A: one\r\n  two\r\n\r\n", 400),
    "space_before_colon": (b"GET /echo HTTP/1.1\r\n" + H + b"X-A : one\r\n\r\n", 400),
    "invalid_name_byte": (b"GET /echo HTTP/1.1\r\n" + H + b"X(A): one\r\n\r\n", 400),
    "nul_in_value": (b"GET /echo HTTP/1.1\r\n" + H + b"X-A: o\x00ne\r\n\r\n", 400),
    "bare_cr_in_value": (b"GET /echo HTTP/1.1\r\n" + H + b"X-A: o\rne\r\n\r\n", 400),
    "request_line_too_long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    "header_block_too_large": (b"GET /echo HTTP/1.1\r\n" + H
                               + b"".join(b"X-Big-%d: %s\r\n" % (i, b"v" * 4000) for i in range(10)) + b"\r\n", 431),
    "too_many_headers": (b"GET /echo HTTP/1.1\r\n" + H
                         + b"".join(b"X-H-%d: v\r\n" % i for i in range(120)) + b"\r\n", 431),
}


@pytest.mark.parametrize("name", list(CASES))
def test_rejected(proxy, origin, name):
    raw, status = CASES[name]
    # A bad chunk is only seen after the head may already have been forwarded; every other case is in the head.
    rejects(proxy, raw, status, origin=None if name == "bad_chunk_size" else origin)


def test_smuggled_request_never_reaches_origin(proxy, origin):
    """CL+TE with a second request hidden in the body: 400, and the hidden request is never forwarded."""
    hidden = b"GET /echo/smuggled HTTP/1.1\r\n" + H + b"\r\n"
    body = b"0\r\n\r\n" + hidden
    raw = (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n" % len(body)
           + body)
    s = tls_connect(proxy.port)
    try:
        s.sendall(raw)
        rd = HTTPReader(s)
        status, _, _ = rd.response()
        assert status == 400
        rd.drain_to_eof()
    finally:
        s.close()
    assert "/echo/smuggled" not in origin.output()


def test_limits_are_not_off_by_a_lot(proxy):
    """Just under the limits is accepted: the 414/431 above come from the limits, not from any long request."""
    s = tls_connect(proxy.port)
    try:
        rd = HTTPReader(s)
        s.sendall(b"GET /echo/" + b"a" * 7000 + b" HTTP/1.1\r\n" + H + b"\r\n")
        status, _, body = rd.response()
        assert status == 200, body[:200]
        s.sendall(b"GET /echo HTTP/1.1\r\n" + H + b"".join(b"X-H-%d: v\r\n" % i for i in range(90)) + b"\r\n")
        status, _, body = rd.response()
        assert status == 200, body[:200]
        assert len(json.loads(body)["headers"]) >= 91
    finally:
        s.close()


def test_pipelining_two_requests_one_write(proxy):
    s = tls_connect(proxy.port)
    try:
        s.sendall(b"GET /echo/first HTTP/1.1\r\n" + H + b"\r\n"
                  b"POST /echo/second HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nConnection: close\r\n\r\nabc")
        rd = HTTPReader(s)
        st1, _, b1 = rd.response()
        st2, _, b2 = rd.response()
        assert (st1, st2) == (200, 200)
        d1, d2 = json.loads(b1), json.loads(b2)
        assert (d1["path"], d1["method"]) == ("/echo/first", "GET")
        assert (d2["path"], d2["method"], d2["body_length"]) == ("/echo/second", "POST", 3)
        assert rd.at_eof()
    finally:
        s.close()


def test_header_read_timeout_408(proxies, origin, tmp_path):
    """Slow-loris: a head that never completes gets 408 (and a close) once [timeouts] header_read passes."""
    from conftest import write_file
    import time
    cfg = write_file(tmp_path, "t.toml", f'upstreams = ["{origin.url}"]\n\n[timeouts]\nheader_read = "1s"\n')
    p = proxies(["--config", cfg, "--listen", "127.0.0.1:0"])
    s = tls_connect(p.port)
    try:
        s.sendall(b"GET /echo HTTP/1.1\r\n" + H + b"X-Partial: 1\r\n")
        t0 = time.time()
        s.settimeout(4)
        rd = HTTPReader(s)
        status, headers, _ = rd.response()
        took = time.time() - t0
        assert status == 408, (status, headers)
        assert 0.8 <= took < 3.5, took
        assert "close" in [v.lower() for k, v in headers if k == "connection"]
    finally:
        s.close()
