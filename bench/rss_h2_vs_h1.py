#!/usr/bin/env python3
"""Idle SSE subscribers over HTTP/1.1 (one connection each) against the same
number over HTTP/2 (streams of N/PER connections, h2c prior knowledge): the
growth of halley's resident memory per subscriber, each on a fresh process,
in one run. Usage:
  cargo build --release && python3 bench/rss_h2_vs_h1.py 5000 [PER=100]
Needs Python's h2 package (tests/run installs it)."""
import os, re, socket, subprocess, sys, time

import h2.config, h2.connection, h2.events

N = int(sys.argv[1])
PER = int(sys.argv[2]) if len(sys.argv) > 2 else 100
BIN = os.environ.get("HALLEY_BIN", "./target/release/halley")


def start():
    p = subprocess.Popen([BIN, "--listen", "127.0.0.1:0", "--ingest", "127.0.0.1:0", "--resp", "127.0.0.1:0"],
                         stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    host, port = re.search(r"public=(\S+)", line).group(1).split(":")
    return p, host, int(port)


def rss(p):
    return int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{p.pid}/status").read()).group(1))


def h1(host, port):
    socks = []
    for i in range(N):
        s = socket.create_connection((host, port))
        s.sendall(b"GET /sub/ch%d?transport=sse HTTP/1.1\r\nHost: x\r\n\r\n" % (i % 100))
        socks.append(s)
    for s in socks:
        s.settimeout(20)
        d = b""
        while b"retry" not in d:
            d += s.recv(4096)
    return socks


def h2c(host, port):
    conns = []
    for c in range(0, N, PER):
        s = socket.create_connection((host, port))
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        want = set()
        for i in range(c, min(N, c + PER)):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                                    (":path", f"/sub/ch{i % 100}?transport=sse")], end_stream=True)
            want.add(sid)
        s.sendall(conn.data_to_send())
        s.settimeout(20)
        while want:
            for ev in conn.receive_data(s.recv(65536)):
                if isinstance(ev, h2.events.DataReceived) and b"retry" in ev.data:
                    want.discard(ev.stream_id)
            s.sendall(conn.data_to_send())
        conns.append((s, conn))
    return conns


for name, open_all in (("http/1.1", h1), ("h2c", h2c)):
    p, host, port = start()
    time.sleep(0.3)
    base = rss(p)
    held = open_all(host, port)
    time.sleep(0.5)
    after = rss(p)
    per = (after - base) * 1024 / N
    conns = N if name == "http/1.1" else (N + PER - 1) // PER
    print(f"{name}: {N} SSE subscribers on {conns} connections: rss {base} -> {after} KiB, {per:.0f} bytes per subscriber")
    p.terminate()
    p.wait()
    del held
