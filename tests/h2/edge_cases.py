"""HTTP/2 edge cases and attacks against a running halley, with Python's
sans-IO `h2` package (tests/run installs it) and hand-made frames.

Usage: edge_cases.py PUBLIC_PORT INGEST_PORT CASE
Each case exits 0 when halley behaved, or fails with what it saw. A control
subscriber (SSE over its own HTTP/2 connection) must receive every message
published during the case: an attack on one connection never hurts another.
"""
import json
import socket
import struct
import sys
import time
import urllib.request

import h2.config
import h2.connection
import h2.events
import h2.settings

HOST = "127.0.0.1"
PUBLIC, INGEST, CASE = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
DEADLINE = 20.0


def fail(msg):
    sys.exit(f"{CASE}: {msg}")


def publish(channel, data):
    req = urllib.request.Request(f"http://{HOST}:{INGEST}/pub/{channel}", data=data.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=DEADLINE) as r:
        return json.loads(r.read())


def subscribers(channel):
    try:
        with urllib.request.urlopen(f"http://{HOST}:{INGEST}/pub/{channel}", timeout=DEADLINE) as r:
            return json.loads(r.read())["subscribers"]
    except urllib.error.HTTPError:
        return 0


def wait_subscribers(channel, n):
    end = time.time() + DEADLINE
    while time.time() < end:
        if subscribers(channel) >= n:
            return
        time.sleep(0.02)
    fail(f"channel {channel} never reached {n} subscribers (has {subscribers(channel)})")


class Client:
    """An HTTP/2 client connection with prior knowledge."""

    def __init__(self, window=None, settings=None, validate=True):
        self.sock = socket.create_connection((HOST, PUBLIC), timeout=DEADLINE)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=validate)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.flush()
        self.data = {}
        self.headers = {}
        self.ended = set()
        self.resets = {}
        self.goaway = None
        self.closed = False

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def get(self, path, extra=()):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", "GET"), (":scheme", "http"), (":authority", "localhost"), (":path", path), *extra]
        self.conn.send_headers(sid, hdrs, end_stream=True)
        self.flush()
        self.data[sid] = b""
        return sid

    def post(self, path, body):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", "POST"), (":scheme", "http"), (":authority", "localhost"), (":path", path),
                ("content-type", "application/json")]
        self.conn.send_headers(sid, hdrs)
        self.conn.send_data(sid, body, end_stream=True)
        self.flush()
        self.data[sid] = b""
        return sid

    def request(self, fields, end_stream=False):
        """Sends a header list as given (pseudo-headers included)."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, fields, end_stream=end_stream)
        self.flush()
        self.data[sid] = b""
        return sid

    def websocket(self, path, extra=()):
        """An RFC 8441 extended CONNECT; the caller waits for its 200."""
        self.until(lambda: self.conn.remote_settings.enable_connect_protocol == 1, "SETTINGS_ENABLE_CONNECT_PROTOCOL")
        return self.request([(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                             (":path", path), (":authority", "localhost"), ("sec-websocket-version", "13"), *extra])

    def ws_send(self, sid, opcode, payload, end_stream=False):
        self.conn.send_data(sid, ws_frame(opcode, payload), end_stream=end_stream)
        self.flush()

    def ws_frames(self, sid):
        return ws_frames(self.data.get(sid, b""))

    def ws_texts(self, sid):
        return [json.loads(p) for op, p in self.ws_frames(sid) if op == 1]

    def pump(self, timeout=0.2, ack=True):
        """Reads what arrives within `timeout`; acknowledges DATA when `ack`
        (True, False, or a predicate on the stream id)."""
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            self.closed = True
            return False
        if not chunk:
            self.closed = True
            return False
        for ev in self.conn.receive_data(chunk):
            if isinstance(ev, h2.events.ResponseReceived):
                self.headers[ev.stream_id] = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                self.data[ev.stream_id] = self.data.get(ev.stream_id, b"") + ev.data
                if ack is True or (callable(ack) and ack(ev.stream_id)):
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                self.resets[ev.stream_id] = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = (ev.error_code, ev.additional_data)
        self.flush()
        return True

    def until(self, cond, what, ack=True):
        end = time.time() + DEADLINE
        while time.time() < end:
            if cond():
                return
            self.pump(ack=ack)
            if self.closed and not cond():
                break
        fail(f"timed out or closed waiting for {what}; data={ {k: v[-200:] for k, v in self.data.items()} } "
             f"resets={self.resets} goaway={self.goaway}")


def control():
    """The control subscriber: SSE on channel `ctl` over its own connection."""
    c = Client()
    sid = c.get("/sub/ctl?transport=sse")
    c.until(lambda: sid in c.headers, "control head")
    return c, sid


def control_gets(c, sid, n):
    for i in range(n):
        publish("ctl", f"c{i}")
    c.until(lambda: all(f"data: c{i}\n".encode() in c.data[sid] for i in range(n)), f"control messages c0..c{n-1}")


def raw(frames, read_for=1.0):
    """Sends the preface, SETTINGS and `frames` raw; returns (GOAWAY code, debug text) or None."""
    s = socket.create_connection((HOST, PUBLIC), timeout=DEADLINE)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b""))
    try:
        s.sendall(frames)
    except (BrokenPipeError, ConnectionResetError):
        pass
    got = b""
    end = time.time() + read_for + DEADLINE
    s.settimeout(0.5)
    while time.time() < end:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            if time.time() > end - DEADLINE:
                break
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        got += chunk
    at = 0
    while at + 9 <= len(got):
        length = int.from_bytes(got[at:at + 3], "big")
        kind = got[at + 3]
        payload = got[at + 9:at + 9 + length]
        if kind == 7:
            return struct.unpack(">I", payload[4:8])[0], payload[8:].decode(errors="replace")
        at += 9 + length
    return None


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal_block(fields):
    out = b""
    for n, v in fields:
        out += b"\x00" + hpack_int(len(n), 7) + n + hpack_int(len(v), 7) + v
    return out


def hpack_int(value, n, flags=0):
    top = (1 << n) - 1
    if value < top:
        return bytes([flags | value])
    out = [flags | top]
    value -= top
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


GET = literal_block([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/sub/x?timeout=30"), (b":authority", b"h")])
ENHANCE_YOUR_CALM, PROTOCOL_ERROR, COMPRESSION_ERROR = 0xB, 0x1, 0x9


def expect_goaway(frames, code, words):
    got = raw(frames)
    if got is None or got[0] != code or words not in got[1]:
        fail(f"expected GOAWAY code {code} with {words!r}, got {got}")


def case_attacks():
    c, sid = control()
    # Rapid reset: streams opened and reset at once, hundreds of them.
    expect_goaway(b"".join(frame(1, 5, 2 * i + 1, GET) + frame(3, 0, 2 * i + 1, b"\0\0\0\x08") for i in range(300)),
                  ENHANCE_YOUR_CALM, "rapid reset")
    control_gets(c, sid, 2)
    # CONTINUATION flood: a header block that never ends.
    expect_goaway(frame(1, 0, 1, GET) + b"".join(frame(9, 0, 1, b"") for _ in range(1000)),
                  ENHANCE_YOUR_CALM, "CONTINUATION")
    # PING and SETTINGS floods.
    expect_goaway(b"".join(frame(6, 0, 0, b"12345678") for _ in range(1000)), ENHANCE_YOUR_CALM, "PING flood")
    expect_goaway(b"".join(frame(4, 0, 0, b"") for _ in range(1000)), ENHANCE_YOUR_CALM, "SETTINGS flood")
    control_gets(c, sid, 2)
    # HPACK bomb: one 4 KB table entry, then thousands of 1-byte references.
    bomb = b"\x40\x01x" + hpack_int(4000, 7) + b"y" * 4000 + b"\xbe" * 4000
    expect_goaway(frame(1, 5, 1, bomb[:16000]), ENHANCE_YOUR_CALM, "header list over")
    # Oversize headers: a 20 KB field in HEADERS plus CONTINUATION.
    big = literal_block([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"x-big", b"a" * 20000)])
    expect_goaway(frame(1, 0, 1, big[:16000]) + frame(9, 4, 1, big[16000:]), ENHANCE_YOUR_CALM, "header block over")
    # Garbage HPACK, a frame over our size, and not-HTTP/2 after the preface.
    expect_goaway(frame(1, 5, 1, b"\x80"), COMPRESSION_ERROR, "index 0")
    expect_goaway(frame(0, 0, 1, b"x" * 20000), 0x6, "over our limit")
    control_gets(c, sid, 3)
    metrics = urllib.request.urlopen(f"http://{HOST}:{INGEST}/metrics", timeout=DEADLINE).read().decode()
    line = 'halley_h2_connection_errors_total{code="enhance_your_calm"}'
    count = [l for l in metrics.splitlines() if l.startswith(line)]
    if not count or int(count[0].split()[-1]) < 6:
        fail(f"/metrics: {count}")


def case_flow_control():
    """Two streams on one connection with a 100-byte initial window: the one
    whose window the client opens receives everything; the other, never
    opened, is reset (CANCEL) once its waiting DATA passes the cap, and
    the control subscriber on another connection keeps receiving."""
    c, sid = control()
    two = Client(window=100)
    slow = two.get("/sub/flow?transport=stream")
    fast = two.get("/sub/flow?transport=stream")
    two.conn.increment_flow_control_window(1 << 30)
    two.conn.increment_flow_control_window(1 << 30, stream_id=fast)
    two.flush()
    wait_subscribers("flow", 2)
    payload = "z" * 30000
    only_fast = lambda s: s == fast
    for i in range(50):
        publish("flow", f"{i}-{payload}")
        two.pump(0.01, ack=only_fast)
    two.until(lambda: two.data[fast].count(b'"channel":"flow"') == 50, "all 50 on the open stream", ack=only_fast)
    two.until(lambda: slow in two.resets, "the stalled stream reset", ack=only_fast)
    if two.resets[slow] != 8:
        fail(f"stalled stream reset with {two.resets[slow]}, want CANCEL (8)")
    if len(two.data[slow]) > 100:
        fail(f"the stalled stream got {len(two.data[slow])} bytes past its 100-byte window")
    control_gets(c, sid, 2)


def case_reset_mid_stream():
    """RST_STREAM from the client mid-stream: the subscriber is gone, the
    connection and its other streams go on."""
    c = Client()
    a = c.get("/sub/rs?transport=sse")
    b = c.get("/sub/rs?transport=sse")
    wait_subscribers("rs", 2)
    publish("rs", "one")
    c.until(lambda: b"data: one" in c.data[a] and b"data: one" in c.data[b], "one on both")
    c.conn.reset_stream(a)
    c.flush()
    end = time.time() + DEADLINE
    while subscribers("rs") != 1 and time.time() < end:
        c.pump(0.05)
    if subscribers("rs") != 1:
        fail(f"subscribers after the reset: {subscribers('rs')}")
    publish("rs", "two")
    c.until(lambda: b"data: two" in c.data[b], "two on the other stream")
    # A new stream still opens on the same connection.
    p = c.get("/sub/rs?timeout=0")
    c.until(lambda: p in c.ended, "a poll after the reset")


def case_many_streams():
    """Over the concurrent stream limit (128): extra streams are refused,
    the first 128 all receive."""
    c = Client()
    c.until(lambda: c.conn.remote_settings.max_concurrent_streams == 128, "SETTINGS_MAX_CONCURRENT_STREAMS 128")
    ids = [c.get("/sub/many?transport=sse") for _ in range(128)]
    wait_subscribers("many", 128)
    publish("many", "all")
    c.until(lambda: all(b"data: all" in c.data[i] for i in ids), "the message on 128 streams")
    # The h2 package keeps to the limit itself: go past it with raw frames.
    s = socket.create_connection((HOST, PUBLIC), timeout=DEADLINE)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"")
              + b"".join(frame(1, 5, 2 * i + 1, GET) for i in range(130)))
    refused = frame(3, 0, 257, b"\0\0\0\x07")
    got = b""
    end = time.time() + DEADLINE
    while refused not in got and time.time() < end:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    if refused not in got:
        fail("no RST_STREAM(REFUSED_STREAM) for stream 257, the 129th")


def case_hundred_polls():
    """100 long-polls multiplexed on one connection, all answered by one publish."""
    c = Client()
    ids = [c.get("/sub/hundred?timeout=15") for _ in range(100)]
    wait_subscribers("hundred", 100)
    publish("hundred", "to all")
    c.until(lambda: all(i in c.ended for i in ids), "100 poll answers")
    for i in ids:
        body = json.loads(c.data[i])
        if [m["data"] for m in body["messages"]] != ["to all"]:
            fail(f"stream {i}: {body}")


def case_engines():
    """Bayeux long-polling and a Pushlet stream, each as streams of one
    connection: handshake, subscribe, a held connect answered by a publish."""
    c = Client()

    def bayeux(msgs):
        sid = c.post("/bayeux", json.dumps(msgs).encode())
        c.until(lambda: sid in c.ended, f"Bayeux answer to {msgs[0]['channel']}")
        return json.loads(c.data[sid])

    hs = bayeux([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}])
    client_id = hs[0]["clientId"]
    sub = bayeux([{"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/bx"}])
    if not sub[0]["successful"]:
        fail(f"subscribe: {sub}")
    bayeux([{"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}])
    held = c.post("/bayeux", json.dumps([{"channel": "/meta/connect", "clientId": client_id,
                                         "connectionType": "long-polling"}]).encode())
    pl = c.get("/pushlet/pushlet.srv?p_event=join-listen&p_format=xml&p_subject=/bx")
    c.until(lambda: b"join-listen-ack" in c.data[pl], "the Pushlet stream's ack")
    c.pump(0.3)
    if held in c.ended:
        fail(f"the connect was not held: {c.data[held]}")
    publish("bx", "to engines")
    c.until(lambda: held in c.ended and b'data="to engines"' in c.data[pl], "the message on both engines")
    got = json.loads(c.data[held])
    if not any(m.get("data") == "to engines" and m.get("channel") == "/bx" for m in got):
        fail(f"Bayeux connect answer: {got}")


def case_slow_body():
    """A request whose body never comes gets 408 within the head timeout
    (the server runs with --head-timeout-secs 1); the connection goes on."""
    c = Client()
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":authority", "h"), (":path", "/bayeux")])
    c.flush()
    c.data[sid] = b""
    c.until(lambda: c.headers.get(sid, {}).get(":status") == "408", "408 for the body that never came")
    p = c.get("/sub/slow?timeout=0")
    c.until(lambda: p in c.ended, "a poll on the same connection")


def case_lifecycle():
    """Over h2 streams (the server runs with --heartbeat-secs 1 and
    --max-stream-age-secs 3): heartbeats arrive, a poll times out with an
    empty answer, a deleted channel ends its stream with the end hint and
    END_STREAM, the maximum age ends another, and a WebSocket stream gets
    ping heartbeats and a 1001 close at its maximum age; the connection
    stays usable."""
    c = Client()
    beat = c.get("/sub/life?transport=sse")
    ws = c.websocket("/sub/life?transport=ws")
    gone = c.get("/sub/doomed?transport=stream")
    poll = c.get("/sub/quiet?timeout=1")
    wait_subscribers("doomed", 1)
    c.until(lambda: b":\n\n" in c.data[beat], "a heartbeat comment on the SSE stream")
    c.until(lambda: poll in c.ended, "the poll's timeout answer")
    if json.loads(c.data[poll])["messages"] != []:
        fail(f"poll: {c.data[poll]}")
    req = urllib.request.Request(f"http://{HOST}:{INGEST}/pub/doomed", method="DELETE")
    urllib.request.urlopen(req, timeout=DEADLINE).read()
    c.until(lambda: gone in c.ended, "the deleted channel's stream ended")
    c.until(lambda: beat in c.ended, "the SSE stream ended at its maximum age")
    if b": end max-age" not in c.data[beat]:
        fail(f"no end hint: {c.data[beat][-200:]}")
    c.until(lambda: ws in c.ended, "the WebSocket stream ended at its maximum age")
    frames = c.ws_frames(ws)
    if (9, b"") not in frames or frames[-1] != (8, struct.pack(">H", 1001) + b"max-age"):
        fail(f"WebSocket frames: {frames}")
    p = c.get("/sub/life?timeout=0")
    c.until(lambda: p in c.ended, "a request after the streams ended")


def case_catchup():
    """A resume's catch-up larger than the per-stream cap (1.2 MB, cap 1 MiB)
    to a client with the default 64 KiB window is not cut: like over
    HTTP/1.1, the catch-up is bounded by history, not by the cap."""
    for i in range(30):
        publish("cu", f"{i:02d}-" + "c" * 40000)
    c = Client()
    sid = c.get("/sub/cu?transport=stream&backlog=30")
    c.until(lambda: c.data[sid].count(b'"channel":"cu"') == 30 or sid in c.resets, "the whole catch-up")
    if sid in c.resets:
        fail(f"the catch-up stream was reset ({c.resets[sid]})")


def case_goaway_on_shutdown():
    """Run with the server about to stop: waits for GOAWAY and the streams'
    clean ends (the test sends SIGTERM after this prints 'ready')."""
    c = Client()
    sse = c.get("/sub/bye?transport=sse")
    poll = c.get("/sub/bye?timeout=30")
    ws = c.websocket("/sub/bye?transport=ws")
    wait_subscribers("bye", 3)
    print("ready", flush=True)
    c.until(lambda: c.goaway is not None and {sse, poll, ws} <= c.ended, "GOAWAY and the three streams ended")
    if c.ws_frames(ws)[-1:] != [(8, struct.pack(">H", 1001) + b"shutdown")]:
        fail(f"the WebSocket's last frame: {c.ws_frames(ws)[-1:]}")
    if c.goaway[0] != 0:
        fail(f"GOAWAY code {c.goaway[0]}")
    body = json.loads(c.data[poll])
    if body["messages"] != []:
        fail(f"poll answer {body}")


def ws_frame(opcode, payload, mask=b"\x01\x02\x03\x04"):
    """A masked client WebSocket frame (RFC 6455 5.2), FIN set."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_frames(buf):
    """The server's (unmasked) frames in `buf`: [(opcode, payload)], whole ones only."""
    out, at = [], 0
    while at + 2 <= len(buf):
        n, head = buf[at + 1] & 0x7F, 2
        if n == 126:
            n, head = struct.unpack(">H", buf[at + 2:at + 4])[0], 4
        elif n == 127:
            n, head = struct.unpack(">Q", buf[at + 2:at + 10])[0], 10
        if at + head + n > len(buf):
            break
        out.append((buf[at] & 0x0F, buf[at + head:at + head + n]))
        at += head + n
    return out


def metric(name):
    text = urllib.request.urlopen(f"http://{HOST}:{INGEST}/metrics", timeout=DEADLINE).read().decode()
    lines = [l for l in text.splitlines() if l.startswith(name + " ")]
    return int(float(lines[0].split()[-1])) if lines else None


def case_websocket():
    """WebSockets over HTTP/2 (RFC 8441): two sockets and an SSE stream on
    one connection all receive; subscribe and unsubscribe commands are
    acknowledged and take effect; ping, the close handshake (close frame
    with END_STREAM), a client reset; a Bayeux socket; the control
    subscriber on another connection receives throughout."""
    ctl, ctl_sid = control()
    c = Client()
    a = c.websocket("/sub/w1?transport=ws")
    b = c.websocket("/sub/w2?transport=ws")
    sse = c.get("/sub/w1?transport=sse")
    c.until(lambda: c.headers.get(a, {}).get(":status") == "200" and c.headers.get(b, {}).get(":status") == "200",
            "200 for both extended CONNECTs")
    if a in c.ended or b in c.ended or "sec-websocket-accept" in c.headers[a]:
        fail(f"a socket's 200 must not end the stream nor carry an accept key: {c.headers}")
    wait_subscribers("w1", 2)
    wait_subscribers("w2", 1)
    envelopes = lambda sid: [m["data"] for m in c.ws_texts(sid) if "data" in m]
    one = publish("w1", "one")["id"]
    c.until(lambda: envelopes(a) == ["one"] and b"data: one\n" in c.data[sse], "one on the socket and the SSE stream")
    if c.ws_texts(a)[0]["id"] != one:
        fail(f"envelope id: {c.ws_texts(a)}")
    # b adds w1 with a command; the ack comes first, then w1's messages.
    c.ws_send(b, 1, json.dumps({"subscribe": ["w1"]}))
    c.until(lambda: {"subscribed": ["w1"]} in c.ws_texts(b), "the subscribe ack")
    publish("w1", "two")
    c.until(lambda: envelopes(a) == ["one", "two"] and envelopes(b) == ["two"]
            and b"data: two\n" in c.data[sse], "two on both sockets and the SSE stream")
    c.ws_send(b, 1, json.dumps({"unsubscribe": ["w1"]}))
    c.until(lambda: {"unsubscribed": ["w1"]} in c.ws_texts(b), "the unsubscribe ack")
    publish("w1", "three")
    publish("w2", "four")
    c.until(lambda: envelopes(a)[-1:] == ["three"] and envelopes(b)[-1:] == ["four"], "three on a, four on b")
    if envelopes(b) != ["two", "four"]:
        fail(f"b after its unsubscribe: {envelopes(b)}")
    # Ping, a bad command: answered on the socket, which goes on.
    c.ws_send(b, 9, "hi")
    c.until(lambda: (10, b"hi") in c.ws_frames(b), "the pong")
    c.ws_send(b, 1, "nope")
    c.until(lambda: any("error" in m for m in c.ws_texts(b)), "an error frame for a bad command")
    control_gets(ctl, ctl_sid, 2)
    # Close handshake: the server's close frame ends the stream; the client's half follows.
    c.ws_send(a, 8, struct.pack(">H", 1000))
    c.until(lambda: a in c.ended, "END_STREAM after the server's close frame")
    if c.ws_frames(a)[-1] != (8, struct.pack(">H", 1000)):
        fail(f"a's last frame: {c.ws_frames(a)[-1]}")
    c.conn.end_stream(a)
    c.flush()
    # A reset ends a socket as cleanly.
    c.conn.reset_stream(b)
    c.flush()
    end = time.time() + DEADLINE
    while (subscribers("w1"), subscribers("w2")) != (1, 0) and time.time() < end:
        c.pump(0.05)
    if (subscribers("w1"), subscribers("w2")) != (1, 0):
        fail(f"subscribers after the close and the reset: w1 {subscribers('w1')}, w2 {subscribers('w2')}")
    publish("w1", "five")
    c.until(lambda: b"data: five\n" in c.data[sse], "five on the SSE stream after both sockets ended")
    if c.resets or c.goaway:
        fail(f"resets {c.resets} goaway {c.goaway}")
    # A Bayeux socket on the same connection.
    bx = c.websocket("/bayeux")
    c.until(lambda: c.headers.get(bx, {}).get(":status") == "200", "200 for the Bayeux socket")
    c.ws_send(bx, 1, json.dumps([{"channel": "/meta/handshake", "version": "1.0",
                                  "supportedConnectionTypes": ["websocket"]}]))
    c.until(lambda: any(m[0].get("clientId") for m in c.ws_texts(bx)), "the Bayeux handshake reply")
    cid = [m[0]["clientId"] for m in c.ws_texts(bx) if m[0].get("clientId")][0]
    c.ws_send(bx, 1, json.dumps([{"channel": "/meta/subscribe", "clientId": cid, "subscription": "/wbx"},
                                 {"channel": "/meta/connect", "clientId": cid, "connectionType": "websocket"}]))
    wait_subscribers("wbx", 1)
    c.ws_send(bx, 1, json.dumps([{"channel": "/meta/connect", "clientId": cid, "connectionType": "websocket"}]))
    publish("wbx", "to bayeux")
    c.until(lambda: any(m.get("data") == "to bayeux" for msgs in c.ws_texts(bx) for m in msgs),
            "the message on the Bayeux socket")
    control_gets(ctl, ctl_sid, 2)
    if (metric("halley_h2_websockets_total") or 0) < 3:
        fail(f"halley_h2_websockets_total is {metric('halley_h2_websockets_total')}, want 3")


def case_websocket_malformed():
    """Extended CONNECTs that are malformed (RFC 8441 4, RFC 9113 8.5) are
    reset with PROTOCOL_ERROR; well-formed ones halley does not serve get a
    4xx that says why; the connection and a control subscriber go on."""
    ctl, ctl_sid = control()
    c = Client(validate=False)
    c.until(lambda: c.conn.remote_settings.enable_connect_protocol == 1, "SETTINGS_ENABLE_CONNECT_PROTOCOL")
    base = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
            (":path", "/sub/m?transport=ws"), (":authority", "h"), ("sec-websocket-version", "13")]
    without = lambda name: [f for f in base if f[0] != name]
    resets = {
        "no :path": without(":path"),
        "no :scheme": without(":scheme"),
        ":protocol on GET": [(":method", "GET"), *base[1:]],
        "a tunnel with :path": [(":method", "CONNECT"), (":authority", "h"), (":scheme", "http"), (":path", "/")],
    }
    # A GET is whole at END_STREAM; a CONNECT at its HEADERS.
    reset_ids = {why: c.request(fields, end_stream=fields[0][1] != "CONNECT") for why, fields in resets.items()}
    with_end = c.request(base, end_stream=True)
    answers = {
        "CONNECT tunnels are not served": (405, [(":method", "CONNECT"), (":authority", "h:443")]),
        "other than websocket": (400, [(n, "chat" if n == ":protocol" else v) for n, v in base]),
        "without Sec-WebSocket-Version": (400, without("sec-websocket-version")),
        "only 13 is supported": (426, [(n, "8" if n == "sec-websocket-version" else v) for n, v in base]),
        "use transport=ws": (400, [(n, "/sub/m?transport=sse" if n == ":path" else v) for n, v in base]),
        "method not allowed": (405, [(n, "/" if n == ":path" else v) for n, v in base]),
    }
    answer_ids = {why: (status, c.request(fields)) for why, (status, fields) in answers.items()}
    get_ws = c.get("/sub/m?transport=ws")
    c.until(lambda: all(sid in c.resets for sid in [*reset_ids.values(), with_end])
            and all(sid in c.ended for _, sid in answer_ids.values()) and get_ws in c.ended, "every answer")
    for why, sid in [*reset_ids.items(), ("END_STREAM on the CONNECT", with_end)]:
        if c.resets[sid] != PROTOCOL_ERROR:
            fail(f"{why}: reset with {c.resets[sid]}, want PROTOCOL_ERROR")
    for why, (status, sid) in answer_ids.items():
        got = (c.headers.get(sid, {}).get(":status"), c.data[sid].decode(errors="replace"))
        if got[0] != str(status) or why not in got[1]:
            fail(f"{why}: got {got}, want {status}")
    if c.headers[get_ws][":status"] != "400" or b"Upgrade" not in c.data[get_ws]:
        fail(f"GET transport=ws over h2: {c.headers[get_ws]} {c.data[get_ws]}")
    if subscribers("m") != 0:
        fail(f"refused sockets left subscribers: {subscribers('m')}")
    ok = c.websocket("/sub/m?transport=ws")
    c.until(lambda: c.headers.get(ok, {}).get(":status") == "200", "a good socket on the same connection")
    control_gets(ctl, ctl_sid, 2)


def case_websocket_limits():
    """Over HTTP/2 as over HTTP/1.1: a frame over 64 KiB is refused with a
    1009 close (and END_STREAM) before its payload; a socket whose window
    stays shut is cut (RST_STREAM CANCEL) like a slow consumer, while a
    socket on the same connection that reads receives everything."""
    ctl, ctl_sid = control()
    c = Client()
    big = c.websocket("/sub/wl?transport=ws")
    c.until(lambda: c.headers.get(big, {}).get(":status") == "200", "200")
    c.conn.send_data(big, bytes([0x81, 0xFF]) + struct.pack(">Q", 100 * 1024) + b"abcd")
    c.flush()
    c.until(lambda: big in c.ended, "the oversize frame's close")
    if c.ws_frames(big)[-1][0] != 8 or struct.unpack(">H", c.ws_frames(big)[-1][1][:2])[0] != 1009:
        fail(f"want close 1009: {c.ws_frames(big)}")
    two = Client(window=100)
    slow = two.websocket("/sub/wl?transport=ws")
    fast = two.websocket("/sub/wl?transport=ws")
    two.conn.increment_flow_control_window(1 << 30)
    two.conn.increment_flow_control_window(1 << 30, stream_id=fast)
    two.flush()
    wait_subscribers("wl", 2)
    only_fast = lambda s: s == fast
    for i in range(50):
        publish("wl", f"{i}-" + "z" * 30000)
        two.pump(0.01, ack=only_fast)
    two.until(lambda: len(two.ws_texts(fast)) == 50, "all 50 on the open socket", ack=only_fast)
    two.until(lambda: slow in two.resets, "the stalled socket reset", ack=only_fast)
    if two.resets[slow] != 8:
        fail(f"stalled socket reset with {two.resets[slow]}, want CANCEL (8)")
    control_gets(ctl, ctl_sid, 2)


globals()["case_" + CASE]()
print("ok")
