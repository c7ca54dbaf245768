#!/usr/bin/env python3
"""Plain vs TLS side by side, in one run: N SSE subscribers connect from P
client processes at once (each process opens its share one after another,
blocking), every one waits for its response head, and all stay open. For each
mode it reports the wall time and subscribes/s, halley's CPU time per
subscribe (from /proc/<pid>/stat: what a handshake costs the server, whatever
the clients' speed), and halley's RSS growth per idle connection.

Modes: plain; tls (a full handshake per connection, ECDSA P-256 certificate);
tls-resumed (each client process resumes one TLS 1.3 session for the rest).

  cargo build --release && python3 bench/tls_storm.py 10000 [P=4] [modes...]

The clients are Python's ssl module, which costs far more CPU per handshake
than halley does: on a 2-core machine they share the cores with the server,
so subscribes/s is a lower bound and CPU per subscribe is the number to
compare. (The fd limit here is 20,000 per process; N up to about 19,000.)"""
import os, re, socket, ssl, subprocess, sys, tempfile, time
from multiprocessing import Process, Queue

N = int(sys.argv[1])
P = int(sys.argv[2]) if len(sys.argv) > 2 else 4
MODES = sys.argv[3:] or ["plain", "tls", "tls-resumed"]
BIN = os.environ.get("HALLEY_BIN", "./target/release/halley")
TICK = os.sysconf("SC_CLK_TCK")

def make_cert():
    d = tempfile.mkdtemp(prefix="halley-tls-storm-")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", "key.pem", "-out", "cert.pem"], cwd=d, check=True, capture_output=True)
    return d

def client(host, port, count, mode, ca, start_at, out):
    ctx = None
    if mode != "plain":
        ctx = ssl.create_default_context(cafile=ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    socks, session, resumed = [], None, 0
    while time.time() < start_at:
        time.sleep(0.001)
    try:
        for i in range(count):
            s = socket.create_connection((host, port), timeout=60)
            if ctx:
                s = ctx.wrap_socket(s, server_hostname="localhost",
                                    session=session if mode == "tls-resumed" else None)
                resumed += s.session_reused
            s.sendall(b"GET /sub/ch%d?transport=sse HTTP/1.1\r\nHost: x\r\n\r\n" % (i % 100))
            d = b""
            while b"retry" not in d:
                d += s.recv(4096)
            if ctx and mode == "tls-resumed" and session is None:
                session = s.session  # the TLS 1.3 ticket has arrived with the response
            socks.append(s)
        out.put(("ok", resumed))
    except Exception as e:
        out.put(("error", repr(e)))
    time.sleep(3600)  # hold the connections until the parent kills us

def stat(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    cpu = (int(f[11]) + int(f[12])) / TICK
    rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1))
    return cpu, rss

def run(mode, certdir):
    args = [BIN, "--listen", "127.0.0.1:0", "--ingest", "127.0.0.1:0", "--resp", "127.0.0.1:0"]
    if mode != "plain":
        args += ["--tls-cert", f"{certdir}/cert.pem", "--tls-key", f"{certdir}/key.pem"]
    p = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    host, port = re.search(r"public=(\S+)", line).group(1).rsplit(":", 1)
    time.sleep(0.3)
    cpu0, rss0 = stat(p.pid)
    out = Queue()
    start_at = time.time() + 0.5
    share = [N // P + (1 if i < N % P else 0) for i in range(P)]
    procs = [Process(target=client, args=(host, int(port), c, mode, f"{certdir}/cert.pem", start_at, out))
             for c in share]
    for pr in procs:
        pr.start()
    results = [out.get(timeout=600) for _ in procs]
    took = time.time() - start_at
    time.sleep(0.5)
    cpu1, rss1 = stat(p.pid)
    for pr in procs:
        pr.kill()
        pr.join()
    p.terminate()
    p.wait()
    errors = [r[1] for r in results if r[0] == "error"]
    resumed = sum(r[1] for r in results if r[0] == "ok")
    print(f"| {mode} | {N:,} | {took:.2f} s | {N / took:,.0f}/s | {(cpu1 - cpu0) * 1e6 / N:,.0f} µs "
          f"| {(rss1 - rss0) * 1024 / N:,.0f} B | {resumed:,} | {len(errors)}{' ' + errors[0] if errors else ''} |",
          flush=True)

if __name__ == "__main__":
    certdir = make_cert()
    print(f"N={N} subscribers from P={P} client processes; halley {BIN}")
    print("| mode | subscribers | wall | subscribes/s | halley CPU per subscribe | halley RSS per idle conn | resumed | client errors |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in MODES:
        run(mode, certdir)
