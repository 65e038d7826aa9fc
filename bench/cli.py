"""`fanline bench ...` and `fanline plan`: registered into the `fanline` command by
fanline.cli, which calls `add_commands` with its subparsers. Heavy imports stay inside the
handlers so `fanline --help` stays fast."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fanline.bench.graph import DEFAULT_SNAP_PATH
from fanline.cli import count, real

DEFAULT_OUT = "bench/out"
SYNTHETIC_THRESHOLD = 10_000
# At Slashdot's size 10,000 never bites (max 2,552 followers). At 100, 1.8% of accounts are
# pulled and they hold 35% of all follow edges: the head of a heavy tail, as at scale.
REAL_GRAPH_THRESHOLD = 100


def _graph_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("graph (synthetic unless --graph)")
    g.add_argument("--graph", metavar="PATH", default=None,
                   help="SNAP edge list (e.g. ../shared/data/soc-Slashdot0902.txt.gz); "
                        "'slashdot' = that default path")
    g.add_argument("--max-edges", type=count(1), default=None,
                   help="read only the first N edges of --graph")
    g.add_argument("--users", type=count(2), default=20_000, help="accounts in the synthetic graph")
    g.add_argument("--mean-follows", type=real(0, above=True), default=20.0,
                   help="mean accounts each user follows (log-normal)")
    g.add_argument("--celebrities", type=count(0), default=1, help="celebrity accounts")
    g.add_argument("--celebrity-followers", type=count(0), default=100_000,
                   help="followers of the biggest celebrity (the next have 1/2, 1/3, ...)")
    g.add_argument("--celebrity-reach", type=real(0, 1), default=0.25,
                   help="share of workload users following each celebrity")
    g.add_argument("--zipf", type=real(0), default=0.7, help="popularity skew of organic follows")


def _workload_args(p: argparse.ArgumentParser) -> None:
    w = p.add_argument_group("workload")
    w.add_argument("--threshold", default=None,
                   help=f"hybrid celebrity threshold (default {SYNTHETIC_THRESHOLD:,} "
                        f"synthetic, {REAL_GRAPH_THRESHOLD} with --graph); a comma-separated "
                        f"list runs one hybrid per value, the first defining the celebrities")
    w.add_argument("--strategies", default="push,hybrid,pull",
                   help="comma-separated subset of push,hybrid,pull")
    w.add_argument("--duration", type=real(0, above=True), default=30.0, help="seconds of traffic")
    w.add_argument("--posts-per-s", type=real(0, above=True), default=20.0, help="posts offered per second")
    w.add_argument("--reads-per-s", type=real(0, above=True), default=100.0,
                   help="timeline reads offered per second")
    w.add_argument("--concurrency", type=count(1), default=16, help="requests in flight at most")
    w.add_argument("--page-size", type=count(1), default=20, help="entries per timeline page")
    w.add_argument("--celebrity-post-share", type=real(0, 1), default=0.02,
                   help="share of posts by accounts at or above the threshold")
    w.add_argument("--seed", type=int, default=1, help="graph and schedule seed")
    w.add_argument("--workers", type=count(1), default=1, help="fan-out worker processes")
    w.add_argument("--load", choices=("auto", "grpc", "store"), default="auto",
                   help="how the graph is loaded (auto: gRPC for small graphs)")
    w.add_argument("--seed-posts", type=count(0), default=2, help="older posts per author")
    w.add_argument("--drain-timeout", type=real(0, above=True), default=180.0,
                   help="seconds to wait for fan-out to finish after the traffic")
    w.add_argument("--out", default=DEFAULT_OUT, help="JSON and logs go here")
    w.add_argument("--charts", default=None, help="PNG directory (default: --out)")
    w.add_argument("--name", default=None, help="file stem (default: synthetic or graph name)")
    w.add_argument("--no-progress", action="store_true", help="print only the results")


def add_commands(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "bench", help="measure push, pull and hybrid fan-out on this machine",
        description="Run one seeded workload under push-only, hybrid and pull-only delivery, "
                    "each on a fresh suite, and report the trade-off. Subcommands run the "
                    "other measurements.")
    _graph_args(bench)
    _workload_args(bench)
    bench.set_defaults(func=cmd_bench)
    sub = bench.add_subparsers(dest="bench_command",
                               metavar="{engine,reads,watch,cluster,layouts,soak,chaos,docs}")

    engine = sub.add_parser(
        "engine", help="one worker's inbox writes/s vs pipelined ZADD",
        description="Fan one author's posts out to N active followers with one worker and "
                    "compare its inbox writes/s with what the store takes from pipelined ZADD "
                    "(redis-benchmark) in the same run.")
    engine.add_argument("--followers", type=count(1), default=100_000,
                        help="active followers of the one author")
    engine.add_argument("--repeats", type=count(1), default=5, help="posts fanned out (the median is kept)")
    engine.add_argument("--batch-size", type=count(1), default=1000, help="followers per fan-out batch")
    engine.add_argument("--requests", type=count(1), default=1_000_000,
                        help="requests per redis-benchmark run")
    engine.add_argument("--pipeline", type=count(1), default=32, help="redis-benchmark pipeline depth")
    engine.add_argument("--python-baseline", action="store_true",
                        help="use the Python ZADD loop even if redis-benchmark exists")
    engine.add_argument("--worker-concurrency", type=count(1), default=None,
                        help="consume loops in the worker (default: the service's setting)")
    engine.add_argument("--cluster", type=count(0), default=0, metavar="MASTERS",
                        help="on an embedded cluster of this many masters (default: one node)")
    engine.add_argument("--out", default=DEFAULT_OUT, help="JSON and logs go here")
    engine.set_defaults(func=cmd_engine)

    reads = sub.add_parser(
        "reads", help="GetTimeline latency for one reader mix, concurrency 1",
        description="Measure GetTimeline latency, one call at a time, for readers following a "
                    "mix of push and pull authors.")
    reads.add_argument("--push-authors", type=count(0), default=100,
                       help="followed authors delivered by push")
    reads.add_argument("--pull-authors", type=count(0), default=5,
                       help="followed authors read by pull")
    reads.add_argument("--posts-per-author", type=count(1), default=5, help="posts each author has")
    reads.add_argument("--threshold", type=count(0), default=1000,
                       help="pull authors get this many followers; push authors have fewer")
    reads.add_argument("--readers", type=count(1), default=10,
                       help="readers with the same mix, read in turn")
    reads.add_argument("--reads", type=count(1), default=1000, help="GetTimeline calls measured")
    reads.add_argument("--page-size", type=count(1), default=20, help="entries per page")
    reads.add_argument("--cluster", type=count(0), default=0, metavar="MASTERS",
                       help="on an embedded cluster of this many masters (default: one node)")
    reads.add_argument("--out", default=DEFAULT_OUT, help="JSON and logs go here")
    reads.set_defaults(func=cmd_reads)

    watch = sub.add_parser(
        "watch", help="WatchTimeline delivery latency and memory with many watchers",
        description="Open WatchTimeline streams on one timeline process (first a few, then "
                    "many), post at a fixed rate, and report the time from CreatePost "
                    "returning to each watcher receiving the entry (p50/p99), missing and "
                    "repeated deliveries, and the process's memory per open stream.")
    watch.add_argument("--watchers", type=count(1), default=2000, help="streams held open")
    watch.add_argument("--baseline", type=count(1), default=20,
                       help="streams of the first phase, for the ratio")
    watch.add_argument("--authors", type=count(1), default=20, help="push authors posting")
    watch.add_argument("--follows", type=count(1), default=2, help="authors each watcher follows")
    watch.add_argument("--posts", type=count(1), default=100, help="posts per phase")
    watch.add_argument("--rate", type=real(0, above=True), default=10.0, help="posts per second")
    watch.add_argument("--repeats", type=count(1), default=3,
                       help="runs of both phases (medians are reported)")
    watch.add_argument("--out", default=DEFAULT_OUT, help="JSON and logs go here")
    watch.set_defaults(func=cmd_watch)

    cluster = sub.add_parser(
        "cluster", help="fan-out and reads on one node and on a 3-master cluster, and balance",
        description="Run the engine and reads benchmarks on one node and on a 3-master "
                    "embedded Valkey Cluster, side by side, and measure how evenly the masters "
                    "share keys and inbox writes.")
    cluster.add_argument("--followers", type=count(1), default=100_000,
                         help="active followers of the engine's author")
    cluster.add_argument("--repeats", type=count(1), default=3, help="engine repeats per store")
    cluster.add_argument("--reads", type=count(1), default=1000, help="GetTimeline calls per store")
    cluster.add_argument("--out", default=DEFAULT_OUT, help="JSON and logs go here")
    cluster.set_defaults(func=cmd_cluster)

    layouts = sub.add_parser(
        "layouts", help="store cost per post of the fan-out key layouts considered",
        description="Fan one post out to 10, 100, 1k and 100k followers under each key "
                    "layout considered for the cluster (bucketed hash tags; per-node calls "
                    "with the cross-slot flag; the old single-node layout), on one node and "
                    "on a 3-master cluster; store CPU per post.")
    layouts.add_argument("--quick", action="store_true", help="N up to 10,000, one repeat")
    layouts.add_argument("--out", default=None, help="also write the markdown table here")
    layouts.set_defaults(func=cmd_layouts)

    soak = sub.add_parser(
        "soak", help="mixed load at 80%% of measured capacity for N minutes: errors, RSS, p99",
        description="Measure what the suite serves on this machine, then offer a share of it "
                    "as an open-loop stream of reads, posts and follows for N minutes, "
                    "reporting errors, RSS per process and p50/p99 per minute.")
    soak.add_argument("--minutes", type=count(3), default=10,
                      help="minutes of load (the verdict needs at least 3)")
    soak.add_argument("--load", type=real(0, 1, above=True), default=0.8, help="share of measured capacity")
    soak.add_argument("--users", type=count(2), default=5000, help="accounts in the graph")
    soak.add_argument("--out", default=DEFAULT_OUT, help="JSON and logs go here")
    soak.set_defaults(func=cmd_soak)

    chaos = sub.add_parser(
        "chaos", help="random SIGKILLs of workers, services and the store under load",
        description="Run a supervised suite with a durable store under a steady stream of "
                    "posts and reads, kill a random process (worker, service or store) every "
                    "few seconds, then check every acknowledged post for loss and duplication "
                    "and report recovery times.")
    chaos.add_argument("--minutes", type=real(0, above=True), default=3.0, help="minutes of load and kills")
    chaos.add_argument("--post-rate", type=real(0, above=True), default=8.0, help="posts/s offered")
    chaos.add_argument("--read-rate", type=real(0, above=True), default=40.0, help="timeline reads/s offered")
    chaos.add_argument("--seed", type=int, default=1, help="the kill plan and the load")
    chaos.add_argument("--out", default=DEFAULT_OUT, help="JSON and logs go here")
    chaos.set_defaults(func=cmd_chaos)

    docs = sub.add_parser(
        "docs", help="rerun everything and rewrite docs/benchmarks.md",
        description="Rerun every benchmark and rewrite docs/benchmarks.md and its charts, "
                    "recording the machine and the commit measured.")
    docs.add_argument("--doc", default="docs/benchmarks.md", help="the page to rewrite")
    docs.add_argument("--img", default="docs/img", help="where the charts go")
    docs.add_argument("--out", default=DEFAULT_OUT, help="JSON and logs go here")
    docs.add_argument("--graph", default=str(DEFAULT_SNAP_PATH),
                      help="real graph to include if present")
    docs.add_argument("--quick", action="store_true",
                      help="tiny sizes, to check the generator (not for publishing)")
    docs.set_defaults(func=cmd_docs)

    plan = subparsers.add_parser(
        "plan", help="capacity calculator: insert rates, storage, a threshold",
        description="From traffic figures, print fan-out insert rates, inbox storage and a "
                    "recommended celebrity threshold.")
    from fanline.bench.plan import add_plan_args

    add_plan_args(plan)
    plan.set_defaults(func=cmd_plan)


def load_graph(args: argparse.Namespace) -> Any:
    from fanline.bench import graph as graphs

    if args.graph:
        path = DEFAULT_SNAP_PATH if args.graph == "slashdot" else Path(args.graph)
        if not path.exists():
            print(f"fanline bench: no graph at {path}", file=sys.stderr)
            return None
        return graphs.from_snap(path, args.max_edges)
    return graphs.synthetic(
        users=args.users, mean_follows=args.mean_follows, celebrities=args.celebrities,
        celebrity_followers=args.celebrity_followers, celebrity_reach=args.celebrity_reach,
        zipf=args.zipf, seed=args.seed)


def config_from_args(args: argparse.Namespace) -> Any:
    from fanline.bench.run import BenchConfig

    strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    unknown = set(strategies) - {"push", "hybrid", "pull"}
    if unknown or not strategies:
        raise SystemExit(f"fanline bench: unknown strategies {sorted(unknown)}")
    if args.threshold is None:
        thresholds = [REAL_GRAPH_THRESHOLD if args.graph else SYNTHETIC_THRESHOLD]
    else:
        try:
            thresholds = [int(t.replace("_", "")) for t in args.threshold.split(",") if t]
        except ValueError:
            raise SystemExit(f"fanline bench: bad --threshold {args.threshold!r}") from None
        if not thresholds or min(thresholds) < 0:
            raise SystemExit(f"fanline bench: bad --threshold {args.threshold!r}")
    name = args.name or (Path(args.graph).name.split(".")[0] if args.graph and
                         args.graph != "slashdot" else ("slashdot" if args.graph else
                                                        "synthetic"))
    return BenchConfig(
        threshold=thresholds[0], more_thresholds=tuple(thresholds[1:]),
        strategies=strategies, duration_s=args.duration,
        posts_per_s=args.posts_per_s, reads_per_s=args.reads_per_s,
        concurrency=args.concurrency, page_size=args.page_size,
        celebrity_post_share=args.celebrity_post_share, seed=args.seed, workers=args.workers,
        load=args.load, seed_posts=args.seed_posts, drain_timeout_s=args.drain_timeout,
        out_dir=args.out, charts_dir=args.charts, name=name, progress=not args.no_progress)


def cmd_bench(args: argparse.Namespace) -> int:
    from fanline.bench.report import summary_line, table
    from fanline.bench.run import run_bench

    graph = load_graph(args)
    if graph is None:
        return 2
    config = config_from_args(args)
    report = run_bench(config, graph)
    print()
    print(summary_line(report))
    loads = {r["load"]["method"] for r in report["strategies"]}
    print(f"graph loaded through: {', '.join(sorted(loads))} "
          f"({'real gRPC API' if loads == {'grpc'} else 'store, services key layout'})")
    print()
    print(table(report))
    print(f"\nJSON  {Path(config.out_dir) / (config.name + '.json')}")
    if report.get("chart"):
        print(f"chart {report['chart']}")
    return 0


def cmd_engine(args: argparse.Namespace) -> int:
    from fanline.bench.engine import format_engine, run_engine

    result = run_engine(followers=args.followers, repeats=args.repeats,
                        batch_size=args.batch_size, requests=args.requests,
                        pipeline=args.pipeline, out_dir=args.out,
                        force_python_baseline=args.python_baseline,
                        worker_concurrency=args.worker_concurrency, cluster=args.cluster)
    print(format_engine(result))
    print(f"JSON  {Path(args.out) / 'engine.json'}")
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    from fanline.bench.cluster import format_comparison, run_cluster_comparison

    result = run_cluster_comparison(followers=args.followers, repeats=args.repeats,
                                    reads=args.reads, out_dir=args.out)
    print(format_comparison(result))
    print(f"JSON  {Path(args.out) / 'cluster.json'}")
    return 0


def cmd_layouts(args: argparse.Namespace) -> int:
    import asyncio

    from fanline.bench.layouts import main

    asyncio.run(main([*(["--quick"] if args.quick else []),
                      *(["--out", args.out] if args.out else [])]))
    return 0


def cmd_reads(args: argparse.Namespace) -> int:
    from fanline.bench.reads import ReadsScenario, format_reads, run_reads

    scenario = ReadsScenario(
        push_authors=args.push_authors, pull_authors=args.pull_authors,
        posts_per_author=args.posts_per_author, threshold=args.threshold,
        readers=args.readers, reads=args.reads, page_size=args.page_size)
    result = run_reads(scenario, out_dir=args.out, cluster=args.cluster)
    print(format_reads(result))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from fanline.bench.watch import WatchScenario, format_watch, run_watch

    result = run_watch(WatchScenario(watchers=args.watchers, baseline=args.baseline,
                                     authors=args.authors, follows=args.follows,
                                     posts=args.posts, rate=args.rate, repeats=args.repeats),
                       out_dir=args.out)
    print(format_watch(result))
    print(f"JSON  {Path(args.out) / 'watch.json'}")
    return 0 if result.clean else 1


def cmd_soak(args: argparse.Namespace) -> int:
    from fanline.bench.soak import format_soak, run_soak

    result = run_soak(minutes=args.minutes, load=args.load, users=args.users, out_dir=args.out)
    print(format_soak(result))
    print(f"JSON  {Path(args.out) / 'soak.json'}")
    return 0 if result.passed else 1


def cmd_chaos(args: argparse.Namespace) -> int:
    from fanline.bench.chaos import format_chaos, run_chaos

    result = run_chaos(minutes=args.minutes, post_rate=args.post_rate,
                       read_rate=args.read_rate, seed=args.seed, out_dir=args.out)
    print(format_chaos(result))
    print(f"JSON  {Path(args.out) / 'chaos.json'}")
    return 0 if result.passed else 1


def cmd_docs(args: argparse.Namespace) -> int:
    from fanline.bench.docs import QUICK, regenerate

    path = regenerate(Path(args.doc), Path(args.img), Path(args.out), Path(args.graph),
                      QUICK if args.quick else None)
    print(f"wrote {path}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from fanline.bench.plan import format_plan, plan_from_args

    result = plan_from_args(args)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(format_plan(result))
    return 0
