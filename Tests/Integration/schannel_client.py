"""Test-side TLS 1.2 clients for the SChannel policy tests (issue #4), built on tlslite-ng.

* `FixtureHello`: the ClientHello shape of a fixture in Tests/Fixtures/clienthellos (cipher order, extension
  wire order, groups, point formats, signature algorithms, status_request body, renegotiation_info), applied to
  the ClientHello tlslite-ng builds, just before it is sent. Cipher suites are sent exactly as recorded: tlslite
  only has to implement the suite the server picks (EdgeProxy offers ECDHE-ECDSA/RSA AES-GCM/ChaCha20 only).
* `WireRecorder`: a socket wrapper that records both directions and parses the server's plaintext handshake
  messages (everything up to the server's ChangeCipherSpec is plaintext in TLS 1.2), so a test sees the server
  flight as it was on the wire: ServerHello, Certificate, ..., NewSessionTicket, CCS.
* `TicketClient.connect(session)`: one TLS 1.2 connection (full, or resuming with a ticket), one HTTP request,
  and a `Handshake` record: the flight, whether the server resumed, every NewSessionTicket and where it came.
* `SChannelEmulator`: reproduces the SChannel failure: a NewSessionTicket inside an abbreviated handshake makes
  it abort the connection and retry offering only TLS 1.0 (recorded in `fallbacks`).

tlslite-ng 0.8 treats every ServerHello as a resumption once it holds a TLS 1.2 ticket, and keeps a ticket that
was renewed inline out of the session it returns. Both are fixed here on the client side: a ticket is sent with a
fresh random session ID (RFC 5077 3.4), the server resumed iff it echoes that ID, and the newest ticket seen on the
wire is the one kept for the next connection.
"""
import json
import os
import socket
import struct

from tlslite import HandshakeSettings, TLSConnection
from tlslite.constants import ExtensionType, HandshakeType
from tlslite.extensions import (ECPointFormatsExtension, SessionTicketExtension, SignatureAlgorithmsExtension,
                                SupportedGroupsExtension, TLSExtension)
from tlslite.messages import ClientHello
from tlslite.utils.cryptomath import getRandomBytes

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.abspath(os.path.join(HERE, "..", "Fixtures", "clienthellos"))

HS_NAMES = {0: "HelloRequest", 1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket", 11: "Certificate",
            12: "ServerKeyExchange", 13: "CertificateRequest", 14: "ServerHelloDone", 15: "CertificateVerify",
            16: "ClientKeyExchange", 20: "Finished", 22: "CertificateStatus"}


def load_fixture(name):
    with open(os.path.join(FIXTURES, name if name.endswith(".json") else name + ".json")) as f:
        return json.load(f)



def read_until_close(conn):
    """Everything a tlslite connection receives until the server closes it (or the read fails)."""
    chunks = []
    while True:
        try:
            b = conn.read()
        except Exception:
            break
        if not b:
            break
        chunks.append(bytes(b))
    return b"".join(chunks)

class FixtureHello:
    """The wire shape of a recorded ClientHello, applied to tlslite's own ClientHello object."""

    # Extensions rebuilt from recorded fields; anything else in a fixture is refused rather than faked.
    SUPPORTED = {0, 5, 10, 11, 13, 23, 35, 65281}

    def __init__(self, fixture):
        self.fixture = fixture
        self.ciphers = [int(c, 16) for c in fixture["cipher_suites"]]
        self.extensions = list(fixture["extensions"])
        unsupported = [e for e in self.extensions if e not in self.SUPPORTED]
        if unsupported:
            raise ValueError(f"fixture {fixture['client']!r}: extensions {unsupported} not rebuilt by FixtureHello")
        if fixture.get("grease"):
            raise ValueError("GREASE hellos are not rebuilt")
        self.groups = list(fixture["supported_groups"] or [])
        self.point_formats = list(fixture["ec_point_formats"] or [])
        self.sigalgs = [int(s, 16) for s in (fixture["signature_algorithms"] or [])]
        self.status_request = bytes.fromhex(fixture.get("status_request_data") or "0100000000")

    def apply(self, hello, session_id):
        """Rewrites `hello` (tlslite's ClientHello) in place to this shape; keeps tlslite's SNI and ticket."""
        built = {e.extType: e for e in (hello.extensions or [])}
        out = []
        for t in self.extensions:
            if t == 0:
                ext = built[ExtensionType.server_name]
            elif t == 5:
                ext = TLSExtension(extType=5).create(bytearray(self.status_request))
            elif t == 10:
                ext = SupportedGroupsExtension().create(self.groups)
            elif t == 11:
                ext = ECPointFormatsExtension().create(self.point_formats)
            elif t == 13:
                ext = SignatureAlgorithmsExtension().create([(s >> 8, s & 0xFF) for s in self.sigalgs])
            elif t == 23:
                ext = TLSExtension(extType=23).create(bytearray())
            elif t == 35:
                ext = built.get(ExtensionType.session_ticket) or SessionTicketExtension().create(bytearray())
            elif t == 65281:
                ext = TLSExtension(extType=65281).create(bytearray(b"\x00"))  # empty renegotiated_connection
            out.append(ext)
        hello.extensions = out
        hello.cipher_suites = list(self.ciphers)
        hello.session_id = bytearray(session_id)
        hello.client_version = (3, 3)


class WireRecorder:
    """Socket wrapper: records raw bytes both ways and parses the server's plaintext handshake messages.

    `events` is the server side as a list of names in wire order ("ServerHello", "Certificate", ...,
    "NewSessionTicket", "CCS", then "encrypted:22" for the encrypted Finished, "Alert(2,40)" for alerts).
    `on_event(name, body)` may raise to abort the handshake at that point (the SChannel emulation).
    """

    def __init__(self, sock, on_event=None):
        self.sock = sock
        self.sent = bytearray()
        self.received = bytearray()
        self.events = []
        self.tickets = []  # (position in events, lifetime hint, ticket bytes)
        self.on_event = on_event
        self._rbuf = bytearray()
        self._hs = bytearray()
        self._encrypted = False

    # socket API used by tlslite
    def send(self, data):
        self.sent += data
        return self.sock.send(data)

    def sendall(self, data):
        self.sent += data
        return self.sock.sendall(data)

    def recv(self, n):
        data = self.sock.recv(n)
        self.received += data
        self._rbuf += data
        self._parse()
        return data

    def __getattr__(self, name):
        return getattr(self.sock, name)

    def _emit(self, name, body=b""):
        self.events.append(name)
        if name == "NewSessionTicket" and len(body) >= 6:
            lifetime = struct.unpack(">I", body[:4])[0]
            ln = struct.unpack(">H", body[4:6])[0]
            self.tickets.append((len(self.events) - 1, lifetime, bytes(body[6:6 + ln])))
        if self.on_event:
            self.on_event(name, body)

    def _parse(self):
        while len(self._rbuf) >= 5:
            ctype = self._rbuf[0]
            ln = struct.unpack(">H", self._rbuf[3:5])[0]
            if len(self._rbuf) < 5 + ln:
                return
            frag = bytes(self._rbuf[5:5 + ln])
            del self._rbuf[:5 + ln]
            if self._encrypted:
                self._emit(f"encrypted:{ctype}")
            elif ctype == 20:
                self._encrypted = True
                self._emit("CCS")
            elif ctype == 21:
                self._emit(f"Alert({frag[0]},{frag[1]})" if len(frag) >= 2 else "Alert")
            elif ctype == 22:
                self._hs += frag
                while len(self._hs) >= 4:
                    mlen = int.from_bytes(self._hs[1:4], "big")
                    if len(self._hs) < 4 + mlen:
                        break
                    mtype = self._hs[0]
                    body = bytes(self._hs[4:4 + mlen])
                    del self._hs[:4 + mlen]
                    self._emit(HS_NAMES.get(mtype, f"hs:{mtype}"), body)
            else:
                self._emit(f"record:{ctype}")

    def client_hello_record(self):
        """The first TLS record this client sent (the ClientHello), exactly as on the wire."""
        ln = struct.unpack(">H", self.sent[3:5])[0]
        return bytes(self.sent[:5 + ln])

    def server_hello_session_id(self):
        """The session ID the server put in its ServerHello (parsed from the received bytes)."""
        raw = bytes(self.received)
        assert raw[0] == 22 and raw[5] == 2, "first server record is not a ServerHello"
        sid_len = raw[5 + 4 + 2 + 32]
        return raw[5 + 4 + 2 + 32 + 1:5 + 4 + 2 + 32 + 1 + sid_len]


class Handshake:
    """What one connection looked like from the client side."""

    def __init__(self, rec, resumed, response, error=None, sent_session_id=b""):
        self.rec = rec
        self.flight = list(rec.events)
        self.resumed = resumed
        self.response = response
        self.error = error
        self.sent_session_id = sent_session_id

    @property
    def certificate_sent(self):
        return "Certificate" in self.flight

    @property
    def tickets(self):
        return [t for (_, _, t) in self.rec.tickets]

    @property
    def inline_renewal(self):
        """A NewSessionTicket inside an abbreviated handshake: ServerHello, NewSessionTicket (no Certificate)."""
        try:
            i = self.flight.index("ServerHello")
        except ValueError:
            return False
        return self.flight[i + 1:i + 2] == ["NewSessionTicket"]

    @property
    def ticket_before_ccs(self):
        if "NewSessionTicket" not in self.flight or "CCS" not in self.flight:
            return False
        return self.flight.index("NewSessionTicket") < self.flight.index("CCS")

    def json_body(self):
        body = self.response.split(b"\r\n\r\n", 1)[1]
        return json.loads(body)

    def __repr__(self):
        return f"Handshake(resumed={self.resumed}, flight={self.flight}, error={self.error!r})"


class _ShapedConnection(TLSConnection):
    """TLSConnection whose ClientHello is reshaped, and which resumes only when the server echoes our ID."""

    shape = None
    offered_session_id = b""

    def _sendMsg(self, msg, *a, **kw):
        if isinstance(msg, ClientHello) and msg.client_version >= (3, 3):
            has_ticket = any(e.extType == ExtensionType.session_ticket and len(e.ticket or b"") > 0
                             for e in (msg.extensions or []) if isinstance(e, SessionTicketExtension))
            # RFC 5077 3.4: a client presenting a ticket may send a session ID; the server echoes it iff it
            # accepts the ticket. Without a ticket the fixtures' hellos have an empty session ID.
            self.offered_session_id = getRandomBytes(32) if has_ticket else b""
            if self.shape is not None:
                self.shape.apply(msg, self.offered_session_id)
            else:
                msg.session_id = bytearray(self.offered_session_id)
        return TLSConnection._sendMsg(self, msg, *a, **kw)

    def _clientResume(self, session, serverHello, clientRandom, nextProto, settings):
        if not (self.offered_session_id and bytes(serverHello.session_id) == bytes(self.offered_session_id)):
            return iter(())  # full handshake: fall through to the key exchange
        return TLSConnection._clientResume(self, session, serverHello, clientRandom, nextProto, settings)


class TicketClient:
    """A TLS 1.2 client with session tickets; `shape` None = tlslite-ng's own (non-SChannel) ClientHello."""

    def __init__(self, port, shape=None, server_name="localhost", host="127.0.0.1", source=None):
        self.port = port
        self.host = host
        self.source = source  # local address to connect from (any 127.x.y.z on Linux loopback), or None
        self.shape = shape
        self.server_name = server_name

    def settings(self, max_version=(3, 3), min_version=(3, 1)):
        s = HandshakeSettings()
        s.minVersion = min_version
        s.maxVersion = max_version
        s.useEncryptThenMAC = False
        s.usePaddingExtension = False
        return s

    def connect(self, session=None, path="/", headers=(), on_event=None, settings=None, request=True):
        """One connection: handshake (resuming `session` if given), one GET, read to close.

        Returns (Handshake, session for the next connection). Exceptions from `on_event` propagate.
        """
        raw = socket.create_connection((self.host, self.port), timeout=15,
                                       source_address=(self.source, 0) if self.source else None)
        rec = WireRecorder(raw, on_event)
        conn = _ShapedConnection(rec)
        conn.shape = self.shape
        response = b""
        try:
            conn.handshakeClientCert(session=session, settings=settings or self.settings(),
                                     serverName=self.server_name)
            resumed = bool(conn.resumed)
            next_session = conn.session
            if rec.tickets and resumed:
                # tlslite keeps the old ticket in a resumed session; use the one the server just sent.
                next_session = conn.session._clone()
                next_session.tls_1_0_tickets = list(conn.tls_1_0_tickets)
            for t in conn.tls_1_0_tickets:
                # RFC 5077 3.3: a lifetime hint of 0 means "unspecified" (OpenSSL sends 0 on a resumption);
                # tlslite would treat the ticket as already expired.
                if t.ticket_lifetime == 0:
                    t.ticket_lifetime = 3600
            if request:
                lines = [f"GET {path} HTTP/1.1", f"Host: {self.server_name}", "Accept: application/json",
                         "Connection: close"] + [f"{k}: {v}" for k, v in headers]
                conn.write(("\r\n".join(lines) + "\r\n\r\n").encode())
                response = read_until_close(conn)
            return Handshake(rec, resumed, response, sent_session_id=conn.offered_session_id), next_session
        finally:
            try:
                conn.close()
            except Exception:
                pass
            raw.close()


class InlineRenewalAbort(Exception):
    """Raised inside the handshake when the SChannel emulator sees NewSessionTicket right after ServerHello."""


class SChannelEmulator:
    """An SChannel-shaped client with SChannel's bug: a NewSessionTicket inside an abbreviated TLS 1.2 handshake
    makes it abort, and the browser then retries offering only TLS 1.0 (IE's fallback). Each such event is
    appended to `fallbacks` with the retry's result."""

    def __init__(self, port, fixture_name, server_name="localhost", source=None):
        # fixture_name None: tlslite-ng's own (non-SChannel) ClientHello with the same bug.
        shape = FixtureHello(load_fixture(fixture_name)) if fixture_name else None
        self.client = TicketClient(port, shape, server_name, source=source)
        self.fallbacks = []
        self.handshakes = []

    def _watch(self):
        seen = []

        def on_event(name, body):
            seen.append(name)
            if name == "NewSessionTicket" and seen[-2:-1] == ["ServerHello"]:
                raise InlineRenewalAbort("NewSessionTicket inside an abbreviated handshake")

        return on_event

    def visit(self, session=None):
        """One page load. Returns the session to keep (None after a fallback: the ticket is thrown away)."""
        try:
            hs, nxt = self.client.connect(session, on_event=self._watch())
            self.handshakes.append(hs)
            return nxt
        except InlineRenewalAbort as e:
            # What IE does next: a new connection offering TLS 1.0 only (no ticket). EdgeProxy requires
            # TLS 1.2 by default, so the retry is expected to be refused; its result is recorded either way.
            retry = {"reason": str(e)}
            try:
                hs, _ = TicketClient(self.client.port, None, self.client.server_name,
                                     source=self.client.source).connect(
                    None, settings=self.client.settings(max_version=(3, 1), min_version=(3, 1)))
                retry["retry"] = "TLS 1.0 handshake completed"
            except Exception as e2:
                retry["retry"] = f"TLS 1.0 retry failed: {type(e2).__name__}: {e2}"
            self.fallbacks.append(retry)
            return None
