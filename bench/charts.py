"""SVG charts for the benchmark reports (matplotlib, which compare.sh installs).

One figure per question, one line per server:
- stepped scenarios (broadcast, many-channels, longpoll-churn): deliveries/s,
  p50 and p99 latency, and lost % against the offered publish rate;
- idle: resident memory per connection;
- connect-storm: time to connect everyone and connect latency percentiles.

`draw(scenario, servers, out)` writes `<out>.<figure>.svg` files and returns
their (title, file name) pairs; `markdown(figures)` is the report section
that embeds them. The files are reproducible: no date, fixed ids.
"""
import os

# Who gets which colour, so a server looks the same in every figure and report.
COLORS = {"halley": "#1f77b4", "nchan": "#d62728", "pushpin": "#2ca02c", "halley-base": "#7f7f7f",
          # scale-out configurations
          "halley-1": "#1f77b4", "halley-1-redis": "#17becf", "halley-2-redis": "#9467bd",
          "halley-3-redis": "#ff7f0e", "nchan-redis": "#d62728",
          # h2: subscribers as HTTP/1.1 connections, as HTTP/2 streams
          "halley-h1": "#1f77b4", "halley-h2": "#ff7f0e"}
OTHER_COLORS = ["#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]
STEPPED = ("broadcast", "many-channels", "longpoll-churn", "scale-out", "h2")


def available():
    """Whether matplotlib can be imported (report.py goes on without charts if not)."""
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({
        "svg.hashsalt": "halley-bench",   # stable ids: a re-run makes the same file
        "svg.fonttype": "none",           # text stays text (smaller, searchable)
        "font.size": 9,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
    })
    return plt


def _color(server, i):
    return COLORS.get(server, OTHER_COLORS[i % len(OTHER_COLORS)])


def _si(value, _pos=None):
    """Axis numbers as people say them: 250k, 1.5M."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"{value / div:g}{suffix}"
    return f"{value:g}"


def _save(plt, fig, path):
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def _steps(data):
    return [s for s in (data.get("steps") or []) if s.get("rate") is not None]


def _lost_pct(step):
    expected = step.get("expected_deliveries") or 0
    lost = (step.get("lost") or 0)
    return 100.0 * lost / expected if expected else None


def _stepped(plt, servers, out, limit):
    figures = []
    rates = sorted({s["rate"] for _, _, d in servers for s in _steps(d)})
    log_x = len(rates) > 1 and rates[-1] / max(rates[0], 1e-9) >= 20

    def axes(title, ylabel, log_y=False):
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        ax.set_title(title)
        ax.set_xlabel("offered rate (messages/s)")
        ax.set_ylabel(ylabel)
        if log_x:
            ax.set_xscale("log")
            ax.set_xticks(rates)
            ax.set_xticklabels([f"{r:g}" for r in rates])
            ax.minorticks_off()
        if log_y:
            ax.set_yscale("log")
        return fig, ax

    # Deliveries per second, with what was offered (rate x the subscribers
    # each message was meant for) as a dotted line per server.
    fig, ax = axes("Deliveries per second", "deliveries/s")
    ax.yaxis.set_major_formatter(_si)
    for i, (server, label, d) in enumerate(servers):
        steps = _steps(d)
        xs = [s["rate"] for s in steps]
        ax.plot(xs, [s.get("deliveries_per_sec") or 0 for s in steps], marker="o", ms=3,
                color=_color(server, i), label=label)
        offered = [(s["rate"], (s.get("expected_deliveries") or 0) * s["rate"] / s["published"])
                   for s in steps if s.get("published")]
        if offered:
            ax.plot([x for x, _ in offered], [y for _, y in offered], ls=":", lw=1,
                    color=_color(server, i), label=f"{label}: offered")
    ax.legend(fontsize=8)
    _save(plt, fig, f"{out}.deliveries.svg")
    figures.append(("Deliveries per second against the offered rate", f"{os.path.basename(out)}.deliveries.svg"))

    fig, ax = axes("Delivery latency (p50 dashed, p99 solid)", "latency (ms)", log_y=True)
    for i, (server, label, d) in enumerate(servers):
        steps = [s for s in _steps(d) if (s.get("latency_ms") or {}).get("p99") is not None]
        xs = [s["rate"] for s in steps]
        ax.plot(xs, [s["latency_ms"]["p99"] for s in steps], marker="o", ms=3, color=_color(server, i),
                label=f"{label} p99")
        ax.plot(xs, [s["latency_ms"].get("p50") for s in steps], ls="--", marker=".", ms=3,
                color=_color(server, i), label=f"{label} p50")
    if limit:
        ax.axhline(limit, color="black", lw=0.8, ls=":", label=f"p99 limit {limit:g} ms")
    ax.legend(fontsize=8)
    _save(plt, fig, f"{out}.latency.svg")
    figures.append(("p50 and p99 delivery latency against the offered rate", f"{os.path.basename(out)}.latency.svg"))

    fig, ax = axes("Messages lost", "lost (% of expected deliveries)")
    for i, (server, label, d) in enumerate(servers):
        pts = [(s["rate"], _lost_pct(s)) for s in _steps(d)]
        pts = [(x, y) for x, y in pts if y is not None]
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", ms=3, color=_color(server, i), label=label)
    ax.set_ylim(bottom=0, top=max(1.0, ax.get_ylim()[1]))
    ax.legend(fontsize=8)
    _save(plt, fig, f"{out}.lost.svg")
    figures.append(("Lost deliveries (%) against the offered rate", f"{os.path.basename(out)}.lost.svg"))
    return figures


def _rss_per_connection(d):
    start, peak = (d.get("server") or {}).get("rss_kib_start"), (d.get("server") or {}).get("rss_kib_peak")
    conn = d.get("connected") or 0
    if start is None or peak is None or not conn:
        return None
    return (peak - start) * 1024 / conn


def _bars(plt, servers, out, name, title, ylabel, value, fmt):
    rows = [(server, label, value(d)) for server, label, d in servers]
    rows = [r for r in rows if r[2] is not None]
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.yaxis.set_major_formatter(_si)
    bars = ax.bar([label for _, label, _ in rows], [v for _, _, v in rows],
                  color=[_color(s, i) for i, (s, _, _) in enumerate(rows)])
    for bar, (_, _, v) in zip(bars, rows):
        ax.annotate(fmt(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.grid(axis="x", visible=False)
    _save(plt, fig, f"{out}.{name}.svg")
    return [(title, f"{os.path.basename(out)}.{name}.svg")]


def _connect(plt, servers, out):
    rows = [(server, label, d.get("connect_ms") or {}) for server, label, d in servers]
    rows = [r for r in rows if r[2].get("p99") is not None]
    if not rows:
        return []
    keys = [("p50", "p50"), ("p99", "p99"), ("max", "max")]
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    ax.set_title("Connect latency")
    ax.set_ylabel("ms (log)")
    ax.set_yscale("log")
    width = 0.8 / len(rows)
    for i, (server, label, c) in enumerate(rows):
        xs = [k + (i - (len(rows) - 1) / 2) * width for k in range(len(keys))]
        ax.bar(xs, [max(c.get(k) or 0, 1e-3) for k, _ in keys], width, color=_color(server, i), label=label)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([name for _, name in keys])
    ax.grid(axis="x", visible=False)
    ax.legend(fontsize=8)
    _save(plt, fig, f"{out}.connect.svg")
    return [("Connect latency percentiles", f"{os.path.basename(out)}.connect.svg")]


def draw(scenario, servers, out, limit=None):
    """Writes the scenario's figures beside `out` (a path without extension).
    `servers`: [(server name, label, loadgen JSON)] for servers with data."""
    if not servers:
        return []
    plt = _plt()
    if scenario in STEPPED:
        return _stepped(plt, servers, out, limit)
    figures = []
    if scenario == "idle":
        figures += _bars(plt, servers, out, "rss", "Resident memory per idle connection", "bytes per connection",
                         _rss_per_connection, lambda v: f"{v:,.0f} B")
    figures += _bars(plt, servers, out, "all-connected", "Time until every connection was subscribed",
                     "seconds", lambda d: ((d.get("connect_ms") or {}).get("all_connected_ms") or 0) / 1000 or None,
                     lambda v: f"{v:,.1f} s")
    figures += _connect(plt, servers, out)
    return figures


def markdown(figures):
    """The report's chart section: each figure embedded by its file name."""
    if not figures:
        return []
    md = ["## Charts", ""]
    for title, name in figures:
        md += [f"![{title}]({name})", ""]
    return md
