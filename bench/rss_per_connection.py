#!/usr/bin/env python3
"""Opens N idle SSE subscribers (over 100 channels) to a fresh halley and reports
the growth of its resident memory per connection. Usage:
  cargo build --release && python3 bench/rss_per_connection.py 15000
(The process fd limit here is 20,000; keep N below about 19,000.)"""
import socket, sys, time, os, subprocess, re
N=int(sys.argv[1])
p=subprocess.Popen([os.environ.get("HALLEY_BIN", "./target/release/halley"),"--listen","127.0.0.1:0","--ingest","127.0.0.1:0","--resp","127.0.0.1:0"],stderr=subprocess.PIPE,text=True)
line=p.stderr.readline()
pub=re.search(r"public=(\S+)",line).group(1); h,port=pub.split(":")
def rss(): return int(re.search(r"VmRSS:\s+(\d+)",open(f"/proc/{p.pid}/status").read()).group(1))
base=rss(); socks=[]
for i in range(N):
    s=socket.create_connection((h,int(port))); s.sendall(b"GET /sub/ch%d?transport=sse HTTP/1.1\r\nHost: x\r\n\r\n" % (i%100)); socks.append(s)
for s in socks:
    s.settimeout(20); d=b""
    while b"retry" not in d: d+=s.recv(4096)
time.sleep(0.5); after=rss()
print(f"N={N} rss_before={base}KiB rss_after={after}KiB per_conn={(after-base)*1024/N:.0f} bytes")
p.terminate(); p.wait()
