"""`fanline bench docs`: rerun every published measurement and rewrite docs/benchmarks.md.

The prose around the figures is written from the figures (ratios, which side is lower), so
a rerun on another machine cannot leave a sentence claiming what its own table contradicts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fanline.bench import graph as graphs
from fanline.bench.cli import REAL_GRAPH_THRESHOLD, SYNTHETIC_THRESHOLD
from fanline.bench.cluster import format_comparison, run_cluster_comparison
from fanline.bench.engine import EngineResult, format_engine, run_engine
from fanline.bench.plan import Model, Traffic, format_plan, plan
from fanline.bench.reads import ReadsResult, ReadsScenario, run_reads
from fanline.bench.report import summary_line, table
from fanline.bench.run import BenchConfig, machine_info, run_bench
from fanline.bench.watch import WatchScenario, run_watch
from fanline.bench.watch import doc_section as watch_section

# Hybrid thresholds: the first is the strategy compared with push and pull; the others pull
# more (synthetic) or fewer (Slashdot) accounts, showing the trade from both sides.
SYNTHETIC_THRESHOLDS = (SYNTHETIC_THRESHOLD, 1_000)
REAL_THRESHOLDS = (REAL_GRAPH_THRESHOLD, 500)
SMALL_FANOUT = 10_000  # writes per post below which one fan-out is too short to slow reads
READ_MIXES = (  # (push authors, pull authors, page size)
    (100, 5, 20),
    (100, 5, 50),
    (790, 10, 20),
)


def _tool_version(name: str) -> str | None:
    path = shutil.which(name)
    if not path:
        return None
    done = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def _ts(thresholds: tuple[int, ...]) -> str:
    return ",".join(str(t) for t in thresholds)


def _by(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["strategy"]: r for r in report["strategies"]}


def _x(a: float, b: float) -> str:
    """'12x lower' / '1.3x higher' / 'the same' for a relative to b."""
    if not a or not b:
        return "n/a"
    if abs(a / b - 1) < 0.05:
        return "about the same as"
    if a < b:
        return f"{b / a:,.1f}x lower than"
    return f"{a / b:,.1f}x higher than"


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def headline(report: dict[str, Any]) -> dict[str, Any]:
    by = _by(report)
    push, hybrid = by["push"], by["hybrid"]
    return {
        "wa_push_mean": push["write_amplification"]["mean"],
        "wa_hybrid_mean": hybrid["write_amplification"]["mean"],
        "wa_push_max": push["write_amplification"]["max"],
        "wa_hybrid_max": hybrid["write_amplification"]["max"],
        "p99_push": push["timeline_ms"]["p99"],
        "p99_hybrid": hybrid["timeline_ms"]["p99"],
        "lag_p99_push": push["fanout_lag_ms"]["p99"],
        "lag_p99_hybrid": hybrid["fanout_lag_ms"]["p99"],
    }


def findings(report: dict[str, Any]) -> list[str]:
    by = _by(report)
    push, hybrid = by.get("push"), by.get("hybrid")
    pull = by.get("pull")
    out: list[str] = []
    if push and hybrid:
        h = headline(report)
        out.append(
            f"**Writes.** Hybrid's write amplification was {h['wa_hybrid_mean']:,.1f} inbox "
            f"writes per post on average against {h['wa_push_mean']:,.1f} for push-only "
            f"({_x(h['wa_hybrid_mean'], h['wa_push_mean'])} push-only); its worst post cost "
            f"{h['wa_hybrid_max']:,.0f} writes against {h['wa_push_max']:,.0f}. "
            f"{push['posts']['by_celebrities']} of {push['posts']['created']} posts were by "
            f"accounts at or above the threshold, and under push-only they made "
            f"{_share_of_writes(push):.1%} of all inbox writes.")
        out.append(
            f"**Fan-out lag.** p99 {_f(h['lag_p99_hybrid'])} ms with hybrid against "
            f"{_f(h['lag_p99_push'])} ms with push-only "
            f"({_x(h['lag_p99_hybrid'], h['lag_p99_push'])} push-only)"
            + (f"; the slowest celebrity post took "
               f"{_f(_g(push, 'celebrity_post_lag_ms', 'max'), 0)} ms to reach every follower "
               f"under push-only. " if _g(push, "celebrity_post_lag_ms", "max") is not None
               else ". ")
            + ("Ordinary posts queue behind those batches."
               if h["lag_p99_push"] > 2 * h["lag_p99_hybrid"] else
               "Fan-outs this small do not queue up."))
        p50_h, p50_p = _g(hybrid, "timeline_ms", "p50"), _g(push, "timeline_ms", "p50")
        push_max = push["write_amplification"]["max"]
        if p50_h <= p50_p:
            why = "celebrity fan-outs under push-only take store and worker time from every read"
        elif push_max < SMALL_FANOUT:
            why = (f"every read now merges the lists of the pulled accounts it follows, while "
                   f"push-only's fan-outs (at most {push_max:,.0f} writes a post here) are too "
                   f"small to slow reads down")
        else:
            why = "every read now merges the lists of the pulled accounts it follows"
        out.append(
            f"**Reads.** GetTimeline p50 was {_f(p50_h)} ms with hybrid against {_f(p50_p)} ms "
            f"with push-only ({_x(p50_h, p50_p)} push-only), p99 {_f(h['p99_hybrid'])} against "
            f"{_f(h['p99_push'])} ms"
            + (f"; for readers who follow a celebrity, p99 "
               f"{_f(_g(hybrid, 'timeline_ms_celebrity_followers', 'p99'))} ms against "
               f"{_f(_g(push, 'timeline_ms_celebrity_followers', 'p99'))} ms"
               if _g(hybrid, "timeline_ms_celebrity_followers", "p99") is not None else "")
            + f". At the median, the difference is that {why}.")
        for other in (r for k, r in by.items() if k.startswith("hybrid-")):
            out.append(
                f"**{other['label']}.** Write amplification "
                f"{other['write_amplification']['mean']:,.1f} on average (worst "
                f"{other['write_amplification']['max']:,.0f}), fan-out lag p99 "
                f"{_f(_g(other, 'fanout_lag_ms', 'p99'))} ms, GetTimeline p50/p99 "
                f"{_f(_g(other, 'timeline_ms', 'p50'))} / {_f(_g(other, 'timeline_ms', 'p99'))}"
                f" ms.")
    if pull:
        behind = pull["not_sent"]
        out.append(
            f"**Pull-only.** No inbox writes at all, but GetTimeline p50 "
            f"{_f(_g(pull, 'timeline_ms', 'p50'))} ms and p99 "
            f"{_f(_g(pull, 'timeline_ms', 'p99'))} ms, {pull['reads']['partial']:,} partial "
            f"pages" + (f", and {behind:,} requests not sent because the suite fell behind "
                        f"the schedule" if behind else "") + ". Every read merges one list per "
            "followee (most of them cache misses: each author's list is cached for a second "
            "and readers rarely share followees).")
    return out


def _g(d: dict[str, Any], *path: str) -> Any:
    for key in path:
        if d is None:
            return None
        d = d.get(key)
    return d


def _share_of_writes(r: dict[str, Any]) -> float:
    raw = r["raw"]
    total = sum(raw["writes_per_post"])
    celeb = sum(w for w, c in zip(raw["writes_per_post"], raw["post_by_celebrity"],
                                  strict=True) if c)
    return celeb / total if total else 0.0


def _bench_section(title: str, command: str, report: dict[str, Any], chart: Path,
                   doc: Path) -> list[str]:
    loads = sorted({r["load"]["method"] for r in report["strategies"]})
    load = report["strategies"][0]["load"]
    how = ("the real gRPC API" if loads == ["grpc"] else
           "the store, in the services' key layout (bulk writes; too many edges for one Follow "
           "call each)")
    lines = [
        f"## {title}", "",
        f"```\n{command}\n```", "",
        "```\n" + summary_line(report) + "\n```", "",
        f"Graph loaded through {how}: {load['accounts']:,} accounts, {load['edges']:,} follows "
        f"and {load['seed_posts']:,} older posts, {load['seconds']:.0f} s per strategy. Every "
        f"account counts as active (read in the last day), the worst case for push.", "",
        table(report, markdown=True), "",
        f"![{title}]({Path(os.path.relpath(chart, doc.parent)).as_posix()})", "",
    ]
    lines += [f"- {f}" for f in findings(report)]
    lines.append("")
    return lines


def _reads_table(results: list[ReadsResult]) -> list[str]:
    lines = ["| reader follows | page size | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | "
             "entries from pull | partial |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        s, m = r.scenario, r.summary
        lines.append(f"| {s.push_authors} push + {s.pull_authors} pull authors | {s.page_size} "
                     f"| {m['p50']:.2f} | {m['p95']:.2f} | {m['p99']:.2f} | {m['max']:.2f} | "
                     f"{r.pull_entry_share:.0%} | {r.partial} |")
    return lines


@dataclass(frozen=True)
class Scale:
    """Sizes of the published run; `QUICK` shrinks everything to check the generator."""

    users: int = 20_000
    celebrity_followers: int = 100_000
    duration_s: float = 30.0
    max_edges: int | None = None
    engine_followers: int = 100_000
    engine_repeats: int = 5
    read_mixes: tuple[tuple[int, int, int], ...] = READ_MIXES
    reads: int = 1000
    read_threshold: int = 1000
    synthetic_thresholds: tuple[int, ...] = SYNTHETIC_THRESHOLDS
    real_thresholds: tuple[int, ...] = REAL_THRESHOLDS
    watchers: int = 2000
    watch_posts: int = 100
    watch_repeats: int = 3


QUICK = Scale(users=400, celebrity_followers=2_000, duration_s=3, max_edges=4_000,
              engine_followers=5_000, engine_repeats=2, read_mixes=((20, 2, 20),), reads=100,
              read_threshold=50, synthetic_thresholds=(1_000, 200), real_thresholds=(20, 50),
              watchers=40, watch_posts=10, watch_repeats=1)


def git_revision(outputs: tuple[Path, ...] = ()) -> str:
    """The commit measured, and whether the tree differed from it (read-only git calls).
    `outputs`: what this run rewrites itself (the doc, the charts), which do not count."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # never touch the index
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, env=env).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True, env=env).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    mine = [str(p).rstrip("/") for p in outputs]
    changed = [line[3:] for line in status.splitlines()
               if not any(line[3:] == m or line[3:].startswith(m + "/") for m in mine)]
    return rev + (" with uncommitted changes" if changed else "")


def regenerate(doc: Path, img: Path, out: Path, real_graph: Path,
               scale: Scale | None = None) -> Path:
    scale = scale or Scale()
    started = time.monotonic()
    img.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    sections: list[str] = []
    heads: dict[str, Any] = {}

    print("== synthetic graph: push-only, hybrid, pull-only", flush=True)
    synthetic = graphs.synthetic(users=scale.users,
                                 celebrity_followers=scale.celebrity_followers)
    first, *more = scale.synthetic_thresholds
    config = BenchConfig(threshold=first, more_thresholds=tuple(more),
                         duration_s=scale.duration_s, out_dir=str(out), charts_dir=str(img),
                         name="synthetic")
    report = run_bench(config, synthetic)
    heads["synthetic"] = headline(report)
    sections += _bench_section(
        f"Synthetic graph: {scale.users:,} users and a {scale.celebrity_followers:,}-follower "
        f"account",
        f"fanline bench --threshold {_ts(scale.synthetic_thresholds)} --charts {img}",
        report, img / "synthetic.png", doc)

    real: dict[str, Any] | None = None
    if real_graph.exists():
        print(f"== real graph {real_graph.name}: push-only, hybrid, pull-only", flush=True)
        graph = graphs.from_snap(real_graph, scale.max_edges)
        first, *more = scale.real_thresholds
        config = BenchConfig(threshold=first, more_thresholds=tuple(more),
                             duration_s=scale.duration_s, out_dir=str(out), charts_dir=str(img),
                             name="slashdot")
        real = run_bench(config, graph)
        heads["slashdot"] = headline(real)
        sections += _bench_section(
            f"Real graph: Slashdot ({real_graph.name})",
            f"fanline bench --graph ../shared/data/soc-Slashdot0902.txt.gz --threshold "
            f"{_ts(scale.real_thresholds)} --charts {img}",
            real, img / "slashdot.png", doc)
    else:
        sections += ["## Real graph", "", f"Not run: {real_graph} is not present on this "
                     "machine (the synthetic graph above stands alone).", ""]

    print("== fan-out engine", flush=True)
    engine: EngineResult = run_engine(followers=scale.engine_followers,
                                      repeats=scale.engine_repeats, out_dir=out, progress=True)
    sections += ["## Fan-out engine: one worker against the store's raw ZADD rate", "",
                 "```\nfanline bench engine\n```", "", "```\n" + format_engine(engine) + "\n```",
                 "",
                 "The worker's rate is the post's inbox writes over the time from its first "
                 "batch starting to its last batch finishing (the worker's own timestamps). Per "
                 "follower the push script does four store operations (activity check, follow "
                 "check on the author's followers in that bucket, ZADD, size check); per batch "
                 "the worker reads up to 1,000 followers of one bucket, builds their keys, "
                 "makes one script call and acknowledges the batch. The ratio is what that "
                 "costs against bare pipelined ZADD on the same server in the same run.", ""]

    print("== one node against a 3-master cluster", flush=True)
    cluster = run_cluster_comparison(followers=scale.engine_followers,
                                     repeats=max(2, scale.engine_repeats - 2),
                                     reads=scale.reads, out_dir=out)
    sections += ["## One node against a 3-master Valkey Cluster", "",
                 "```\nfanline bench cluster\n```", "", "```\n" + format_comparison(cluster) +
                 "\n```", "",
                 "The same fan-out engine and GetTimeline runs as above, once on one embedded "
                 "node and once on an embedded cluster of three masters, all on this machine's "
                 "cores. Balance: a fresh cluster, the engine's followers loaded, one post "
                 "fanned out; each master's share of the keys and of the ZADD calls (scripts' "
                 "included). What these figures mean for sizing a deployment is in "
                 "[scaling.md](scaling.md).", ""]

    print("== GetTimeline latency for given follow mixes", flush=True)
    reads = [run_reads(ReadsScenario(push_authors=p, pull_authors=c, page_size=size,
                                     reads=scale.reads, threshold=scale.read_threshold),
                       out_dir=out) for p, c, size in scale.read_mixes]
    sections += ["## GetTimeline latency for a given follow mix (concurrency 1)", "",
                 "```\n" + "\n".join(
                     f"fanline bench reads --push-authors {p} --pull-authors {c} --page-size "
                     f"{size}" for p, c, size in scale.read_mixes) + "\n```", "",
                 f"Ten readers with the same mix are read in turn, one call at a time, "
                 f"{scale.reads:,} calls after 50 warm-up calls; every author has 5 posts made "
                 f"through CreatePost, and the pulled authors are PULL by the real publish-time "
                 f"decision ({scale.read_threshold:,} followers, threshold "
                 f"{scale.read_threshold:,}).", "", *_reads_table(reads), ""]

    print("== live timelines", flush=True)
    watch = run_watch(WatchScenario(watchers=scale.watchers, baseline=max(2, scale.watchers // 100),
                                    posts=scale.watch_posts, repeats=scale.watch_repeats),
                      out_dir=out)
    sections += watch_section(watch)

    worked = plan(Traffic(), Model(worker_rate=round(engine.worker_rate, -3) or 40_000))
    sections += ["## Capacity plan: the worked example", "",
                 f"```\nfanline plan --worker-rate {worked.model.worker_rate:.0f}\n```", "",
                 "```\n" + format_plan(worked) + "\n```", "",
                 "The worker rate is the one measured above. The push-everything figures "
                 "match the textbook arithmetic (1M posts/day x 500 followers = 500M inserts a "
                 "day, about 5,800/s, about 29,000/s at a 5x peak; 75 GB a day at 150 B an "
                 "entry, 225 GB with 3 replicas, about 82 TB a year).", ""]

    verdicts = [verdict("Synthetic graph", report, engine.worker_rate)]
    if real is not None:
        verdicts.append(verdict("Slashdot graph", real, engine.worker_rate))
    machine = machine_info()
    versions = {
        "store": report["strategies"][0].get("store", "?"),
        "redis-benchmark": _tool_version("redis-benchmark") or "not installed",
    }
    minutes = (time.monotonic() - started) / 60
    syn = heads["synthetic"]
    head_lines = [
        f"- Write amplification, synthetic graph: hybrid {syn['wa_hybrid_mean']:,.1f} against "
        f"push-only {syn['wa_push_mean']:,.1f} inbox writes per post on average "
        f"(worst post {syn['wa_hybrid_max']:,.0f} against {syn['wa_push_max']:,.0f}).",
        f"- GetTimeline p99, synthetic graph: hybrid {syn['p99_hybrid']:,.1f} ms against "
        f"push-only {syn['p99_push']:,.1f} ms.",
    ]
    if "slashdot" in heads:
        sd = heads["slashdot"]
        head_lines += [
            f"- Slashdot graph (T={scale.real_thresholds[0]}): write amplification hybrid "
            f"{sd['wa_hybrid_mean']:,.1f} against push-only {sd['wa_push_mean']:,.1f} "
            f"(worst post {sd['wa_hybrid_max']:,.0f} against {sd['wa_push_max']:,.0f}); "
            f"GetTimeline p99 {sd['p99_hybrid']:,.1f} ms against {sd['p99_push']:,.1f} ms."]
    head_lines.append(
        f"- Fan-out engine: one worker wrote {engine.worker_rate:,.0f} inboxes/s; the same "
        f"server took {engine.zadd_rate:,.0f} pipelined ZADD/s over {engine.followers:,} keys "
        f"({engine.baseline_tool}): ratio {engine.ratio:.2f}.")
    head_lines.append(
        f"- 3-master cluster against one node: fan-out {cluster.writes_ratio:.2f}x the inbox "
        f"writes/s, GetTimeline p99 {cluster.p99_ratio:.2f}x; masters within "
        f"{max(cluster.balance.keys_deviation, cluster.balance.writes_deviation):.1%} of an "
        f"even share of keys and writes.")
    many = watch.medians(watch.scenario.watchers)
    head_lines.append(
        f"- WatchTimeline, {watch.scenario.watchers:,} streams on one timeline process: "
        f"delivery p50 {many['p50_ms']:.0f} ms, p99 {many['p99_ms']:.0f} ms after CreatePost "
        f"returns; {many['kb_per_watcher']:.0f} KB per open stream.")
    first = reads[0]
    head_lines.append(
        f"- GetTimeline, reader following {first.scenario.push_authors} push + "
        f"{first.scenario.pull_authors} pull authors, page {first.scenario.page_size}, "
        f"concurrency 1: p50 {first.summary['p50']:.2f} ms, p99 {first.summary['p99']:.2f} ms.")

    lines = [
        "# Benchmarks: push, pull and hybrid fan-out", "",
        "What Fanline's delivery strategies cost on one machine, measured by `fanline bench`. "
        "Every figure below comes from one run of", "",
        "```\nfanline bench docs\n```", "",
        f"which took {minutes:.0f} minutes here and rewrites this file and `{img}/`. JSON "
        f"with every sample is left in `{out}/`.", "",
        "## Machine", "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB memory",
        f"- {machine['os']}, Python {machine['python']}",
        f"- Store: {versions['store']} (embedded, no persistence); redis-benchmark: "
        f"{versions['redis-benchmark']}",
        f"- Code: commit {git_revision((doc, img))}",
        "- The store, the three services, one fan-out worker and the load generator all share "
        "these cores, so absolute figures are low; the comparisons are the point.",
        f"- Run on {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}.", "",
        "## Headlines", "", *head_lines, "",
        *sections,
        *_method_notes(verdicts),
    ]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(lines) + "\n")
    (out / "headlines.json").write_text(json.dumps(
        {**heads, "engine": engine.as_dict(), "reads": [r.summary for r in reads],
         "cluster": cluster.as_dict()}, indent=1))
    return doc


def verdict(name: str, report: dict[str, Any], engine_rate: float) -> str:
    """One data-driven sentence: did hybrid pay off on this graph, and why.

    Reads are compared at the median: on a shared machine a p99 moves by 2x or more from one
    run to the next, while the median stays put."""
    h = headline(report)
    by = _by(report)
    p50_h, p50_p = by["hybrid"]["timeline_ms"]["p50"], by["push"]["timeline_ms"]["p50"]
    biggest = report["graph"]["followers_max"]
    seconds = biggest / engine_rate if engine_rate else 0.0
    fewer = 1 - h["wa_hybrid_mean"] / h["wa_push_mean"] if h["wa_push_mean"] else 0.0
    lag = _x(h["lag_p99_hybrid"], h["lag_p99_push"])
    start = (f"**{name}:** the biggest account has {biggest:,} followers, so one of its posts "
             f"is ~{seconds:.2f} s of one worker's time pushed. Hybrid wrote {fewer:.1%} fewer "
             f"inbox entries than push-only, its fan-out lag p99 was {lag} push-only's, and "
             f"its median read took {_f(p50_h)} against {_f(p50_p)} ms")
    if p50_h <= 1.1 * p50_p:
        return start + ": hybrid wins."
    return (start + ": the writes it saves are cheap ones and its readers pay for them, so "
            "push-only (a threshold above the biggest account) is the better setting at this "
            "size.")


def _method_notes(verdicts: list[str]) -> list[str]:
    return [
        "## When hybrid wins", "",
        *(f"- {v}" for v in verdicts),
        "- **Heavy tails make push expensive.** Write amplification per post is the author's "
        "follower count, so a handful of big accounts dominate the write volume. Pulling only "
        "them removes most of the writes while all ordinary readers keep reading one "
        "precomputed inbox.",
        "- **Push-only is fine for small accounts.** Below the threshold a post costs tens of "
        "writes and reaches every inbox in milliseconds; pulling those authors instead makes "
        "every read merge one list per followee, which is what sinks pull-only.",
        "- **The threshold sits where one pushed post's fan-out starts to hurt.** A pushed "
        "post is delivered batch after batch by one worker at the engine rate above, so a "
        "post to T followers takes about T / that rate; other posts queue behind it. Pulled "
        "authors cost each of their followers one list fetch per read. `fanline plan` puts "
        "both into a recommended threshold for given traffic.",
        "- **Where it does not pay.** A graph without big accounts (or a threshold above all "
        "of them) makes hybrid equal to push-only; a read-light, write-heavy system (few "
        "reads per post) can afford to pull more.", "",
        "## How it is measured", "",
        "- Each strategy runs on a fresh suite (own embedded store, services, one worker) "
        "started by the launcher; push-only is threshold 10^12, pull-only threshold 0, "
        "hybrid the given threshold. The same seed gives the same graph and the same "
        "schedule for all three.",
        "- The workload is open loop: posts and reads arrive as Poisson processes at the "
        "given rates, at most `--concurrency` in flight. Latency is measured from sending a "
        "call to its reply; when the suite falls behind, the delay before sending is "
        "reported separately (\"sends behind schedule\"), and requests more than a third of "
        "the run behind are not sent and counted.",
        "- Write amplification, fan-out lag and delivery mode per post come from "
        "GetDelivery; inbox writes and queue depth from GetFanoutStats, sampled every "
        "0.25 s; \"while fanning out\" divides the writes by the time some pushed post was "
        "being delivered (from the worker's per-post start and end times); store memory from "
        "INFO memory.",
        "- \"Matches followers+1 / 0\" checks every post against the design: a pushed post "
        "writes to every (active) follower and the author's own inbox, a pulled one writes "
        "nothing.",
        "- Posts by accounts at or above the threshold are a fixed share of all posts "
        "(`--celebrity-post-share`, 2%): big accounts post more than their number suggests. "
        "Other posts and all reads are spread evenly over users.",
        "- Matching a reader against the PULL authors costs one ZMSCORE while there are few "
        "of them and one read of the reader's follow set when there are many (threshold 0 "
        "makes every author who posted PULL), so it grows with what the reader follows, not "
        "with the number of PULL authors in the system.",
        "- Variance: on this shared 2-core machine a p99 moved by a factor of two or more "
        "between repeated runs of the same configuration, while medians and write figures "
        "stayed put; the verdicts above compare reads at the median. Write amplification is "
        "exact (every post is checked against its author's follower count).",
        "- Synthetic graph: organic follows pick accounts by Zipf-weighted popularity "
        "(exponent 0.7) and each user follows a log-normal number of accounts (mean 20); "
        "the celebrity's followers are 25% of the users plus audience-only accounts. Real "
        "graph: every node is a user; the 78,303 self-loops in the file are dropped "
        "(following yourself is refused).",
    ]
