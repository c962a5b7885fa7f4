"""A certificate authority made in the test with the openssl CLI, for the OCSP stapling tests: a CA, leaves it issues
(with an Authority Information Access OCSP URL when asked), an index file in `openssl ca` format (what `openssl ocsp
-index` reads: V = valid, R = revoked), the loopback responder of ocsp_responder.py, and offline responses (`openssl
ocsp -reqin/-respout`) for `ocsp = "file:PATH"`. Responses with arbitrary (past) times, which `openssl ocsp` cannot
make, are built with the `cryptography` package from the same CA key.
"""
import datetime
import os
import re
import shutil
import subprocess
import tempfile

from conftest import Process, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))


def run(*a):
    r = subprocess.run(a, capture_output=True, timeout=60)
    assert r.returncode == 0, f"{a}: {r.stderr.decode()}"
    return r.stdout.decode()


class TestCA:
    __test__ = False

    def __init__(self, name="EdgeProxy Test CA"):
        self.dir = tempfile.mkdtemp(prefix="edgeproxy-ca-")
        self.key = os.path.join(self.dir, "ca.key")
        self.cert = os.path.join(self.dir, "ca.pem")
        self.index = os.path.join(self.dir, "index.txt")
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", self.key, "-out", self.cert, "-days", "3", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
        open(self.index, "w").close()
        with open(self.index + ".attr", "w") as f:
            f.write("unique_subject = no\n")  # several leaves for "localhost"
        self.entries = {}  # serial -> (status, subject)
        self.n = 0

    def issue(self, host="localhost", ocsp_url=None, key_type="ec"):
        """A leaf for `host` (+ localhost, 127.0.0.1). Returns a dict: chain (leaf + CA, what EdgeProxy and nginx
        serve), key, leaf, serial; the leaf is recorded as valid in the index."""
        self.n += 1
        base = os.path.join(self.dir, f"leaf{self.n}")
        key, csr, leaf, chain, ext = (base + s for s in (".key", ".csr", ".pem", "-chain.pem", ".ext"))
        if key_type == "ec":
            run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", csr, "-subj", f"/CN={host}")
        else:
            run("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                "-subj", f"/CN={host}")
        with open(ext, "w") as f:
            f.write(f"subjectAltName=DNS:{host},DNS:localhost,IP:127.0.0.1\n")
            f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
            if ocsp_url:
                f.write(f"authorityInfoAccess=OCSP;URI:{ocsp_url}\n")
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key, "-CAcreateserial",
            "-out", leaf, "-days", "2", "-extfile", ext)
        with open(chain, "w") as out:
            out.write(open(leaf).read() + open(self.cert).read())
        serial = run("openssl", "x509", "-in", leaf, "-noout", "-serial").strip().split("=")[1]
        self.entries[serial] = ("V", f"/CN={host}")
        self._write_index()
        return {"chain": chain, "key": key, "leaf": leaf, "serial": serial}

    def revoke(self, serial):
        self.entries[serial] = ("R", self.entries[serial][1])
        self._write_index()

    def _write_index(self):
        expiry = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)).strftime("%y%m%d%H%M%SZ")
        revoked = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)).strftime("%y%m%d%H%M%SZ")
        tmp = self.index + ".tmp"
        with open(tmp, "w") as f:
            for serial, (status, subject) in self.entries.items():
                f.write(f"{status}\t{expiry}\t{revoked if status == 'R' else ''}\t{serial}\tunknown\t{subject}\n")
        os.replace(tmp, self.index)

    def response_file(self, leaf, out, validity=("-ndays", "1")):
        """An OCSP response for `leaf` made offline by `openssl ocsp` (the status from the index)."""
        req = out + ".req"
        run("openssl", "ocsp", "-issuer", self.cert, "-cert", leaf, "-reqout", req, "-no_nonce")
        run("openssl", "ocsp", "-index", self.index, "-CA", self.cert, "-rsigner", self.cert, "-rkey", self.key,
            "-reqin", req, "-respout", out, *validity)
        return out

    def expired_response_file(self, leaf, out):
        """A `good` response signed by this CA whose nextUpdate is an hour in the past."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509 import ocsp
        cert = x509.load_pem_x509_certificate(open(leaf, "rb").read())
        ca = x509.load_pem_x509_certificate(open(self.cert, "rb").read())
        key = serialization.load_pem_private_key(open(self.key, "rb").read(), None)
        now = datetime.datetime.now(datetime.timezone.utc)
        b = ocsp.OCSPResponseBuilder().add_response(
            cert=cert, issuer=ca, algorithm=hashes.SHA1(), cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=now - datetime.timedelta(hours=2), next_update=now - datetime.timedelta(hours=1),
            revocation_time=None, revocation_reason=None).responder_id(ocsp.OCSPResponderEncoding.HASH, ca)
        with open(out, "wb") as f:
            f.write(b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
        return out

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class Responder(Process):
    """ocsp_responder.py for a TestCA, on 127.0.0.1 (OS-assigned port)."""

    def __init__(self, ca, validity=("-ndays", "1")):
        super().__init__(["python3", os.path.join(HERE, "ocsp_responder.py"), ca.index, ca.cert, ca.key, *validity],
                         name="ocsp-responder")
        m = wait_for(lambda: re.search(r"PORT (\d+)", self.output()) or not self.alive(), what="OCSP responder")
        assert self.alive(), self.output()
        self.port = int(m.group(1))
        self.url = f"http://127.0.0.1:{self.port}/"

    def requests(self):
        return self.output().count("OCSP request answered")
