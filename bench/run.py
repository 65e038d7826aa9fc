"""`fanline bench`: one workload, three delivery strategies, each on a fresh suite."""

from __future__ import annotations

import asyncio
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from fanline.bench.clients import Stubs
from fanline.bench.graph import Graph
from fanline.bench.load import LoadReport, choose_method, load_grpc, load_store
from fanline.bench.stats import rate, summarize
from fanline.bench.suite import (
    PUSH_ONLY_THRESHOLD,
    running_suite,
    server_version,
    suite_store,
    used_memory,
)
from fanline.bench.workload import DriveResult, drive, schedule
from fanline.common.store import Store
from fanline.gen.feed.v1 import fanout_pb2
from fanline.launcher import Suite

DELIVERY_LOOKUP_CONCURRENCY = 16


@dataclass
class BenchConfig:
    threshold: int = 10_000  # the hybrid strategy's celebrity threshold
    strategies: tuple[str, ...] = ("push", "hybrid", "pull")
    # More hybrid thresholds to run after the first (one column each); celebrities (for the
    # posting share and the reader groups) are always the accounts at or above `threshold`.
    more_thresholds: tuple[int, ...] = ()
    duration_s: float = 30.0
    posts_per_s: float = 20.0
    reads_per_s: float = 100.0
    concurrency: int = 16
    page_size: int = 20
    celebrity_post_share: float = 0.02
    seed: int = 1
    workers: int = 1
    load: str = "auto"  # auto | grpc | store
    seed_posts: int = 2  # older posts per author loaded before the run
    inbox_max: int = 800
    drain_timeout_s: float = 180.0
    out_dir: str = "bench/out"
    charts_dir: str | None = None  # default: out_dir
    name: str = "bench"  # file stem of the JSON and the chart
    progress: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Strategy:
    key: str  # "push", "hybrid", "hybrid-500", "pull"
    label: str
    threshold: int


def expand_strategies(config: BenchConfig) -> list[Strategy]:
    out: list[Strategy] = []
    for name in config.strategies:
        if name == "push":
            out.append(Strategy("push", "push-only", PUSH_ONLY_THRESHOLD))
        elif name == "pull":
            out.append(Strategy("pull", "pull-only", 0))
        elif name == "hybrid":
            out.append(Strategy("hybrid", f"hybrid (T={config.threshold:,})", config.threshold))
            out += [Strategy(f"hybrid-{t}", f"hybrid (T={t:,})", t)
                    for t in config.more_thresholds]
        else:
            raise ValueError(f"unknown strategy {name!r}")
    return out


async def _deliveries(stubs: Stubs, post_ids: list[str]) -> list[fanout_pb2.GetDeliveryResponse]:
    gate = asyncio.Semaphore(DELIVERY_LOOKUP_CONCURRENCY)

    async def one(post_id: str) -> fanout_pb2.GetDeliveryResponse:
        async with gate:
            try:
                return await stubs.delivery(post_id)
            except grpc.aio.AioRpcError:
                return fanout_pb2.GetDeliveryResponse(post_id=post_id)

    return list(await asyncio.gather(*(one(p) for p in post_ids)))


def peak_rate(samples: list[tuple[float, int, int, int]], window_s: float = 1.0) -> float:
    """Highest inbox-write rate over any window of about `window_s` between samples."""
    best = 0.0
    j = 0
    for i, (t, writes, _, _) in enumerate(samples):
        j = max(j, i + 1)
        while j < len(samples) and samples[j][0] - t < window_s:
            j += 1
        if j >= len(samples):
            break
        best = max(best, rate(samples[j][1] - writes, samples[j][0] - t))
    return best


async def _busy_intervals(store: Store, post_ids: list[str]) -> dict[str, tuple[int, int]]:
    """Pushed post -> (first batch started, last batch done) in unix ms, from the delivery
    records the worker keeps (GetDelivery exposes the lag, not these two instants)."""
    out: dict[str, tuple[int, int]] = {}
    for i in range(0, len(post_ids), 1000):
        chunk = post_ids[i:i + 1000]
        records = await store.queue.deliveries([int(p) for p in chunk])
        for post_id, record in zip(chunk, records, strict=True):
            if (record and record.started_ms and record.done_ms
                    and record.mode == fanout_pb2.DELIVERY_MODE_PUSH):
                out[post_id] = (record.started_ms, record.done_ms)
    return out


def busy_seconds(intervals: list[tuple[int, int]]) -> float:
    """Length of the union of the intervals (each at least 1 ms: the clock's resolution)."""
    total = 0
    current_start = current_end = None
    for start, end in sorted((s, max(e, s + 1)) for s, e in intervals):
        if current_end is None or start > current_end:
            if current_end is not None and current_start is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None and current_start is not None:
        total += current_end - current_start
    return total / 1000


def analyse(strategy: Strategy, hybrid_threshold: int, graph: Graph,
            run: DriveResult, deliveries: list[fanout_pb2.GetDeliveryResponse],
            memory_before: int, memory_after: int, load: LoadReport,
            busy: dict[str, tuple[int, int]] | None = None) -> dict[str, object]:
    counts = graph.follower_counts()
    celebrities = set(graph.big_accounts(hybrid_threshold))
    author_of = {s.post_id: s.author for s in run.posts}
    delivered = [d for d in deliveries if d.state == fanout_pb2.DELIVERY_STATE_DELIVERED]
    writes = [d.inbox_writes for d in delivered]
    lags = [d.lag_ms for d in delivered]
    celeb_lags = [d.lag_ms for d in delivered if author_of[d.post_id] in celebrities]
    # What the design says each post should cost: PUSH = every (active) follower + own inbox.
    expected = []
    mode_ok = 0
    for d in delivered:
        author = author_of[d.post_id]
        pull = counts[author] >= strategy.threshold
        expected.append(0 if pull else counts[author] + 1)
        want = fanout_pb2.DELIVERY_MODE_PULL if pull else fanout_pb2.DELIVERY_MODE_PUSH
        mode_ok += int(d.delivery_mode == want)
    matches = sum(int(w == e) for w, e in zip(writes, expected, strict=True))

    celeb_readers = {u for u in graph.users if celebrities.intersection(graph.following[u])}
    read_celeb = [ms for ms, u in zip(run.read_ms, run.read_users, strict=True)
                  if u in celeb_readers]
    read_other = [ms for ms, u in zip(run.read_ms, run.read_users, strict=True)
                  if u not in celeb_readers]
    busy = busy or {}
    base, end = run.base, run.end
    assert base is not None and end is not None
    total_writes = end.inbox_writes - base.inbox_writes
    busy_s = run.run_s + run.drain_s

    def s(values: list[float] | list[int]) -> dict[str, float] | None:
        summary = summarize(values)
        return summary.as_dict() if summary else None

    return {
        "strategy": strategy.key,
        "label": strategy.label,
        "threshold": strategy.threshold,
        "load": asdict(load),
        "posts": {
            "sent": len(run.posts) + sum(run.post_errors.values()),
            "created": len(run.posts),
            "delivered": len(delivered),
            "push": sum(1 for d in delivered
                        if d.delivery_mode == fanout_pb2.DELIVERY_MODE_PUSH),
            "pull": sum(1 for d in delivered
                        if d.delivery_mode == fanout_pb2.DELIVERY_MODE_PULL),
            "by_celebrities": sum(1 for p in run.posts if p.author in celebrities),
            "errors": dict(run.post_errors),
        },
        "write_amplification": s(writes),
        "expected_writes_mean": sum(expected) / len(expected) if expected else None,
        "writes_match_expected": matches / len(writes) if writes else None,
        "mode_matches_threshold": mode_ok / len(delivered) if delivered else None,
        "inbox_writes_total": total_writes,
        "inbox_writes_per_s": rate(total_writes, busy_s),
        "inbox_writes_per_s_peak": peak_rate(run.samples),
        "inbox_writes_per_s_busy": rate(total_writes, busy_seconds(list(busy.values()))),
        "fanout_busy_s": busy_seconds(list(busy.values())),
        "queue_depth_max": max((d for _, _, d, _ in run.samples), default=0),
        "fanout_lag_ms": s(lags),
        "celebrity_post_lag_ms": s(celeb_lags),
        "timeline_ms": s(run.read_ms),
        "timeline_ms_celebrity_followers": s(read_celeb),
        "timeline_ms_others": s(read_other),
        "reads": {
            "ok": len(run.read_ms),
            "errors": dict(run.read_errors),
            "partial": run.read_partial,
            "entries_mean": run.read_entries / len(run.read_ms) if run.read_ms else 0.0,
            "pull_entry_share": (run.read_pull_entries / run.read_entries
                                 if run.read_entries else 0.0),
        },
        "schedule_late_ms": s(run.late_ms),
        "not_sent": run.not_sent,
        "run_s": run.run_s,
        "drain_s": run.drain_s,
        "drained": run.drained,
        "memory_bytes": {"after_load": memory_before, "after_run": memory_after,
                         "run_delta": memory_after - memory_before},
        "raw": {
            "timeline_ms": run.read_ms,
            "timeline_celebrity_follower": [u in celeb_readers for u in run.read_users],
            "writes_per_post": writes,
            "lag_ms": lags,
            "post_by_celebrity": [author_of[d.post_id] in celebrities for d in delivered],
            # first batch started -> last batch done, ms (pushed posts only; else null)
            "fanout_ms": [busy[d.post_id][1] - busy[d.post_id][0] if d.post_id in busy
                          else None for d in delivered],
            "stats_samples": run.samples,
        },
    }


async def _one_strategy(config: BenchConfig, strategy: Strategy, graph: Graph,
                        post_addr: str, fanout_addr: str, timeline_addr: str,
                        store: Store) -> dict[str, object]:
    label = strategy.label
    stubs = Stubs.connect(post_addr, fanout_addr, timeline_addr)
    try:
        method = choose_method(config.load, graph)
        if config.progress:
            print(f"[{label}] loading {graph.edges:,} follows via {method} ...", flush=True)
        if method == "grpc":
            load = await load_grpc(stubs, graph, config.seed_posts, config.seed)
        else:
            load = await load_store(store, graph, strategy.threshold, config.seed_posts,
                                    config.inbox_max, config.seed)
        memory_before = await used_memory(store)
        celebrities = graph.big_accounts(config.threshold)
        events = schedule(graph, config.duration_s, config.posts_per_s, config.reads_per_s,
                          celebrities, config.celebrity_post_share, config.seed)
        run = await drive(stubs, events, config.concurrency, config.page_size,
                          config.drain_timeout_s, config.progress, label)
        post_ids = [p.post_id for p in run.posts]
        deliveries = await _deliveries(stubs, post_ids)
        busy = await _busy_intervals(store, post_ids)
        memory_after = await used_memory(store)
        result = analyse(strategy, config.threshold, graph, run, deliveries,
                         memory_before, memory_after, load, busy)
        result["store"] = await server_version(store)
        return result
    finally:
        await stubs.close()


def machine_info() -> dict[str, object]:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gb = None
    try:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_gb, 1) if memory_gb else None,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def run_bench(config: BenchConfig, graph: Graph,
              on_strategy: Callable[[dict[str, object]], None] | None = None
              ) -> dict[str, object]:
    """Run every configured strategy; write `<out>/<name>.json` and the chart; return the
    report."""
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results: list[dict[str, object]] = []
    for strategy in expand_strategies(config):
        env = {"FANLINE_INBOX_MAX": str(config.inbox_max), **config.extra_env}
        with running_suite(strategy.threshold, config.workers, out / "logs" / strategy.key,
                           env) as suite:
            async def one(suite: Suite = suite, strategy: Strategy = strategy) -> dict[str, object]:
                store = await suite_store(suite)
                try:
                    return await _one_strategy(config, strategy, graph, suite.post_addr,
                                               suite.fanout_addr, suite.timeline_addr, store)
                finally:
                    await store.close()

            result = asyncio.run(one())
        results.append(result)
        if on_strategy:
            on_strategy(result)
    report: dict[str, object] = {
        "config": {k: v for k, v in asdict(config).items() if k != "progress"},
        "machine": machine_info(),
        "graph": graph.describe(),
        "celebrities": len(graph.big_accounts(config.threshold)),
        "started_unix": int(started),
        "seconds": time.time() - started,
        "strategies": results,
    }
    (out / f"{config.name}.json").write_text(json.dumps(report, indent=1))
    from fanline.bench.report import draw_charts

    charts = Path(config.charts_dir or config.out_dir)
    report["chart"] = str(draw_charts(report, charts / f"{config.name}.png"))
    return report
