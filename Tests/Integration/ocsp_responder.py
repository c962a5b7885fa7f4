"""A loopback OCSP responder for the tests: HTTP on 127.0.0.1 with an OS-assigned port (printed as `PORT n`), every
POSTed request answered by OpenSSL's own responder, `openssl ocsp -index INDEX -CA CA -rsigner CA -rkey KEY -reqin
-respout` plus the validity arguments given (`-ndays 1`, `-nmin 1`). The index file (OpenSSL `ca` format) decides
good/revoked/unknown and is read afresh for every request, so a test revokes by rewriting it.

This wraps `openssl ocsp` instead of running `openssl ocsp -port N`, because OpenSSL 3.0's `-port` takes a bare
port and binds every interface, and the tests bind loopback only. Stopping this process is a responder outage.

Usage: ocsp_responder.py INDEX CA_CERT CA_KEY [VALIDITY ARGS...]
"""
import http.server
import os
import subprocess
import sys
import tempfile

INDEX, CA_CERT, CA_KEY = sys.argv[1:4]
VALIDITY = sys.argv[4:] or ["-ndays", "1"]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with tempfile.TemporaryDirectory(prefix="ocsp-req-") as d:
            req, resp = os.path.join(d, "req.der"), os.path.join(d, "resp.der")
            with open(req, "wb") as f:
                f.write(body)
            r = subprocess.run(["openssl", "ocsp", "-index", INDEX, "-CA", CA_CERT, "-rsigner", CA_CERT,
                                "-rkey", CA_KEY, "-reqin", req, "-respout", resp] + VALIDITY,
                               capture_output=True, timeout=30)
            if r.returncode != 0 or not os.path.exists(resp):
                self.send_error(500)
                return
            with open(resp, "rb") as f:
                der = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/ocsp-response")
        self.send_header("Content-Length", str(len(der)))
        self.end_headers()
        self.wfile.write(der)
        print("OCSP request answered", flush=True)

    def log_message(self, fmt, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"PORT {server.server_address[1]}", flush=True)
server.serve_forever()
