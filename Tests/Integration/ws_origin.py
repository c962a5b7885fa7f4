"""A real WebSocket origin (Python `websockets`, asyncio server) on 127.0.0.1, plain HTTP/1.1, for
test_websocket.py. Prints "READY <port>", then one line per event the tests wait for:

- /echo            echoes every message;
- /flood?bytes=N   sends N bytes in 64 KiB binary messages without reading, printing "FLOOD <sent>" as it goes
                   (a client that does not read makes `send` wait once the buffers on the way are full);
- /idle            sends nothing and waits; "CLOSED idle <seconds since open>" when the connection ends;
- /headers         sends the request's header names and values as one JSON text message.

A request without a WebSocket upgrade is answered by `websockets` itself with 426 Upgrade Required.
Keepalive pings and compression are off so that the tests control every byte.
"""
import asyncio
import json
import sys
import time
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import serve


async def handler(ws):
    url = urlsplit(ws.request.path)
    if url.path == "/echo":
        async for m in ws:
            await ws.send(m)
    elif url.path == "/flood":
        total = int(parse_qs(url.query)["bytes"][0])
        chunk = b"\x5a" * 65536
        sent = 0

        async def report():
            # From its own task: a `send` that waits (the client does not read) still gets its progress printed.
            while True:
                print(f"FLOOD {sent}", flush=True)
                await asyncio.sleep(0.1)

        reporter = asyncio.create_task(report())
        try:
            while sent < total:
                await ws.send(chunk)
                sent += len(chunk)
            print(f"FLOOD {sent} done", flush=True)
            await ws.wait_closed()
        finally:
            reporter.cancel()
    elif url.path == "/idle":
        opened = time.monotonic()
        try:
            await ws.wait_closed()
        finally:
            print(f"CLOSED idle {time.monotonic() - opened:.3f}", flush=True)
    elif url.path == "/headers":
        await ws.send(json.dumps([[k, v] for k, v in ws.request.headers.raw_items()]))
        await ws.wait_closed()
    else:
        await ws.close(code=1008, reason="unknown path")


async def main():
    async with serve(handler, "127.0.0.1", 0, ping_interval=None, compression=None, max_size=None,
                     max_queue=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"READY {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
