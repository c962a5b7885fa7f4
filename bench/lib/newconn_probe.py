"""A new client's wait at a busy proxy (bench/fairness.sh): every INTERVAL seconds for DURATION seconds, a fresh
TCP connection, a TLS handshake (TLS 1.3, ALPN http/1.1, no session to resume) and one GET /64 with
Connection: close. Prints one JSON line: the handshake times (connect() to handshake done) and the whole times
(connect() to the response's end), in milliseconds, and the count of failures.

    python3 newconn_probe.py PORT DURATION [INTERVAL]
"""
import json
import socket
import ssl
import sys
import time


def main():
    port, duration = int(sys.argv[1]), float(sys.argv[2])
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.1
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    handshake, whole, failed = [], [], 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        t0 = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    t1 = time.perf_counter()
                    s.sendall(b"GET /64 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    data = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
            t2 = time.perf_counter()
            if not data.startswith(b"HTTP/1.1 200"):
                failed += 1
            else:
                handshake.append((t1 - t0) * 1000)
                whole.append((t2 - t0) * 1000)
        except (OSError, ssl.SSLError):
            failed += 1
        time.sleep(interval)
    print(json.dumps({"handshake_ms": handshake, "whole_ms": whole, "failed": failed}))


if __name__ == "__main__":
    main()
