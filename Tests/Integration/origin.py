#!/usr/bin/env python3
"""A small HTTP/1.1 origin for EdgeProxy's integration tests (real sockets, keep-alive, streaming).

Paths:
  /bytes/N            N bytes of a repeating pattern, Content-Length, streamed in 64 KiB writes
  /mark/N/K           as /bytes/N, the pattern shifted by K (0-255): bodies that differ per request
  /chunked/N          N bytes, Transfer-Encoding: chunked
  /trailers/N         as /chunked/N, ending with a trailer field "x-checksum: n=N"
  /echo               echoes the request: JSON with method, path, headers, body length and sha256 of the body,
                      and origin_port (which origin answered)
  /upload             streams the request body (chunked or CL), replies with its length and sha256
  /slow/MS            waits MS milliseconds, then answers
  /die-before-headers closes the connection without answering
  /die-mid-body/N     announces N bytes, sends half, then resets the connection
  /status/CODE        answers CODE with an empty body (204/304 without framing)
  anything else       200 "origin ok"
Prints "READY <port>" on stdout once listening, then "REQ <method> <target>" as each request head arrives.
"""
import hashlib
import json
import socket
import socketserver
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler

def marked(k):
    """/mark/N/K's 64 KiB pattern: bytes 0..255 repeated, each shifted by K (K = 0 is /bytes/N's)."""
    return bytes((i + k) & 0xFF for i in range(256)) * 256


PATTERN = marked(0)  # 64 KiB


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body_reader(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    chunk = self.rfile.read(min(remaining, 1 << 16))
                    if not chunk:
                        return
                    remaining -= len(chunk)
                    yield chunk
                self.rfile.readline()
        else:
            remaining = int(self.headers.get("Content-Length", "0") or 0)
            while remaining:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

    def _send(self, code, body=b"", ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        path = self.path
        print(f"REQ {self.command} {path}", flush=True)
        if path.startswith("/bytes/") or path.startswith("/mark/"):
            parts = path.split("/")
            n = int(parts[2])
            pattern = marked(int(parts[3])) if parts[1] == "mark" else PATTERN
            for _ in self._body_reader():
                pass
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            if self.command == "HEAD":
                return
            sent = 0
            while sent < n:
                k = min(len(pattern), n - sent)
                self.wfile.write(pattern[:k])
                sent += k
        elif path.startswith("/chunked/") or path.startswith("/trailers/"):
            n = int(path.split("/")[2])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = 0
            while sent < n:
                k = min(len(PATTERN), n - sent)
                self.wfile.write(b"%x\r\n" % k + PATTERN[:k] + b"\r\n")
                sent += k
            trailer = b"x-checksum: n=%d\r\n" % n if path.startswith("/trailers/") else b""
            self.wfile.write(b"0\r\n" + trailer + b"\r\n")
        elif path.startswith("/echo") or path.startswith("/upload"):
            h = hashlib.sha256()
            n = 0
            for chunk in self._body_reader():
                h.update(chunk)
                n += len(chunk)
            doc = {
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body_length": n,
                "body_sha256": h.hexdigest(),
                "origin_port": self.server.server_address[1],
            }
            self._send(200, json.dumps(doc).encode(), "application/json")
        elif path.startswith("/slow/"):
            time.sleep(int(path.split("/")[2]) / 1000)
            self._send(200, b"slow ok\n")
        elif path.startswith("/die-before-headers"):
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        elif path.startswith("/die-mid-body/"):
            n = int(path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            self.wfile.write(PATTERN[: n // 2] if n // 2 <= len(PATTERN) else PATTERN)
            self.wfile.flush()
            time.sleep(0.05)
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        elif path.startswith("/status/"):
            code = int(path.split("/")[2])
            self.send_response(code)
            if code not in (204, 304):
                self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            for _ in self._body_reader():
                pass
            self._send(200, b"origin ok\n")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = handle_any


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    srv = Server(("127.0.0.1", port), Handler)
    print("READY %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
