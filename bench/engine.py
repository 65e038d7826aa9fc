"""`fanline bench engine`: how fast one worker writes inboxes, next to what the store can take.

One author with N active followers posts; one worker process fans the post out batch by
batch exactly as in production (stream entry, script call, acknowledgement, continuation).
Its rate is the post's inbox writes over the time between the first batch starting and the
last one finishing (the worker's own timestamps in the delivery record). In the same run, on
the same server, redis-benchmark measures pipelined ZADD throughput: once on one key (its
standard `-t zadd` test) and once on as many keys as there are followers (closer to inbox
writes). The ratio says how much of the store's raw write rate the fan-out engine turns into
inbox writes. Without redis-benchmark a Python pipelined ZADD loop stands in; it is bound by
the Python client, so it understates the store and the output says so.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from fanline.bench.clients import Stubs, wait_delivered
from fanline.bench.graph import Graph
from fanline.bench.load import load_store
from fanline.bench.stats import median
from fanline.bench.suite import PUSH_ONLY_THRESHOLD, running_suite, server_version, suite_store
from fanline.common.config import load_settings
from fanline.common.store import Store
from fanline.gen.feed.v1 import post_pb2

AUTHOR = "engine-author"
_RPS = re.compile(r"([\d.]+)\s+requests per second")


@dataclass
class EngineResult:
    followers: int
    batch_size: int
    repeats: int
    store: str
    baseline_tool: str  # "redis-benchmark" or "python-pipeline"
    baseline_note: str
    worker_concurrency: int = 0  # consume loops in the one worker process
    worker_rates: list[float] = field(default_factory=list)  # inbox writes/s per repeat
    end_to_end_rates: list[float] = field(default_factory=list)  # writes / (creation -> done)
    script_rates: list[float] = field(default_factory=list)  # InboxWriter.push loop, no queue
    zadd_one_key: list[float] = field(default_factory=list)
    zadd_many_keys: list[float] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    @property
    def worker_rate(self) -> float:
        return median(self.worker_rates)

    @property
    def zadd_rate(self) -> float:
        """The baseline the ratio uses: ZADD spread over many keys, like inbox writes."""
        return median(self.zadd_many_keys)

    @property
    def ratio(self) -> float:
        return self.worker_rate / self.zadd_rate if self.zadd_rate else 0.0

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out.update(
            worker_rate_median=self.worker_rate,
            end_to_end_rate_median=median(self.end_to_end_rates),
            script_rate_median=median(self.script_rates) if self.script_rates else None,
            zadd_one_key_median=median(self.zadd_one_key),
            zadd_many_keys_median=self.zadd_rate,
            ratio=self.ratio,
        )
        return out


def engine_graph(followers: int) -> Graph:
    fans = [f"f{i:07d}" for i in range(followers)]
    following: dict[str, list[str]] = {AUTHOR: []}
    following.update((f, [AUTHOR]) for f in fans)
    return Graph(f"one author, {followers} followers", [AUTHOR], [], fans, following)


def redis_benchmark_commands(port: int, keyspace: int, requests: int,
                             pipeline: int, cluster: bool = False,
                             password: str = "") -> list[list[str]]:
    base = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-P", str(pipeline),
            "-n", str(requests), "-q", *(["--cluster"] if cluster else []),
            *(["-a", password] if password else [])]
    # In cluster mode a command's key must carry {tag}, which redis-benchmark fills in with
    # a tag of each master's slots.
    key = "bench:{tag}:inbox:__rand_int__" if cluster else "bench:inbox:__rand_int__"
    return [
        [*base, "-t", "zadd"],
        # One sorted set per random key, like fan-out writing into many inboxes.
        [*base, "-r", str(keyspace), "ZADD", key, "__rand_int__", "post:__rand_int__"],
    ]


def parse_rps(output: str) -> float:
    match = _RPS.findall(output)
    if not match:
        raise ValueError(f"no 'requests per second' in redis-benchmark output: {output!r}")
    return float(match[-1])


def run_redis_benchmark(command: list[str]) -> float:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    # -q prints progress with carriage returns, then the final line.
    return parse_rps(done.stdout.replace("\r", "\n"))


async def python_zadd_rate(store: Store, keyspace: int, requests: int, pipeline: int,
                           many_keys: bool) -> float:
    """Pipelined ZADD from this (Python) process: a lower bound of the store's rate."""
    started = time.perf_counter()
    sent = 0
    while sent < requests:
        await store.client.batch([
            ("ZADD", f"bench:inbox:{i % keyspace}" if many_keys else "bench:myzset", i, f"post:{i}")
            for i in range(sent, min(requests, sent + pipeline))])
        sent += pipeline
    return requests / (time.perf_counter() - started)


async def script_rate(store: Store, followers: list[str], batch_size: int,
                      post_id: int, inbox_max: int) -> float:
    """The push script alone, called back to back from here (no stream, no acks): one call
    per batch of one bucket's followers, as the worker makes them."""
    batches = [{bucket: members[i:i + batch_size]}
               for bucket, members in store.inboxes.group(followers).items()
               for i in range(0, len(members), batch_size)]
    written = 0
    started = time.perf_counter()
    for batch in batches:
        w, _ = await store.inboxes.push(post_id, AUTHOR, batch, inbox_max, 0)
        written += w
    return written / (time.perf_counter() - started)


async def _measure(result: EngineResult, post_addr: str, fanout_addr: str, timeline_addr: str,
                   store: Store, port: int, graph: Graph, inbox_max: int,
                   requests: int, pipeline: int, progress: bool, password: str = "") -> None:
    stubs = Stubs.connect(post_addr, fanout_addr, timeline_addr)
    use_tool = result.baseline_tool == "redis-benchmark"
    commands = redis_benchmark_commands(port, result.followers, requests, pipeline,
                                        store.client.cluster, password)
    result.commands = [" ".join("***" if password and a == password else a for a in c)
                       for c in commands] if use_tool else [
        f"python pipelined ZADD x{requests:,}, {pipeline} per round trip"]
    try:
        for repeat in range(result.repeats):
            reply = await stubs.post_stub(0).CreatePost(
                post_pb2.CreatePostRequest(author_id=AUTHOR, text=f"engine run {repeat}"),
                timeout=30)
            delivery = await wait_delivered(stubs, reply.post.post_id, timeout_s=600)
            record = await store.queue.delivery(int(reply.post.post_id))
            assert record is not None
            writes = record.writes
            busy_ms = max(1, record.done_ms - record.started_ms)
            result.worker_rates.append(writes / busy_ms * 1000)
            result.end_to_end_rates.append(writes / max(1, delivery.lag_ms) * 1000)
            # The script alone, with a post id no real post uses (the store is thrown away).
            result.script_rates.append(await script_rate(
                store, graph.audience, result.batch_size,
                store.layout.compose_post_id(2**40 + repeat, 0, 0), inbox_max))
            if use_tool:
                one = await asyncio.to_thread(run_redis_benchmark, commands[0])
                many = await asyncio.to_thread(run_redis_benchmark, commands[1])
            else:
                one = await python_zadd_rate(store, result.followers, requests, pipeline, False)
                many = await python_zadd_rate(store, result.followers, requests, pipeline, True)
            result.zadd_one_key.append(one)
            result.zadd_many_keys.append(many)
            if progress:
                print(f"  repeat {repeat + 1}/{result.repeats}: worker "
                      f"{result.worker_rates[-1]:,.0f} writes/s, script "
                      f"{result.script_rates[-1]:,.0f}/s, ZADD one key {one:,.0f}/s, "
                      f"many keys {many:,.0f}/s", flush=True)
    finally:
        await stubs.close()


def run_engine(followers: int = 100_000, repeats: int = 5, batch_size: int = 1000,
               requests: int = 1_000_000, pipeline: int = 32, out_dir: str | Path = "bench/out",
               progress: bool = True, force_python_baseline: bool = False,
               worker_concurrency: int | None = None, cluster: int = 0,
               name: str = "engine") -> EngineResult:
    """`cluster`: on an embedded cluster of that many masters (0: one node)."""
    out = Path(out_dir)
    tool = shutil.which("redis-benchmark")
    use_tool = bool(tool) and not force_python_baseline
    note = ("redis-benchmark (C client, pipelined)" if use_tool else
            "redis-benchmark not installed: Python pipelined ZADD instead; it is bound by the "
            "Python client, so it understates the store and overstates the ratio")
    inbox_max = 800
    env = {"FANLINE_FANOUT_BATCH_SIZE": str(batch_size), "FANLINE_INBOX_MAX": str(inbox_max)}
    if worker_concurrency is not None:
        env["FANLINE_WORKER_CONCURRENCY"] = str(worker_concurrency)
    concurrency = getattr(load_settings({**os.environ, **env}), "worker_concurrency", 1)
    with running_suite(PUSH_ONLY_THRESHOLD, 1, out / "logs" / name, env, cluster) as suite:
        seed = urlparse(suite.redis_url.split(",")[0])
        port, password = seed.port or 6379, unquote(seed.password or "")

        async def go() -> EngineResult:
            store = await suite_store(suite)
            try:
                graph = engine_graph(followers)
                if progress:
                    print(f"loading {followers:,} active followers through the store ...",
                          flush=True)
                await load_store(store, graph, PUSH_ONLY_THRESHOLD, 0, inbox_max)
                result = EngineResult(
                    followers, batch_size, repeats, await server_version(store),
                    "redis-benchmark" if use_tool else "python-pipeline", note, concurrency)
                # Python-bound baseline: fewer requests keep it to seconds.
                reqs = requests if use_tool else min(requests, 200_000)
                await _measure(result, suite.post_addr, suite.fanout_addr, suite.timeline_addr,
                               store, port, graph, inbox_max, reqs, pipeline, progress,
                               password)
                return result
            finally:
                await store.close()

        result = asyncio.run(go())
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result.as_dict(), indent=2))
    return result


def format_engine(result: EngineResult) -> str:
    d = result.as_dict()
    script = d["script_rate_median"]
    lines = [
        f"fan-out engine, {result.followers:,} active followers, batch {result.batch_size}, "
        f"one worker process with {result.worker_concurrency} consume loop(s), "
        f"{result.repeats} repeats (medians), store {result.store}",
        f"  one worker, inbox writes/s (first batch -> last batch)  {result.worker_rate:12,.0f}",
        f"  one worker, inbox writes/s (post creation -> last write) "
        f"{d['end_to_end_rate_median']:11,.0f}",
        f"  push script alone, called back to back from one client  {script:12,.0f}"
        if script is not None else "",
        f"  pipelined ZADD, one key                                 "
        f"{d['zadd_one_key_median']:12,.0f}",
        f"  pipelined ZADD, {result.followers:,} keys{' ' * (33 - len(f'{result.followers:,}'))}"
        f"{result.zadd_rate:12,.0f}",
        f"  ratio worker / ZADD (many keys)                          {result.ratio:12.3f}",
        f"  baseline: {result.baseline_note}",
    ]
    lines += [f"  $ {c}" for c in result.commands]
    return "\n".join(line for line in lines if line)
