#!/usr/bin/env python3
"""A deliberately misbehaving HTTP/1.1 origin for the forwarder's tests (raw sockets, one thread per connection).

The request path picks the behaviour:
  /close-delimited/N      200, no Content-Length, `Connection: close`, N body bytes, then close (FIN with the data)
  /close-delimited-10/N   the same, answered as HTTP/1.0 without a Connection field
  /ka-then-close          200 with Content-Length and no `Connection: close`, then closes at once (a dead
                          keep-alive connection for the next request)
  /reset-before-head      reads the request, then resets the connection (RST)
  /reset-mid-body         announces 100000 bytes, sends 1000, then resets
  /slow-head/MS           waits MS milliseconds before answering 200 "slow"
  /hang                   reads the request and never answers (closes when the peer does)
  /malformed              answers a broken status line
  /interim                103 Early Hints, then 200 "final"
  /status/CODE            CODE with no body (204, 304) or an empty one
  /early/CODE             answers CODE (Content-Length 0) as soon as the head arrived, without reading the body
  /echo-head              200 with the request head it received as the body
Prints "READY <port>" once listening, "CONN" for each accepted connection and "CLOSED" after /ka-then-close
closed its connection.
"""
import socket
import struct
import sys
import threading
import time


def read_head(conn, buf):
    while b"\r\n\r\n" not in buf:
        b = conn.recv(65536)
        if not b:
            return None, buf
        buf += b
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def body_length(head):
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return int(v.strip())
    return 0


def is_chunked(head):
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"transfer-encoding" and b"chunked" in v.lower():
            return True
    return False


def read_body(conn, head, rest):
    """Reads and discards the request body; returns leftover bytes."""
    if is_chunked(head):
        buf = rest
        while True:
            while b"\r\n" not in buf:
                b = conn.recv(65536)
                if not b:
                    return b""
                buf += b
            line, buf = buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(buf) < size + 2:
                b = conn.recv(65536)
                if not b:
                    return b""
                buf += b
            buf = buf[size + 2:]
            if size == 0:
                return buf
    n = body_length(head)
    buf = rest
    while len(buf) < n:
        b = conn.recv(65536)
        if not b:
            return b""
        buf += b
    return buf[n:]


def reset(conn):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def serve(conn):
    buf = b""
    try:
        while True:
            head, rest = read_head(conn, buf)
            if head is None:
                conn.close()
                return
            target = head.split(b" ")[1].decode()
            parts = target.split("/")
            if target.startswith("/early/"):
                conn.sendall(b"HTTP/1.1 %d Early\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % int(parts[2]))
                time.sleep(2)
                conn.close()
                return
            buf = read_body(conn, head, rest)
            if target.startswith("/close-delimited-10/"):
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"x" * int(parts[2]))
                conn.shutdown(socket.SHUT_WR)
                conn.close()
                return
            if target.startswith("/close-delimited/"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n"
                             + b"y" * int(parts[2]))
                conn.shutdown(socket.SHUT_WR)
                conn.close()
                return
            if target == "/ka-then-close":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                conn.close()
                print("CLOSED", flush=True)
                return
            if target == "/reset-before-head":
                reset(conn)
                return
            if target == "/reset-mid-body":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"z" * 1000)
                time.sleep(0.05)
                reset(conn)
                return
            if target.startswith("/slow-head/"):
                time.sleep(int(parts[2]) / 1000)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
                continue
            if target == "/hang":
                while conn.recv(65536):
                    pass
                conn.close()
                return
            if target == "/malformed":
                conn.sendall(b"HTTP/1.1 2x0 Nope\r\n\r\n")
                conn.close()
                return
            if target == "/interim":
                conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
                time.sleep(0.02)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
                continue
            if target.startswith("/status/"):
                code = int(parts[2])
                if code in (204, 304):
                    conn.sendall(b"HTTP/1.1 %d X\r\n\r\n" % code)
                else:
                    conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % code)
                continue
            if target == "/echo-head":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(head), head))
                continue
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbad")
    except OSError:
        pass


def main():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    srv.listen(512)
    print("READY %d" % srv.getsockname()[1], flush=True)
    while True:
        c, _ = srv.accept()
        print("CONN", flush=True)
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()
