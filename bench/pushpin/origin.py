#!/usr/bin/env python3
"""The origin behind Pushpin for bench/compare.sh (Pushpin is a proxy: it asks
an origin what to do with each subscriber request, then holds the connection).

  GET /stream/<ch>   ->  Grip-Hold: stream,   Grip-Channel: <ch>, text/event-stream
  GET /lp/<ch>       ->  Grip-Hold: response, Grip-Channel: <ch>, application/json
                         (the body is what the client gets if nothing is published
                         before Grip-Timeout)
  GET /healthz       ->  200 ok

asyncio and a hand-written HTTP/1.1 reader with keep-alive, so the origin is
not what limits Pushpin's connect rate (http.server's thread per request was
much slower). Usage: origin.py [PORT]  (default 8099, loopback only).
"""
import asyncio
import re
import sys

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8099
CHANNEL = re.compile(rb"^/(stream|lp)/([A-Za-z0-9_.:@-]{1,128})(?:\?.*)?$")


def answer(status, headers, body=b""):
    head = [b"HTTP/1.1 " + status]
    head += [k + b": " + v for k, v in headers]
    head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def respond(path):
    m = CHANNEL.match(path)
    if m and m.group(1) == b"stream":
        return answer(b"200 OK", [
            (b"Content-Type", b"text/event-stream"),
            (b"Grip-Hold", b"stream"),
            (b"Grip-Channel", m.group(2)),
            (b"Grip-Keep-Alive", b":\\n\\n; format=cstring; timeout=25"),  # = halley heartbeat_secs
        ])
    if m:
        return answer(b"200 OK", [
            (b"Content-Type", b"application/json"),
            (b"Grip-Hold", b"response"),
            (b"Grip-Channel", m.group(2)),
            (b"Grip-Timeout", b"30"),  # = halley longpoll_timeout_secs
        ], b'{"messages":[]}\n')
    if path == b"/healthz":
        return answer(b"200 OK", [(b"Content-Type", b"text/plain")], b"ok\n")
    return answer(b"404 Not Found", [(b"Content-Type", b"text/plain")], b"no such path\n")


async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3:
                break
            length = 0
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v.strip() or 0)
            if length:
                await reader.readexactly(length)
            writer.write(respond(parts[1]))
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", PORT, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
