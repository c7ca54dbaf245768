#!/usr/bin/env python3
"""Opens N idle SSE subscribers (over 100 channels) to a fresh halley and reports
the growth of its resident memory per connection. Usage:
  cargo build --release && python3 bench/rss_per_connection.py 15000 [--tls]
With --tls, halley gets a test certificate (made here with the openssl CLI)
and every subscriber completes a TLS handshake (Python's ssl module) before
subscribing; the number then includes the TLS state of an idle connection.
(The process fd limit here is 20,000; keep N below about 19,000.)"""
import socket, ssl, sys, time, os, subprocess, re, tempfile
N=int(sys.argv[1]); TLS="--tls" in sys.argv
args=[os.environ.get("HALLEY_BIN", "./target/release/halley"),"--listen","127.0.0.1:0","--ingest","127.0.0.1:0","--resp","127.0.0.1:0"]
ctx=None
if TLS:
    d=tempfile.mkdtemp(prefix="halley-rss-tls-")
    run=lambda *a: subprocess.run(["openssl",*a],cwd=d,check=True,capture_output=True)
    run("req","-x509","-newkey","ec","-pkeyopt","ec_paramgen_curve:P-256","-nodes","-days","2","-subj","/CN=localhost",
        "-addext","subjectAltName=DNS:localhost,IP:127.0.0.1","-keyout","key.pem","-out","cert.pem")
    args+=["--tls-cert",f"{d}/cert.pem","--tls-key",f"{d}/key.pem"]
    ctx=ssl.create_default_context(cafile=f"{d}/cert.pem")
p=subprocess.Popen(args,stderr=subprocess.PIPE,text=True)
line=p.stderr.readline()
pub=re.search(r"public=(\S+)",line).group(1); h,port=pub.split(":")
def rss(): return int(re.search(r"VmRSS:\s+(\d+)",open(f"/proc/{p.pid}/status").read()).group(1))
base=rss(); socks=[]; t0=time.time()
for i in range(N):
    s=socket.create_connection((h,int(port)))
    if ctx: s=ctx.wrap_socket(s,server_hostname="localhost")
    s.sendall(b"GET /sub/ch%d?transport=sse HTTP/1.1\r\nHost: x\r\n\r\n" % (i%100)); socks.append(s)
for s in socks:
    s.settimeout(20); d=b""
    while b"retry" not in d: d+=s.recv(4096)
took=time.time()-t0
time.sleep(0.5); after=rss()
print(f"N={N} tls={TLS} rss_before={base}KiB rss_after={after}KiB per_conn={(after-base)*1024/N:.0f} bytes ({N/took:.0f} subscribes/s from one client)")
p.terminate(); p.wait()
