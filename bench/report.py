"""The strategy comparison as a text table (terminal and Markdown) and a PNG chart."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

Row = tuple[str, Callable[[dict[str, Any]], str]]


def _get(d: dict[str, Any], *path: str) -> Any:
    for key in path:
        if d is None:
            return None
        d = d.get(key)
    return d


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _errors(d: dict[str, int]) -> str:
    total = sum(d.values())
    return "0" if not total else f"{total} (" + ", ".join(f"{k} {v}" for k, v in d.items()) + ")"


ROWS: list[Row] = [
    ("posts created / delivered", lambda r: f"{r['posts']['created']:,} / "
                                            f"{r['posts']['delivered']:,}"),
    ("  pushed / pulled", lambda r: f"{r['posts']['push']:,} / {r['posts']['pull']:,}"),
    ("  by celebrities", lambda r: f"{r['posts']['by_celebrities']:,}"),
    ("write amplification, mean", lambda r: _num(_get(r, "write_amplification", "mean"), 1)),
    ("  p99", lambda r: _num(_get(r, "write_amplification", "p99"))),
    ("  max", lambda r: _num(_get(r, "write_amplification", "max"))),
    ("  matches followers+1 / 0", lambda r: "-" if r["writes_match_expected"] is None
        else f"{r['writes_match_expected']:.0%}"),
    ("inbox writes total", lambda r: _num(r["inbox_writes_total"])),
    ("inbox writes/s, while fanning out", lambda r: _num(r["inbox_writes_per_s_busy"])),
    ("inbox writes/s, run+drain average", lambda r: _num(r["inbox_writes_per_s"])),
    ("inbox writes/s, peak 1 s", lambda r: _num(r["inbox_writes_per_s_peak"])),
    ("fan-out queue depth, max", lambda r: _num(r["queue_depth_max"])),
    ("fan-out lag p50 (ms)", lambda r: _ms(_get(r, "fanout_lag_ms", "p50"))),
    ("  p99", lambda r: _ms(_get(r, "fanout_lag_ms", "p99"))),
    ("  celebrity posts, max", lambda r: _ms(_get(r, "celebrity_post_lag_ms", "max"))),
    ("GetTimeline p50 (ms)", lambda r: _ms(_get(r, "timeline_ms", "p50"))),
    ("  p95", lambda r: _ms(_get(r, "timeline_ms", "p95"))),
    ("  p99", lambda r: _ms(_get(r, "timeline_ms", "p99"))),
    ("  celebrity followers p50", lambda r: _ms(_get(r, "timeline_ms_celebrity_followers",
                                                      "p50"))),
    ("  celebrity followers p95", lambda r: _ms(_get(r, "timeline_ms_celebrity_followers",
                                                      "p95"))),
    ("  celebrity followers p99", lambda r: _ms(_get(r, "timeline_ms_celebrity_followers",
                                                      "p99"))),
    ("  other readers p99", lambda r: _ms(_get(r, "timeline_ms_others", "p99"))),
    ("  entries from pull", lambda r: f"{r['reads']['pull_entry_share']:.0%}"),
    ("  partial pages", lambda r: f"{r['reads']['partial']:,}"),
    ("errors, posts", lambda r: _errors(r["posts"]["errors"])),
    ("errors, reads", lambda r: _errors(r["reads"]["errors"])),
    ("sends behind schedule p99 (ms)", lambda r: _ms(_get(r, "schedule_late_ms", "p99"))),
    ("requests not sent (fell behind)", lambda r: f"{r['not_sent']:,}"),
    ("store memory after run (MiB)",
     lambda r: _num(r["memory_bytes"]["after_run"] / 2**20, 1)),
    ("run + drain (s)", lambda r: f"{r['run_s']:.1f} + {r['drain_s']:.1f}"
                                  + ("" if r["drained"] else " (not drained)")),
]


def table(report: dict[str, Any], markdown: bool = False) -> str:
    results: list[dict[str, Any]] = report["strategies"]
    header = ["", *(r["label"] for r in results)]
    body = [[name, *(fmt(r) for r in results)] for name, fmt in ROWS]
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "---|" + "---:|" * len(results)]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    out = []
    for row in [header, *body]:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                           strict=True)]
        out.append("  ".join(cells))
    return "\n".join(out)


def summary_line(report: dict[str, Any]) -> str:
    g = report["graph"]
    c = report["config"]
    return (f"graph: {g['source']}: {g['accounts']:,} accounts, {g['edges']:,} follows, "
            f"followers mean {g['followers_mean']:.1f} / p99 {g['followers_p99']:.0f} / max "
            f"{g['followers_max']:,}; {report['celebrities']} accounts at or above "
            f"T={c['threshold']:,}\n"
            f"workload: {c['duration_s']:g}s, {c['posts_per_s']:g} posts/s "
            f"({c['celebrity_post_share']:.0%} by celebrities), {c['reads_per_s']:g} reads/s "
            f"(page {c['page_size']}), concurrency {c['concurrency']}, seed {c['seed']}, "
            f"{c['workers']} worker(s)")


def _cdf(values: list[float]) -> tuple[list[float], list[float]]:
    ordered = sorted(values)
    n = len(ordered)
    return ordered, [(i + 1) / n for i in range(n)]


COLORS = {"push": "#d62728", "hybrid": "#2ca02c", "pull": "#1f77b4"}
MORE_HYBRID_COLORS = ["#98df8a", "#bcbd22", "#17becf", "#8c564b"]


def _colors(results: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    extra = iter(MORE_HYBRID_COLORS * 4)
    for r in results:
        out[r["strategy"]] = COLORS.get(r["strategy"]) or next(extra)
    return out


CHART_DPI = 110
CHART_WIDTH_PX = 880

def draw_charts(report: dict[str, Any], path: Path) -> Path | None:
    """Latency CDFs, write amplification and fan-out lag, one above the other (CHART_WIDTH_PX
    wide, readable on a page without zooming); None without matplotlib (the JSON and the
    table still carry every figure)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    except ImportError:
        return None
    results: list[dict[str, Any]] = report["strategies"]
    colors = _colors(results)
    fig, (lat, amp, lag) = plt.subplots(3, 1, figsize=(CHART_WIDTH_PX / CHART_DPI, 13))
    for r in results:
        color = colors[r["strategy"]]
        raw = r["raw"]
        if raw["timeline_ms"]:
            x, y = _cdf(raw["timeline_ms"])
            lat.plot(x, y, color=color, label=f"{r['label']}, all readers")
            celeb = [ms for ms, c in zip(raw["timeline_ms"], raw["timeline_celebrity_follower"],
                                         strict=True) if c]
            if celeb:
                x, y = _cdf(celeb)
                lat.plot(x, y, color=color, linestyle="--",
                         label=f"{r['label']}, celebrity followers")
        if raw["lag_ms"]:
            x, y = _cdf([max(v, 0.5) for v in raw["lag_ms"]])
            lag.plot(x, y, color=color, label=r["label"])
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    for ax in (lat, lag):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
    lat.set_xlabel("GetTimeline latency (ms, log)")
    lat.set_ylabel("share of reads at or below")
    lat.set_title("Timeline read latency (CDF)")
    lat.grid(True, which="both", alpha=0.3)
    lat.legend(fontsize=8)

    stats = ("mean", "p99", "max")
    width = 0.8 / max(1, len(results))
    for i, r in enumerate(results):
        wa = r["write_amplification"] or {}
        values = [max(wa.get(k, 0) or 0, 0) for k in stats]
        xs = [j + i * width for j in range(len(stats))]
        # A log axis has no zero: a post that wrote nothing gets no bar, only its label.
        bars = amp.bar(xs, [v if v > 0 else float("nan") for v in values], width,
                       color=colors[r["strategy"]], label=r["label"])
        for bar, v in zip(bars, values, strict=True):
            amp.annotate(f"{v:,.0f}" if v >= 10 or v == 0 else f"{v:.1f}",
                         (bar.get_x() + bar.get_width() / 2, v if v > 0 else 1),
                         ha="center", va="bottom", fontsize=7)
    amp.set_yscale("log")
    amp.set_ylim(bottom=0.8)
    amp.yaxis.set_major_formatter(plain)
    amp.set_xticks([j + width * (len(results) - 1) / 2 for j in range(len(stats))])
    amp.set_xticklabels([f"{k} per post" for k in stats])
    amp.set_ylabel("inbox writes per post (log)")
    amp.set_title("Write amplification")
    amp.grid(True, axis="y", which="both", alpha=0.3)
    amp.legend(fontsize=8)

    lag.set_xlabel("post creation -> last inbox write (ms, log)")
    lag.set_ylabel("share of posts at or below")
    lag.set_title("Fan-out lag (CDF)")
    lag.grid(True, which="both", alpha=0.3)
    lag.legend(fontsize=8)
    fig.suptitle(textwrap.fill(report["graph"]["source"], 90), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=CHART_DPI)
    plt.close(fig)
    return path
