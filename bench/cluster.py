"""`fanline bench cluster`: the fan-out and read benchmarks on one node and on a 3-master
Valkey Cluster, side by side, and how evenly the cluster's masters share keys and writes.

- Fan-out: `fanline bench engine` on each store (one worker process, one author with N active
  followers): the worker's inbox writes/s, median of the repeats.
- Reads: `fanline bench reads` on each store (GetTimeline, concurrency 1): p50 and p99.
- Memory: on an empty node, bytes per inbox entry (1,000 full inboxes) and per follow edge.
- Balance: on a fresh cluster, N active followers loaded, one post fanned out; per master, its
  share of the keys (DBSIZE) and of the inbox writes (ZADD calls, from INFO commandstats,
  which counts commands run by scripts too). Deviation = the largest |share - mean share| /
  mean share.

Every process (the store's nodes, the services, the worker and the load generator) shares
this machine's cores, so the cluster's three masters compete for the same two cores as one
node would: the ratios, not the absolute figures, are the point.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fanline.bench.clients import Stubs, wait_delivered
from fanline.bench.engine import AUTHOR, EngineResult, engine_graph, run_engine
from fanline.bench.load import load_store
from fanline.bench.reads import ReadsResult, ReadsScenario, run_reads
from fanline.bench.suite import PUSH_ONLY_THRESHOLD, node_infos, running_suite, store_cpu_s, suite_store
from fanline.common.embedded import EmbeddedStore
from fanline.common.store import Store
from fanline.common.store.bulk import BulkLoad
from fanline.gen.feed.v1 import post_pb2

MASTERS = 3
WRITES_RATIO_GOAL = 0.8  # cluster / single fan-out writes/s, at least
P99_RATIO_GOAL = 1.3  # cluster / single GetTimeline p99, at most
BALANCE_GOAL = 0.15  # every master within this of the mean share


@dataclass
class Balance:
    masters: list[str] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)
    writes: list[int] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # each master's CPU during the fan-out

    @property
    def cpu_us_per_write(self) -> float:
        """Store CPU per inbox write, all masters together (what sizing divides by)."""
        return sum(self.cpu_ms) * 1000 / max(1, sum(self.writes))

    @staticmethod
    def deviation(values: list[int]) -> float:
        mean = sum(values) / len(values) if values else 0.0
        return max(abs(v - mean) / mean for v in values) if mean else 0.0

    @property
    def keys_deviation(self) -> float:
        return self.deviation(self.keys)

    @property
    def writes_deviation(self) -> float:
        return self.deviation(self.writes)


@dataclass
class Memory:
    bytes_per_inbox_entry: float = 0.0  # in full (800-entry) inboxes
    bytes_per_follow_edge: float = 0.0  # its three copies, with the follower's activity stamp


async def _used_memory(store: Store) -> int:
    return sum(int(i["used_memory"]) for i in (await node_infos(store, "memory")).values())  # type: ignore[arg-type]


def measure_memory(inboxes: int = 1000, follows: int = 100, followers: int = 10_000) -> Memory:
    """Store memory per inbox entry and per follow edge, from a bulk load into an empty node."""

    async def go(url: str) -> Memory:
        store = await Store.open("single", url, 64, 8, 1000)
        try:
            base = await _used_memory(store)
            bulk = await BulkLoad.open(store.client, store.layout)
            ids = [bulk.post_id(400_000_000_000 + i, f"author{i % 64}") for i in range(800)]
            for n in range(inboxes):
                await bulk.inbox(f"reader{n:06d}", ids)
            await bulk.close()
            with_inboxes = await _used_memory(store)
            rnd = random.Random(1)
            authors = [f"author{i:05d}" for i in range(followers // 10)]
            following = {f"fan{i:06d}": rnd.sample(authors, follows) for i in range(followers)}
            bulk = await BulkLoad.open(store.client, store.layout)
            await bulk.follows(following)
            await bulk.activate(following, int(time.time()))
            await bulk.close()
            with_graph = await _used_memory(store)
            return Memory((with_inboxes - base) / (inboxes * len(ids)),
                          (with_graph - with_inboxes) / (followers * follows))
        finally:
            await store.close()

    with EmbeddedStore() as server:
        return asyncio.run(go(server.url))


@dataclass
class Comparison:
    followers: int
    engine: dict[str, EngineResult]
    reads: dict[str, ReadsResult]
    balance: Balance
    memory: Memory = field(default_factory=Memory)
    seconds: float = 0.0

    @property
    def writes_ratio(self) -> float:
        return self.engine["cluster"].worker_rate / self.engine["single"].worker_rate

    @property
    def p99_ratio(self) -> float:
        return self.reads["cluster"].summary["p99"] / self.reads["single"].summary["p99"]

    @property
    def p50_ratio(self) -> float:
        return self.reads["cluster"].summary["p50"] / self.reads["single"].summary["p50"]

    def as_dict(self) -> dict[str, object]:
        return {
            "followers": self.followers, "seconds": self.seconds,
            "engine": {k: v.as_dict() for k, v in self.engine.items()},
            "reads": {k: v.as_dict() for k, v in self.reads.items()},
            "balance": {**asdict(self.balance), "keys_deviation": self.balance.keys_deviation,
                        "writes_deviation": self.balance.writes_deviation,
                        "cpu_us_per_write": self.balance.cpu_us_per_write},
            "memory": asdict(self.memory),
            "writes_ratio": self.writes_ratio, "p99_ratio": self.p99_ratio,
            "p50_ratio": self.p50_ratio,
        }


async def _commandstat_zadd(store_infos: dict[str, dict[str, object]]) -> dict[str, int]:
    out = {}
    for node, info in store_infos.items():
        stat = info.get("cmdstat_zadd")
        out[node] = int(stat["calls"]) if isinstance(stat, dict) else 0
    return out


def measure_balance(followers: int, out_dir: Path) -> Balance:
    """Keys and inbox writes per master of a cluster, for one post to `followers`."""
    with running_suite(PUSH_ONLY_THRESHOLD, 1, out_dir / "logs" / "balance", cluster=MASTERS) as suite:

        async def go() -> Balance:
            store = await suite_store(suite)
            stubs = Stubs.connect(suite.post_addr, suite.fanout_addr, suite.timeline_addr)
            try:
                await load_store(store, engine_graph(followers), PUSH_ONLY_THRESHOLD, 0, 800)
                before = await _commandstat_zadd(await node_infos(store, "commandstats"))
                cpu_before = await store_cpu_s(store)
                reply = await stubs.post_stub(0).CreatePost(
                    post_pb2.CreatePostRequest(author_id=AUTHOR, text="balance"), timeout=30)
                await wait_delivered(stubs, reply.post.post_id, timeout_s=600)
                cpu_after = await store_cpu_s(store)
                after = await _commandstat_zadd(await node_infos(store, "commandstats"))
                keys = {n: int(i["db0"]["keys"]) if isinstance(i.get("db0"), dict) else 0  # type: ignore[index]
                        for n, i in (await node_infos(store, "keyspace")).items()}
                masters = sorted(after)
                return Balance(masters, [keys.get(m, 0) for m in masters],
                               [after[m] - before.get(m, 0) for m in masters],
                               [(cpu_after[m] - cpu_before.get(m, 0.0)) * 1000 for m in masters])
            finally:
                await stubs.close()
                await store.close()

        return asyncio.run(go())


def run_cluster_comparison(followers: int = 100_000, repeats: int = 3, reads: int = 1000,
                           out_dir: str | Path = "bench/out", progress: bool = True,
                           zadd_requests: int = 1_000_000) -> Comparison:
    """`zadd_requests`: size of the engine's pipelined-ZADD baseline runs."""
    out = Path(out_dir)
    started = time.monotonic()
    engines: dict[str, EngineResult] = {}
    reads_results: dict[str, ReadsResult] = {}
    scenario = ReadsScenario(reads=reads)
    for mode, masters in (("single", 0), ("cluster", MASTERS)):
        if progress:
            print(f"== {mode}: fan-out engine, {followers:,} followers", flush=True)
        engines[mode] = run_engine(followers=followers, repeats=repeats, out_dir=out,
                                   progress=progress, cluster=masters, name=f"engine-{mode}",
                                   requests=zadd_requests)
        if progress:
            print(f"== {mode}: GetTimeline reads", flush=True)
        reads_results[mode] = run_reads(scenario, out_dir=out, name=f"reads-{mode}",
                                        cluster=masters)
    # (The engine and reads runs above each start and stop their own suite and store.)
    if progress:
        print("== cluster balance", flush=True)
    balance = measure_balance(followers, out)
    memory = measure_memory()
    result = Comparison(followers, engines, reads_results, balance, memory,
                        time.monotonic() - started)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cluster.json").write_text(json.dumps(result.as_dict(), indent=1))
    return result


def _verdict(ok: bool) -> str:
    return "meets the goal" if ok else "MISSES the goal"


def format_comparison(c: Comparison) -> str:
    single, cluster = c.engine["single"], c.engine["cluster"]
    rs, rc = c.reads["single"].summary, c.reads["cluster"].summary
    b = c.balance
    lines = [
        f"one node vs a {MASTERS}-master cluster (same machine, same code)",
        "                                              one node      cluster    ratio",
        f"  fan-out, inbox writes/s (one worker)    {single.worker_rate:12,.0f} "
        f"{cluster.worker_rate:12,.0f}   {c.writes_ratio:6.2f}  "
        f"(>= {WRITES_RATIO_GOAL}: {_verdict(c.writes_ratio >= WRITES_RATIO_GOAL)})",
        f"  push script alone, writes/s             {_median(single.script_rates):12,.0f} "
        f"{_median(cluster.script_rates):12,.0f}   "
        f"{_median(cluster.script_rates) / max(1.0, _median(single.script_rates)):6.2f}",
        f"  GetTimeline p50 (ms)                    {rs['p50']:12.2f} {rc['p50']:12.2f}   "
        f"{c.p50_ratio:6.2f}",
        f"  GetTimeline p99 (ms)                    {rs['p99']:12.2f} {rc['p99']:12.2f}   "
        f"{c.p99_ratio:6.2f}  (<= {P99_RATIO_GOAL}: {_verdict(c.p99_ratio <= P99_RATIO_GOAL)})",
        f"  balance over {len(b.masters)} masters, {c.followers:,} followers, one post:",
        f"    keys per master          {', '.join(f'{k:,}' for k in b.keys)}   "
        f"max deviation {b.keys_deviation:.1%} "
        f"({_verdict(b.keys_deviation <= BALANCE_GOAL)} of ±{BALANCE_GOAL:.0%})",
        f"    inbox writes per master  {', '.join(f'{w:,}' for w in b.writes)}   "
        f"max deviation {b.writes_deviation:.1%} "
        f"({_verdict(b.writes_deviation <= BALANCE_GOAL)} of ±{BALANCE_GOAL:.0%})",
        f"    store CPU per master     {', '.join(f'{m:,.0f} ms' for m in b.cpu_ms)}   "
        f"{b.cpu_us_per_write:.1f} µs per inbox write",
        f"  store CPU per GetTimeline (µs, all masters) "
        f"{c.reads['single'].store_cpu_us_per_read:8.0f} "
        f"{c.reads['cluster'].store_cpu_us_per_read:12.0f}",
        f"  store memory: {c.memory.bytes_per_inbox_entry:.0f} B per inbox entry (full inboxes), "
        f"{c.memory.bytes_per_follow_edge:.0f} B per follow edge (its three copies)",
        f"  engine repeats {single.repeats} (medians); reads {c.reads['single'].scenario.reads} "
        f"per store; {c.seconds:.0f} s in all",
    ]
    return "\n".join(lines)


def _median(values: list[float]) -> float:
    from fanline.bench.stats import median

    return median(values) if values else 0.0
