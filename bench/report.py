#!/usr/bin/env python3
"""Turns one scenario's loadgen JSON (one file per server) into a markdown
report. Called by bench/compare.sh; can be re-run on a kept state dir:

  python3 bench/report.py --state /tmp/halley-bench/<stamp>/state \
      --scenario broadcast --servers halley,nchan,pushpin --out bench/results/<date>-broadcast

Writes <out>.md and copies each server's raw loadgen JSON to <out>.<server>.json.
A server is shown by the name in <state>/label.<server> when there is one
(compare.sh writes "halley (base <rev>)" for halley-base), else by its own.
With matplotlib (compare.sh installs it) the report embeds SVG charts drawn
beside it, <out>.<figure>.svg (bench/charts.py).

Charts for reports already written (the committed ones in bench/results/):

  python3 bench/report.py --charts-from bench/results/2026-11-21-broadcast [--charts-out DIR]

reads <stem>.<server>.json, writes the SVGs beside <stem>.md (or into DIR)
and puts the "## Charts" section into <stem>.md (replacing an earlier one).
"""
import argparse
import csv
import io
import json
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import charts  # noqa: E402

TITLES = {
    "idle": "Idle connections",
    "broadcast": "Broadcast",
    "many-channels": "Many channels",
    "longpoll-churn": "Long-poll churn",
    "connect-storm": "Connect storm",
    "publish-rate": "Publish rate",
    "scale-out": "Scale-out on Redis",
    "h2": "HTTP/2 subscribers",
}

WHAT = {
    "idle": "{IDLE_N} SSE subscribers over 100 channels, connected at {CONNECT_RATE}/s and held "
            "for {IDLE_HOLD} s with nothing published. Reports the time until all were connected and "
            "the server's resident memory per connection: (RSS peak - RSS at start) / connected, "
            "summed over the sampled server processes.",
    "broadcast": "{BC_N} SSE subscribers on one channel; one publisher sends to that channel at each rate "
                 "of {BC_STEPS} messages/s ({STEP_SECS} s per step, {SETTLE} s settle), so deliveries/s = "
                 "rate x subscribers. A step is sustained when nothing is lost (no missing, no publish "
                 "errors) and p99 latency is at most {limit} ms; the headline is the highest "
                 "deliveries/s before the first step that is not.",
    "many-channels": "{MC_N} SSE subscribers over {MC_CH} channels ({per_channel} each); each message goes "
                     "to a random channel, at rates {MC_STEPS} messages/s ({STEP_SECS} s per step). "
                     "Same sustained rule as broadcast.",
    "longpoll-churn": "{LP_N} long-poll clients on one channel, each re-polling (with the last id it got) "
                      "right after every answer, at rates {LP_STEPS} messages/s ({STEP_SECS} s per step). "
                      "Proof that no client missed a message: `lost` = 0 (per subscriber, every sequence "
                      "number arrived) at every step. A step is sustained when nothing is lost and p99 is at "
                      "most {limit} ms (each delivery includes a re-poll round trip).",
    "connect-storm": "{ST_N} SSE connections opened at once (--connect-rate 0) over 100 channels: the "
                     "time until all are subscribed (response head received), and connect latency "
                     "percentiles.",
    "publish-rate": "Closed-loop publishing with nobody subscribed: one channel, {PR_PAYLOAD}-byte payloads. "
                    "redis-server (started fresh with `--save '' --appendonly no`) is measured first, in the same "
                    "run, as the reference. RESP PUBLISH with redis-benchmark: sequential (`-c 1`, one command at "
                    "a time, {PR_SEQ_N} requests) and pipelined (`-c {PR_PIPE_C} -P {PR_PIPE_P}`, {PR_PIPE_N} "
                    "requests). With `loadgen publish-rate` (one keep-alive connection, one request at a time, "
                    "{PR_SECS} s after 0.5 s of warm-up): HTTP `POST /pub/{{ch}}` (halley's ingest port, Nchan's "
                    "publisher location) and RESP PUBLISH (halley, redis-server), with the answer time of every "
                    "request. The ratio is the rate over redis-server's for the same shape in this run: "
                    "redis-benchmark rows over redis-benchmark against redis-server, loadgen rows (HTTP too) over "
                    "loadgen's sequential RESP PUBLISH against redis-server.",
}

WHAT["scale-out"] = (
    "One redis-server (started fresh, `--save '' --appendonly no`, emptied with FLUSHALL before each "
    "configuration) shared by every configuration of this run: halley as 1 node without `--redis` (the "
    "embedded mode, the reference), 1, 2 and 3 nodes with `--redis`, and Nchan with `nchan_redis_url` "
    "(`nchan_use_redis on`). Every node is started fresh with halley's usual flags (`--threads 2`) and its own "
    "ports; all of them share this machine's cores, so more nodes here measure what the backplane costs, "
    "not added capacity. loadgen spreads the subscribers over the nodes (subscriber i on node i mod n) and "
    "publishes through all of them in turn (message k through node k mod n). Broadcast: {SO_N} SSE "
    "subscribers on one channel at {SO_STEPS} messages/s ({SO_STEP_SECS} s per step, {SO_SETTLE} s settle); "
    "same sustained rule as broadcast (nothing lost, p99 at most {limit} ms). Latency: {SO_LAT_N} SSE "
    "subscribers over {SO_LAT_CH} channels, each message to a random channel, at {SO_LAT_STEPS} publishes/s; "
    "the latency the backplane adds is that step's p99 minus the p99 of halley without `--redis` in the same "
    "run (goal: at most 2 ms).")

WHAT["h2"] = (
    "halley alone, started fresh for each configuration with its usual flags (`--threads 2`): {H2_N} SSE "
    "subscribers on one channel, first as {H2_N} HTTP/1.1 connections, then as HTTP/2 streams, {H2_STREAMS} "
    "to an h2c connection (prior knowledge; `loadgen --h2-streams {H2_STREAMS}`, a client of its own, not "
    "halley's codec). One publisher broadcasts at {H2_STEPS} messages/s ({STEP_SECS} s per step, {SETTLE} s "
    "settle), so deliveries/s = rate x subscribers; same sustained rule as broadcast (nothing lost, p99 at "
    "most {limit} ms). Each stream counts as one subscriber for every number (connect time until its response "
    "HEADERS, losses, order, latency). Server RSS and CPU are sampled from /proc by loadgen. Then, on another "
    "fresh halley, request rates with nghttp2's `h2load`: {H2LOAD_N} long-polls answered at once "
    "(`/sub/x?timeout=0`) over h2c with 10 streams in flight on each of 10 connections, and over HTTP/1.1 "
    "one request at a time on 10 and on 100 connections.")

# h2 configurations and h2load measurements: how the reports name them.
H2_LABELS = {"halley-h1": "halley, HTTP/1.1 ({H2_N} connections)",
             "halley-h2": "halley, h2c ({h2_conns} connections × {H2_STREAMS} streams)"}
H2LOAD = [("h2c-c10-m10", "h2c, 10 connections × 10 streams in flight"),
          ("h1-c10-m1", "HTTP/1.1, 10 connections, 1 request at a time"),
          ("h1-c100-m1", "HTTP/1.1, 100 connections, 1 request at a time")]


def load_h2load(state, key):
    """One h2load run: requests/s, counts and halley's CPU, from its text output."""
    stem = os.path.join(state, f"h2load.{key}")
    out = read(stem + ".out")
    m = {"rc": read(stem + ".rc", "not run"), "cmd": read(stem + ".cmd"), "loadavg": read(stem + ".loadavg"),
         "out": out, "rps": None, "secs": None, "done": None, "ok": None, "failed": None, "mean": None,
         "cores": None}
    f = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    if f:
        m["secs"] = float(f.group(1)) / (1000 if f.group(2) == "ms" else 1)
        m["rps"] = float(f.group(3))
    r = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    if r:
        m["total"], m["done"], m["ok"] = int(r.group(1)), int(r.group(2)), int(r.group(3))
        m["failed"] = int(r.group(4)) + int(r.group(5)) + int(r.group(6))
    t = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
    if t:
        m["mean"] = t.group(1)
    cpu = read(stem + ".cpu").split()
    if len(cpu) == 3 and m["secs"]:
        try:
            m["cores"] = (int(cpu[1]) - int(cpu[0])) / int(cpu[2]) / m["secs"]
        except ValueError:
            pass
    return m


def h2_md(state, servers, results, limit):
    """The h2 summary: both configurations side by side per step, memory and
    CPU, then the h2load table. Returns (markdown lines, commands)."""
    head = ["configuration", "connected", "all connected (ms)", "highest sustained deliveries/s (rate)",
            "server RSS start → peak (KiB)", "RSS growth per subscriber (bytes)", "server CPU, whole run (s)",
            "loadgen CPU (s)"]
    rows = []
    for label, d in with_data({s: results[s] for s in servers}, head, rows):
        best, _ = sustained(d.get("steps") or [], limit)
        st, pk = g(d, "server", "rss_kib_start"), g(d, "server", "rss_kib_peak")
        conn = d.get("connected") or 0
        per = (pk - st) * 1024 / conn if (st is not None and pk is not None and conn) else None
        rows.append([label, f"{num(d.get('connected'))} / {num(d.get('subscribers'))}",
                     ms(g(d, "connect_ms", "all_connected_ms")),
                     f"{num(best.get('deliveries_per_sec'))} ({num(best.get('rate'))} msg/s)" if best else "none",
                     f"{num(st)} → {num(pk)}", num(per)] + cpu_cells(d))
    md = ["### Summary", "", table(head, rows), ""]
    srows = []
    rates = sorted({st.get("rate") for s in servers if results[s]["data"]
                    for st in results[s]["data"].get("steps") or []} - {None})
    for rate in rates:
        for s in servers:
            d = results[s]["data"]
            st = next((x for x in (d.get("steps") or []) if x.get("rate") == rate), None) if d else None
            if not st:
                continue
            l = st.get("latency_ms") or {}
            srows.append([num(rate), results[s]["label"], num(st.get("deliveries_per_sec")), num(st.get("lost")),
                          num(st.get("out_of_order")),
                          f"{ms(l.get('p50'))} / {ms(l.get('p99'))} / {ms(l.get('p999'))}",
                          num(st.get("server_cpu_secs"), 1), num(st.get("loadgen_cpu_secs"), 1),
                          "yes" if step_ok(st, limit)[0] else f"no ({step_ok(st, limit)[1]})"])
    md += ["### Step by step", "",
           table(["rate (msg/s)", "configuration", "deliveries/s", "lost", "out of order",
                  "p50 / p99 / p99.9 (ms)", "server CPU in step (s)", "loadgen CPU in step (s)", "sustained"],
                 srows), ""]
    hrows, cmds = [], []
    for key, what in H2LOAD:
        m = load_h2load(state, key)
        if m["cmd"]:
            cmds.append(f"# h2load {key} (load average before: {m['loadavg'] or '?'})\n{m['cmd']}")
        if m["rps"] is None:
            why = {"skipped": "skipped: time budget used up", "not run": "not run"}.get(m["rc"], f"failed: exit {m['rc']}")
            hrows.append([what, why, "", "", "", ""])
            continue
        hrows.append([what, num(m["rps"]), f"{num(m['ok'])} / {num(m.get('total'))}", num(m["failed"]),
                      m["mean"] or "–", num(m["cores"], 2) if m["cores"] is not None else "–"])
    md += ["### Request rates (h2load)", "",
           table(["client", "requests/s", "succeeded / total", "failed, errored or timed out",
                  "mean time per request", "halley CPU (cores)"], hrows), "",
           "halley CPU (cores) = halley's CPU ticks over the run (from /proc) / h2load's own time.", ""]
    return md, cmds


# scale-out configurations: how the reports name them.
SO_LABELS = {"halley-1": "halley, 1 node, no Redis", "halley-1-redis": "halley, 1 node, --redis",
             "halley-2-redis": "halley, 2 nodes, --redis", "halley-3-redis": "halley, 3 nodes, --redis",
             "nchan-redis": "Nchan, nchan_redis_url"}


def scale_out_md(state, servers, results, limit):
    """The scale-out summary: per configuration, the highest lossless deliveries/s,
    p99 there, the 30 msg/s step, and the latency run at 1,000 publishes/s."""
    lat = {s: load(state, "scale-out-lat", s) for s in servers}
    base = None
    if lat.get("halley-1") and lat["halley-1"]["data"]:
        st = (lat["halley-1"]["data"].get("steps") or [None])[-1]
        base = g(st, "latency_ms", "p99") if st else None
    head = ["configuration", "nodes", "connected", "highest deliveries/s with nothing lost (p99 ≤ limit)",
            "p99 there (ms)", "30 msg/s step: lost / p99 (ms)", "1,000 publishes/s: lost / p50 / p99 (ms)",
            "added p99 at 1,000/s vs no Redis (ms)", "server CPU, both runs (s)"]
    rows = []
    for s in servers:
        r = results[s]
        label = r["label"]
        note = status_note(r)
        if note:
            rows.append([label, note] + [""] * (len(head) - 2))
            continue
        d = r["data"]
        steps = d.get("steps") or []
        best, _ = sustained(steps, limit)
        lossless = [st for st in steps if not (st.get("lost") or 0) and not (st.get("publish_errors") or 0)]
        top = max(lossless, key=lambda st: st.get("deliveries_per_sec") or 0) if lossless else None
        s30 = next((st for st in steps if st.get("rate") == 30), None)
        ld = lat[s]["data"]
        lst = (ld.get("steps") or [None])[-1] if ld else None
        lp99 = g(lst, "latency_ms", "p99") if lst else None
        added = (lp99 - base) if (lp99 is not None and base is not None and s != "halley-1") else None
        cpu = [g(d, "server", "cpu_secs"), g(ld, "server", "cpu_secs") if ld else None]
        nodes = {"halley-1": "1", "halley-1-redis": "1", "halley-2-redis": "2", "halley-3-redis": "3",
                 "nchan-redis": "1 (2 workers)"}.get(s, "?")
        rows.append([
            label, nodes, f"{num(d.get('connected'))} / {num(d.get('subscribers'))}",
            (f"{num(best.get('deliveries_per_sec'))} ({num(best.get('rate'))} msg/s)" if best else "none")
            + (f"; lossless up to {num(top.get('deliveries_per_sec'))} ({num(top.get('rate'))} msg/s)"
               if top and top is not best else ""),
            ms(g(best, "latency_ms", "p99")) if best else "–",
            f"{num(s30.get('lost'))} / {ms(g(s30, 'latency_ms', 'p99'))}" if s30 else "–",
            (f"{num(lst.get('lost'))} / {ms(g(lst, 'latency_ms', 'p50'))} / {ms(lp99)}" if lst
             else status_note(lat[s]) or "–"),
            ("reference" if s == "halley-1" else (f"{added:+.1f}" if added is not None else "–")),
            " + ".join(num(c, 1) for c in cpu),
        ])
    md = ["### Scale-out summary", "", table(head, rows), ""]
    goals = []
    h1r = results.get("halley-1-redis")
    if h1r and h1r["data"]:
        s30 = next((st for st in (h1r["data"].get("steps") or []) if st.get("rate") == 30), None)
        if s30:
            ok = not (s30.get("lost") or 0) and not (s30.get("publish_errors") or 0)
            goals.append(f"- {num(h1r['data'].get('subscribers'))} subscribers × 30 msg/s, 1 node with --redis: "
                         f"{'lossless' if ok else 'NOT lossless'} (lost {num(s30.get('lost'))}, "
                         f"publish errors {num(s30.get('publish_errors'))}, p99 {ms(g(s30, 'latency_ms', 'p99'))} ms).")
    for s in servers:
        if s.startswith("halley-") and s != "halley-1" and lat[s]["data"] and base is not None:
            lst = (lat[s]["data"].get("steps") or [None])[-1]
            p99 = g(lst, "latency_ms", "p99") if lst else None
            if p99 is not None:
                verdict = ("within" if p99 - base <= 2 else "over") + " the 2 ms goal"
                if p99 < base:
                    verdict = ("below the reference's own p99: background load dominated the tail, so this run "
                               "does not measure the added p99; compare the p50s")
                p50, b50 = g(lst, "latency_ms", "p50"), None
                bst = (lat["halley-1"]["data"].get("steps") or [None])[-1]
                b50 = g(bst, "latency_ms", "p50") if bst else None
                d50 = f"; p50 {ms(p50)} vs {ms(b50)} ms ({p50 - b50:+.2f})" if p50 is not None and b50 is not None else ""
                goals.append(f"- {results[s]['label']}: p99 at 1,000 publishes/s {ms(p99)} ms vs {ms(base)} ms "
                             f"without Redis: {p99 - base:+.1f} ms ({verdict}){d50}.")
    if goals:
        md += ["Goals (issue 13):", ""] + goals + [""]
    # Redis commands per configuration (INFO commandstats after each one).
    rstats = []
    for s in servers:
        txt = read(os.path.join(state, f"scale-out.{s}.redis-stats.txt"))
        calls = []
        for line in txt.splitlines():
            if line.startswith("cmdstat_"):
                name, rest = line[len("cmdstat_"):].split(":", 1)
                kv = dict(x.split("=", 1) for x in rest.split(",") if "=" in x)
                calls.append((int(kv.get("usec", 0)), int(kv.get("calls", 0)), float(kv.get("usec_per_call", 0)),
                              name))
        if calls:
            calls.sort(reverse=True)
            rstats.append(f"- {results[s]['label']}: " + ", ".join(
                f"{n} {num(c)} calls ({up:,.1f} µs each)" for _, c, up, n in calls[:6]))
    if rstats:
        md += ["Redis commands over each configuration's two runs, the six that took the most of Redis's time "
               "(INFO commandstats; the commands a script runs are counted on their own too, and its "
               "`evalsha` time includes theirs):", ""] + rstats + [""]
    lat_rows = []
    for s in servers:
        r = lat[s]
        if status_note(r) or not r["data"]:
            lat_rows.append([results[s]["label"], status_note(r) or "no data"] + [""] * 7)
            continue
        for st in r["data"].get("steps") or []:
            l = st.get("latency_ms") or {}
            lat_rows.append([results[s]["label"], num(st.get("rate")), num(st.get("published")),
                             num(st.get("lost")), num(st.get("publish_errors")), num(st.get("deliveries_per_sec")),
                             f"{ms(l.get('p50'))} / {ms(l.get('p90'))} / {ms(l.get('p99'))} / {ms(l.get('p999'))}",
                             ms(g(st, "publish_answer_ms", "p99")), r["loadavg"] or "?"])
    md += ["### Latency run (1,000 publishes/s over many channels)", "",
           table(["configuration", "rate (msg/s)", "published", "lost", "publish errors", "deliveries/s",
                  "p50 / p90 / p99 / p99.9 (ms)", "publish answer p99 (ms)", "load average before"], lat_rows), "",
           "### Broadcast run", ""]
    cmds = [f"# {results[s]['label']}, latency run (load average before: {lat[s]['loadavg'] or '?'})\n"
            + (lat[s]["cmd"] or "(not run)") for s in servers]
    return md, cmds, lat


# publish-rate measurements: (key, what, reference key in redis-server's results).
PR_MEASURES = [
    ("rb-seq", "RESP PUBLISH, sequential: redis-benchmark -c 1", "rb-seq"),
    ("rb-pipe", "RESP PUBLISH, pipelined: redis-benchmark -c {PR_PIPE_C} -P {PR_PIPE_P}", "rb-pipe"),
    ("lg-resp-seq", "RESP PUBLISH, sequential: loadgen, 1 connection, pipeline 1", "lg-resp-seq"),
    ("lg-http-seq", "HTTP POST /pub/{{ch}}, sequential keep-alive: loadgen, 1 connection, pipeline 1",
     "lg-resp-seq"),
]


# How the title names the servers (the tables use their labels).
TITLE_NAMES = {"nchan": "Nchan", "pushpin": "Pushpin"}


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def params(state):
    p = {}
    for tok in read(os.path.join(state, "params.env")).split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            p[k] = v
    return p


def g(d, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d or d[k] is None:
            return default
        d = d[k]
    return d


def num(x, digits=0):
    if x is None:
        return "–"
    if isinstance(x, (int, float)):
        if digits == 0:
            return f"{x:,.0f}"
        return f"{x:,.{digits}f}"
    return str(x)


def ms(x):
    if x is None:
        return "–"
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def load(state, scen, server):
    stem = os.path.join(state, f"{scen}.{server}")
    rc = read(stem + ".rc", "not run")
    raw = read(stem + ".json")
    data = None
    for text in [raw] + [l for l in reversed(raw.splitlines()) if l.startswith("{")]:
        try:
            data = json.loads(text)
            break
        except ValueError:
            continue
    return {"rc": rc, "data": data, "cmd": read(stem + ".cmd"), "stem": stem,
            "loadavg": read(stem + ".loadavg"), "log_tail": read(stem + ".log")[-400:]}


def status_note(r):
    if r["rc"] == "0" and r["data"] is not None:
        return None
    if r["rc"] == "unsupported":
        return "not run (see the note below)"
    if r["rc"] == "skipped":
        return "skipped: time budget used up"
    if r["rc"] == "not run":
        return "not run"
    if r["data"] is None:
        return f"failed: loadgen exit {r['rc']}, no JSON"
    return None  # exit != 0 but JSON present: show data, flag below


def step_ok(step, limit):
    lost = (step.get("lost") or 0) + (step.get("publish_errors") or 0)
    p99 = g(step, "latency_ms", "p99")
    reasons = []
    if lost:
        reasons.append(f"lost {num(step.get('lost') or 0)}, publish errors {num(step.get('publish_errors') or 0)}")
    if p99 is None:
        if not step.get("deliveries"):
            reasons.append("no deliveries")
    elif p99 > limit:
        reasons.append(f"p99 {ms(p99)} ms > {limit:g} ms")
    return (not reasons), "; ".join(reasons)


def sustained(steps, limit):
    best, broke = None, None
    for s in steps:
        ok, why = step_ok(s, limit)
        if not ok:
            broke = (s.get("rate"), why)
            break
        best = s
    return best, broke


def later_pass(steps, broke_rate, limit):
    """Steps that passed after the first failure (noise, or a server catching up)."""
    after, seen = [], False
    for st in steps:
        if st.get("rate") == broke_rate:
            seen = True
            continue
        if seen and step_ok(st, limit)[0]:
            after.append(num(st.get("rate")))
    return f" (later steps passed again: {', '.join(after)} msg/s)" if after else ""


def connect_cells(d):
    c = g(d, "connect_ms") or {}
    return [f"{num(d.get('connected'))} / {num(d.get('subscribers'))}",
            ms(c.get("all_connected_ms")), ms(c.get("p50")), ms(c.get("p99")), ms(c.get("max"))]


def cpu_cells(d):
    return [num(g(d, "server", "cpu_secs"), 1), num(g(d, "loadgen", "cpu_secs"), 1)]


def errors_text(errs):
    """loadgen's optional per-run or per-step error list: [{"count", "error"}]."""
    if not errs:
        return ""
    return "; ".join(f"{num(e.get('count'))}× {str(e.get('error', '?')).replace('|', '/')}" for e in errs)


def with_data(results, head, rows):
    """(label, loadgen JSON) of every server that has data; the others get a
    row saying why not."""
    for s, r in results.items():
        note = status_note(r)
        if note:
            rows.append([r["label"], note] + [""] * (len(head) - 2))
            continue
        yield r["label"], r["data"]


def full_command(state, scen, servers, quick):
    """The compare.sh line that runs this scenario again."""
    cmd = "bench/compare.sh" + (" --quick" if quick else "")
    if scen == "h2":  # both configurations are halley's
        servers = ["halley"]
    if scen == "scale-out":  # configurations back to the --servers that named them
        servers = [x for x in ["halley", "nchan"]
                   if any(c == x or c.startswith(x + "-") for c in servers)]
    if servers != ["halley", "nchan", "pushpin"]:
        cmd += " --servers " + ",".join(servers)
    if "halley-base" in servers:
        start = read(os.path.join(state, f"server.halley-base.{scen}.cmd")).split("; ")[-1].split()
        cmd = f"HALLEY_BASE={start[0] if start else '<old halley binary>'} " + cmd
    return f"{cmd} {scen}"


def load_pr(state, server, key):
    """One publish-rate measurement: rate and answer times (µs), from loadgen's
    JSON or redis-benchmark's CSV line."""
    stem = os.path.join(state, f"publish-rate.{server}.{key}")
    rc = read(stem + ".rc", "not run")
    out = read(stem + ".out")
    m = {"rc": rc, "cmd": read(stem + ".cmd"), "loadavg": read(stem + ".loadavg"),
         "log": read(stem + ".log"), "rate": None, "p50": None, "p99": None, "errors": None, "cpu": None,
         "data": None}
    if key.startswith("rb-"):
        for row in csv.DictReader(io.StringIO(out)):
            try:
                m["rate"] = float(row["rps"])
                m["p50"] = float(row["p50_latency_ms"]) * 1000
                m["p99"] = float(row["p99_latency_ms"]) * 1000
            except (KeyError, TypeError, ValueError):
                continue
        # redis-benchmark prints error replies and goes on; it does not count them.
        errs = [l for l in m["log"].splitlines() if "rror" in l]
        m["errors"] = f"{len(errs)} error line(s) on stderr" if errs else None
    else:
        try:
            d = json.loads(out.splitlines()[-1]) if out else None
        except ValueError:
            d = None
        if d:
            m["data"] = d
            m["rate"] = d.get("publishes_per_sec")
            m["p50"] = g(d, "answer_us", "p50")
            m["p99"] = g(d, "answer_us", "p99")
            m["errors"] = d.get("errors")
            cpu, secs = g(d, "server", "cpu_secs"), d.get("duration_secs")
            m["cpu"] = cpu / secs if cpu is not None and secs else None
    return m


def us(x):
    if x is None:
        return "–"
    return f"{x:,.1f}" if x < 10 else f"{x:,.0f}"


def publish_rate_md(state, servers, labels, p):
    """The publish-rate results table, notes and the commands."""
    head = ["measurement", "server", "publishes/s", "answer p50 (µs)", "answer p99 (µs)",
            "ratio to redis-server", "errors", "server CPU (cores)"]
    rows, cmds, notes = [], [], []
    every = ["redis"] + [s for s in servers if s != "redis"]
    got = {s: {k: load_pr(state, s, k) for k, _, _ in PR_MEASURES} for s in every}
    for key, what, ref in PR_MEASURES:
        what = what.format(**p)
        refm = got["redis"][ref]
        for s in every:
            srv_rc = read(os.path.join(state, f"publish-rate.{s}.rc"))
            m = got[s][key]
            if srv_rc == "unsupported":
                if key == PR_MEASURES[0][0]:
                    notes.append(f"- {labels[s]}: not run. Its publish endpoint (`POST /publish/`) answers "
                                 "`Connection: close`, so there is no keep-alive sequential shape to measure, and "
                                 "it has no RESP port (bench/README.md).")
                continue
            if m["rc"] == "not run" and not m["cmd"]:
                continue  # this server has no such port
            if m["rate"] is None:
                why = {"skipped": "skipped: time budget used up", "not run": "not run",
                       "124": "timed out"}.get(m["rc"], f"failed: exit {m['rc']}")
                tail = m["log"].splitlines()[-1][:160] if m["log"] else ""
                rows.append([what, labels[s], why + (f" (`{tail}`)" if tail else ""), "", "", "", "", ""])
            else:
                ratio = (f"{m['rate'] / refm['rate']:.2f}" if refm["rate"] else "–")
                rows.append([what, labels[s], num(m["rate"]), us(m["p50"]), us(m["p99"]), ratio,
                             num(m["errors"]) if isinstance(m["errors"], (int, float)) else (m["errors"] or "0"),
                             num(m["cpu"], 2) if m["cpu"] is not None else "–"])
            if m["data"] and m["data"].get("error_samples"):
                notes.append(f"- {labels[s]}, {key}: {errors_text(m['data']['error_samples'])}")
    for s in every:  # in the order they ran
        for key, _, _ in PR_MEASURES:
            m = got[s][key]
            if m["cmd"]:
                cmds.append((f"# {labels[s]}, {key} (load average before: {m['loadavg'] or '?'})", m["cmd"]))
    md = [table(head, rows), "",
          "redis-benchmark reports p50/p99 with a resolution of 1 µs at best (its CSV has milliseconds with "
          "3 decimals) and measures each request's answer time as it sees it; loadgen times every request from "
          "its write to its complete answer. Server CPU (cores) = the server's CPU seconds over the measured "
          "seconds (loadgen rows only).", ""]
    return md, notes, cmds


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def draw_charts(scen, servers, out, limit):
    """The scenario's SVG figures beside `out`, or none (with a warning) without matplotlib."""
    if scen == "publish-rate":
        return []  # one table of rates; nothing is stepped or connected
    if not charts.available():
        print("report.py: matplotlib is not installed; no charts (pip install matplotlib)", file=sys.stderr)
        return []
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    return charts.draw(scen, servers, out, limit)


# Servers in the order reports list them.
ORDER = ["halley", "halley-base", "nchan", "pushpin", "halley-h1", "halley-h2",
         "halley-1", "halley-1-redis", "halley-2-redis", "halley-3-redis", "nchan-redis"]


def charts_from(stem, out_dir=None):
    """Charts for a written report: <stem>.<server>.json in, SVGs and the
    report's "## Charts" section out. Returns the SVG paths."""
    base = os.path.basename(stem)
    folder = os.path.dirname(os.path.abspath(stem))
    scen = re.sub(r"-quick$", "", re.sub(r"^\d{4}-\d{2}-\d{2}-", "", base))
    if scen not in TITLES:
        # A renamed run of a scenario, e.g. "scale-out-quiet": the longest
        # scenario name the stem starts with.
        known = [t for t in TITLES if scen.startswith(t + "-")]
        scen = max(known, key=len) if known else scen
    if scen not in TITLES:
        raise SystemExit(f"report.py: cannot tell the scenario of {stem}")
    found = {}
    for name in os.listdir(folder):
        m = re.fullmatch(re.escape(base) + r"\.([a-z0-9-]+)\.json", name)
        if m:
            with open(os.path.join(folder, name)) as f:
                found[m.group(1)] = json.load(f)
    servers = sorted(found, key=lambda s: (ORDER.index(s) if s in ORDER else len(ORDER), s))
    try:
        with open(stem + ".md") as f:
            report = f.read()
    except OSError:
        report = ""
    limit = re.search(r"at most (\d+(?:\.\d+)?) ms", report)
    out = os.path.join(out_dir or folder, base)
    figures = draw_charts(scen, [(s, s, found[s]) for s in servers], out, float(limit.group(1)) if limit else 100.0)
    if report and out_dir is None:
        section = "\n".join(charts.markdown(figures))
        # Replace an earlier section, else put it before the commands.
        if "\n## Charts\n" in report:
            report = re.sub(r"\n## Charts\n.*?(?=\n## |\Z)", "\n" + section.rstrip("\n") + "\n", report, flags=re.S)
        elif "\n## Commands\n" in report:
            report = report.replace("\n## Commands\n", "\n" + section + "\n## Commands\n", 1)
        else:
            report += "\n" + section
        with open(stem + ".md", "w") as f:
            f.write(report)
    return [os.path.join(out_dir or folder, name) for _, name in figures]


def main():
    if "--charts-from" in sys.argv:
        ap = argparse.ArgumentParser()
        ap.add_argument("--charts-from", nargs="+", required=True, metavar="STEM")
        ap.add_argument("--charts-out", default=None, metavar="DIR")
        a = ap.parse_args()
        for stem in a.charts_from:
            for path in charts_from(stem, a.charts_out):
                print(path)
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--state", required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--servers", default="halley,nchan,pushpin")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    scen, state = a.scenario, a.state
    servers = [s for s in a.servers.split(",") if s]
    p = params(state)
    limit = float(p.get("LP_P99_LIMIT_MS" if scen == "longpoll-churn" else "P99_LIMIT_MS", "100"))
    p["limit"] = f"{limit:g}"
    quick = p.get("QUICK") == "1"
    try:
        p["per_channel"] = str(int(p["MC_N"]) // int(p["MC_CH"]))
    except (KeyError, ValueError, ZeroDivisionError):
        p["per_channel"] = "?"
    results = {s: load(state, scen, s) for s in servers}
    h2c = g(results.get("halley-h2", {}), "data", "http2", "connections")
    shown_h2 = {"H2_N": f"{int(p.get('H2_N', '0') or 0):,}", "H2_STREAMS": p.get("H2_STREAMS", "?"),
                "h2_conns": num(h2c) if h2c is not None else "?"}
    for s, r in results.items():
        r["label"] = (read(os.path.join(state, f"label.{s}")) or SO_LABELS.get(s)
                      or (H2_LABELS[s].format(**shown_h2) if s in H2_LABELS else s))
    names = ("; " if scen in ("scale-out", "h2") else ", ").join(
        results[s]["label"] if scen == "h2" else
        read(os.path.join(state, f"label.{s}")) or TITLE_NAMES.get(s) or SO_LABELS.get(s, s) for s in servers)

    md = [f"# {TITLES[scen]}{' (quick)' if quick else ''}: {names} — {p.get('DATE', '')}", ""]
    if quick:
        md += ["A `--quick` run: reduced sizes for a fast end-to-end check, not for conclusions.", ""]
    shown = {k: (f"{int(v):,}" if v.isdigit() else v.replace(",", ", ")) for k, v in p.items()}
    md += [WHAT[scen].format(**shown), ""]

    notes = []
    for r in results.values():
        s = r["label"]
        if r["rc"] == "unsupported":
            notes.append(f"- {s}: not run. Its origin answers /lp/{{ch}} with `Grip-Hold: response`, but a held "
                         "response is completed only by a published item with an `http-response` format, and "
                         "loadgen's pushpin publish format carries `http-stream` only (loadgen/CONTRACT.md). "
                         "Pushpin also keeps no message history: a message published while a client re-polls "
                         "is gone unless the origin keeps its own and answers with ids, so the no-loss "
                         "property measured here does not exist in Pushpin alone (bench/README.md).")
        if r["rc"] not in ("0", "unsupported", "skipped", "not run") and r["data"] is not None:
            notes.append(f"- {s}: loadgen exited {r['rc']} but printed a report; numbers shown as reported.")
        if r["rc"] not in ("0", "unsupported", "skipped", "not run") and r["data"] is None and r["log_tail"]:
            notes.append(f"- {s}: loadgen exit {r['rc']}: `{r['log_tail'].splitlines()[-1][:200]}`")

    md += ["## Results", ""]
    figures = draw_charts(scen, [(s, r["label"], r["data"]) for s, r in results.items() if not status_note(r)],
                          a.out, limit)
    pr_cmds = None
    so_cmds, so_lat = [], {}
    if scen == "h2":
        h2_lines, so_cmds = h2_md(state, servers, results, limit)
        md += h2_lines
    if scen == "scale-out":
        so_md, so_cmds, so_lat = scale_out_md(state, servers, results, limit)
        md += so_md
    if scen == "publish-rate":
        labels = {s: r["label"] for s, r in results.items()}
        labels["redis"] = read(os.path.join(state, "label.redis")) or "redis-server"
        pr_md, pr_notes, pr_cmds = publish_rate_md(state, servers, labels, shown)
        md += pr_md
        notes = pr_notes
    elif scen in ("idle", "connect-storm"):
        head = ["server", "connected", "all connected (ms)", "connect p50 (ms)", "p99 (ms)", "max (ms)"]
        if scen == "idle":
            head += ["RSS start (KiB)", "RSS peak (KiB)", "RSS / connection (bytes)"]
        head += ["server CPU (s)", "loadgen CPU (s)", "loadgen errors"]
        rows = []
        for s, d in with_data(results, head, rows):
            row = [s] + connect_cells(d)
            if scen == "idle":
                st, pk = g(d, "server", "rss_kib_start"), g(d, "server", "rss_kib_peak")
                conn = d.get("connected") or 0
                per = (pk - st) * 1024 / conn if (st is not None and pk is not None and conn) else None
                row += [num(st), num(pk), num(per)]
            row += cpu_cells(d) + [errors_text(d.get("errors"))]
            rows.append(row)
        md += [table(head, rows), ""] + charts.markdown(figures)
    else:
        head = ["server", "connected", "highest sustained deliveries/s", "at rate (msg/s)",
                "p50 / p99 / p99.9 there (ms)", "first step not sustained", "server CPU (s)", "loadgen CPU (s)"]
        rows, details = [], []
        for s, d in with_data(results, head, rows):
            steps = d.get("steps") or []
            best, broke = sustained(steps, limit)
            lat = g(best, "latency_ms") or {} if best else {}
            rows.append([
                s, f"{num(d.get('connected'))} / {num(d.get('subscribers'))}",
                num(best.get("deliveries_per_sec")) if best else "none",
                num(best.get("rate")) if best else "–",
                f"{ms(lat.get('p50'))} / {ms(lat.get('p99'))} / {ms(lat.get('p999'))}" if best else "–",
                (f"{num(broke[0])} msg/s: {broke[1]}" + later_pass(steps, broke[0], limit)) if broke
                else "none (all steps sustained)",
            ] + cpu_cells(d))
            srows = []
            for st in steps:
                ok, why = step_ok(st, limit)
                l = st.get("latency_ms") or {}
                srows.append([num(st.get("rate")), num(st.get("published")), num(st.get("publish_errors")),
                              num(st.get("expected_deliveries")), num(st.get("deliveries")),
                              num(st.get("lost")), num(st.get("duplicated")), num(st.get("out_of_order")),
                              num(st.get("deliveries_per_sec")), ms(l.get("p50")), ms(l.get("p90")),
                              ms(l.get("p99")), ms(l.get("p999")), ms(l.get("max")),
                              ms(g(st, "publish_answer_ms", "p99")), num(st.get("server_cpu_secs"), 1),
                              "yes" if ok else f"no ({why})", errors_text(st.get("errors"))])
            details += [f"### {s}, every step", "",
                        table(["rate (msg/s)", "published", "publish errors", "expected", "delivered", "lost",
                               "duplicated", "out of order", "deliveries/s", "p50", "p90", "p99", "p99.9",
                               "max (ms)", "publish answer p99 (ms)", "server CPU (s)", "sustained",
                               "loadgen errors"], srows), ""]
        md += [table(head, rows), ""] + charts.markdown(figures)
        if scen == "longpoll-churn":
            proof = []
            for s, d in with_data(results, head, []):
                steps = d.get("steps") or []
                lost = sum((st.get("lost") or 0) for st in steps)
                exp = sum((st.get("expected_deliveries") or 0) for st in steps)
                proof.append(f"- {s}: {'no client missed a message' if lost == 0 and exp else f'{num(lost)} of {num(exp)} expected deliveries missing'}"
                             f" ({num(exp)} expected over all steps).")
            md += ["Missed messages:", ""] + proof + [""]
        md += details
    if notes:
        md += ["Notes:", ""] + notes + [""]

    md += ["## Commands", "", "Servers (one after another, each started fresh for this scenario and stopped by pid after it):", "", "```sh"]
    if scen in ("publish-rate", "scale-out"):
        md += ["# redis-server (the reference, started first)",
               read(os.path.join(state, f"server.redis.{scen}.cmd"), "(not started)")]
    for s in servers + (["halley-h2load"] if scen == "h2" else []):
        md.append(f"# {results[s]['label'] if s in results else s + ' (for h2load)'}")
        md.append(read(os.path.join(state, f"server.{s}.{scen}.cmd"))
                  or read(os.path.join(state, f"server.{s}.cmd"), "(not started)"))
    if scen == "publish-rate":
        md += ["```", "", "Load (one run per measurement, in this order):", "", "```sh"]
        for c, line in pr_cmds:
            md += [c, line]
    else:
        md += ["```", "", "Load (loadgen, one run per server):", "", "```sh"]
    for r in results.values() if scen != "publish-rate" else []:
        md.append(f"# {r['label']} (load average before: {r['loadavg'] or '?'})")
        md.append(r["cmd"] or "(not run)")
    md += so_cmds
    md += ["```", "", "Configs: `bench/nchan/nginx.conf`, `bench/pushpin/pushpin.conf`, `bench/pushpin/routes`, "
           "`bench/pushpin/origin.py`; full command: `" + full_command(state, scen, servers, quick) + "`.", ""]
    md += ["## Versions", "", "```", read(os.path.join(state, "versions.txt")), "```", "",
           "## Machine", "", "```", read(os.path.join(state, "machine.txt")), "```", ""]

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(md))
    if scen == "publish-rate":  # each measurement's raw output: loadgen JSON, redis-benchmark CSV
        for s in ["redis"] + servers:
            for key, _, _ in PR_MEASURES:
                src = os.path.join(state, f"publish-rate.{s}.{key}.out")
                if os.path.exists(src) and os.path.getsize(src) > 0:
                    ext = "csv" if key.startswith("rb-") else "json"
                    shutil.copyfile(src, f"{a.out}.{s}.{key}.{ext}")
    for s, r in results.items():
        src = r["stem"] + ".json"
        if os.path.exists(src) and os.path.getsize(src) > 0:
            shutil.copyfile(src, f"{a.out}.{s}.json")
    if scen == "h2":  # h2load's own output, as printed
        for key, _ in H2LOAD:
            src = os.path.join(state, f"h2load.{key}.out")
            if os.path.exists(src) and os.path.getsize(src) > 0:
                shutil.copyfile(src, f"{a.out}.h2load-{key}.txt")
    for s, r in so_lat.items():  # scale-out's latency runs
        src = r["stem"] + ".json"
        if os.path.exists(src) and os.path.getsize(src) > 0:
            shutil.copyfile(src, f"{a.out}.{s}.latency-run.json")
    print(a.out + ".md")


if __name__ == "__main__":
    main()
