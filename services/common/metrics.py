"""Delivery and read metrics as OpenTelemetry instruments.

Call sites use the functions below; `telemetry.setup()` (or a test) installs the provider
whose readers export them (OTLP, Prometheus). Until then the instruments are the global
proxies: no-ops unless a global provider appears, and cheap either way.

Queue depth, pending and reclaimed are queue-wide values read from the store by each worker
(`queue_observed`), so every worker reports the same numbers: aggregate them with max, not sum.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation

METER_NAME = "fanline"

MODE = "fanline.delivery.mode"  # push | pull
JOB_KIND = "fanline.job.kind"  # post | backfill
TIMELINE_PATH = "fanline.timeline.path"  # inbox_only | merged | archive
PARTIAL = "fanline.timeline.partial"
TIMELINE_SOURCE = "fanline.timeline.source"  # inbox | pull | archive | hydrate
CACHE_RESULT = "fanline.cache.result"  # hit | miss
PARTITION = "fanline.queue.partition"  # 0 .. FANLINE_QUEUE_PARTITIONS - 1

_LATENCY_MS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2500)
_LAG_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000)
_WRITES = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000,
           100_000, 200_000, 500_000, 1_000_000)


class _Instruments:
    def __init__(self, meter: Meter) -> None:
        self.posts_published = meter.create_counter(
            "fanline.posts.published", "{post}", "posts whose delivery mode was decided, by mode")
        self.inbox_writes = meter.create_counter(
            "fanline.inbox.writes", "{write}", "inbox entries written by fan-out and backfill")
        self.write_amplification = meter.create_histogram(
            "fanline.post.write_amplification", "{write}",
            "inbox writes per delivered post (followers reached + the author's own inbox)",
            explicit_bucket_boundaries_advisory=_WRITES)
        self.fanout_lag = meter.create_histogram(
            "fanline.fanout.lag", "ms", "post creation to its last inbox write",
            explicit_bucket_boundaries_advisory=_LAG_MS)
        self.timeline_duration = meter.create_histogram(
            "fanline.timeline.duration", "ms",
            "GetTimeline read time by path (inbox only, merged with pulled lists, archive)",
            explicit_bucket_boundaries_advisory=_LATENCY_MS)
        self.budget_overruns = meter.create_counter(
            "fanline.timeline.budget_overruns", "{source}",
            "timeline sources that missed the read budget and were left out, by source "
            "(inbox, pull, archive, hydrate)")
        self.pulled_cache = meter.create_counter(
            "fanline.timeline.pulled_cache", "{lookup}", "pulled-list cache lookups by result")
        self.body_cache = meter.create_counter(
            "fanline.timeline.body_cache", "{lookup}", "post-body cache lookups by result")
        self.watch_streams = meter.create_up_down_counter(
            "fanline.watch.streams", "{stream}", "open WatchTimeline streams")
        self.watch_delay = meter.create_histogram(
            "fanline.watch.delay", "ms", "post creation to its entry sent on a WatchTimeline stream",
            explicit_bucket_boundaries_advisory=_LAG_MS)
        # RED metrics of every RPC (OpenTelemetry's RPC semantic conventions): the count of a
        # histogram's observations is the request rate, its status code attribute the errors.
        self.rpc_server = meter.create_histogram(
            "rpc.server.duration", "ms", "time to answer each RPC, by service, method and code",
            explicit_bucket_boundaries_advisory=_LATENCY_MS)
        self.rpc_client = meter.create_histogram(
            "rpc.client.duration", "ms", "time each RPC to another service took, by code",
            explicit_bucket_boundaries_advisory=_LATENCY_MS)
        self.queue: tuple[int, int, int] | None = None  # last (depth, pending, reclaimed) seen
        self.partitions: tuple[tuple[int, int], ...] = ()  # last (depth, pending) per partition
        meter.create_observable_gauge(
            "fanline.queue.depth", [self._observe(0)], "{entry}", "fan-out stream length")
        meter.create_observable_gauge(
            "fanline.queue.pending", [self._observe(1)], "{entry}",
            "entries read by a worker and not yet acknowledged")
        meter.create_observable_counter(
            "fanline.queue.reclaimed", [self._observe(2)], "{entry}",
            "entries taken over from stopped workers (store-wide total)")
        # Per partition: a partition whose depth grows while the others drain points at a hot
        # bucket or a stuck consumer. Entries are deleted once acknowledged, so depth - pending
        # is the lag: entries no worker has read yet.
        meter.create_observable_gauge(
            "fanline.queue.partition.depth", [self._observe_partitions(0)], "{entry}",
            "fan-out stream length of one partition")
        meter.create_observable_gauge(
            "fanline.queue.partition.pending", [self._observe_partitions(1)], "{entry}",
            "entries of one partition read by a worker and not yet acknowledged")

    def _observe_partitions(self, index: int) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(values[index], {PARTITION: partition})
                    for partition, values in enumerate(self.partitions)]

        return callback

    def _observe(self, index: int) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            # Sync callback: report the value the worker loop last read, never touch the store.
            return [Observation(self.queue[index])] if self.queue is not None else []

        return callback


_current: _Instruments | None = None
_installed = False


def install(meter_provider: Any = None) -> None:
    """Record into this provider's meter (None: back to the global proxies)."""
    global _current, _installed
    if meter_provider is None:
        _current, _installed = None, False
    else:
        _current, _installed = _Instruments(meter_provider.get_meter(METER_NAME)), True


def enabled() -> bool:
    """True once a provider is installed: only then is reading queue stats worth a round trip."""
    return _installed


def _get() -> _Instruments:
    global _current
    if _current is None:
        _current = _Instruments(otel_metrics.get_meter(METER_NAME))
    return _current


def post_published(mode: str) -> None:
    _get().posts_published.add(1, {MODE: mode})


def inbox_writes(count: int, kind: str) -> None:
    if count:
        _get().inbox_writes.add(count, {JOB_KIND: kind})


def post_delivered(mode: str, writes: int, lag_ms: int) -> None:
    instruments = _get()
    instruments.write_amplification.record(writes, {MODE: mode})
    instruments.fanout_lag.record(lag_ms, {MODE: mode})


def queue_observed(depth: int, pending: int, reclaimed: int,
                   by_partition: tuple[tuple[int, int], ...] = ()) -> None:
    instruments = _get()
    instruments.queue = (depth, pending, reclaimed)
    instruments.partitions = by_partition


def timeline_read(duration_ms: float, path: str, partial: bool) -> None:
    _get().timeline_duration.record(duration_ms, {TIMELINE_PATH: path, PARTIAL: partial})


def budget_overrun(source: str, count: int = 1) -> None:
    """`count` sources of kind `source` missed a read's budget (the read is partial)."""
    if count:
        _get().budget_overruns.add(count, {TIMELINE_SOURCE: source})


def pulled_cache(hit: bool) -> None:
    _get().pulled_cache.add(1, {CACHE_RESULT: "hit" if hit else "miss"})


def body_cache(hits: int, misses: int) -> None:
    instruments = _get()
    if hits:
        instruments.body_cache.add(hits, {CACHE_RESULT: "hit"})
    if misses:
        instruments.body_cache.add(misses, {CACHE_RESULT: "miss"})


def watch_streams(delta: int) -> None:
    _get().watch_streams.add(delta)


def watch_sent(delay_ms: float) -> None:
    _get().watch_delay.record(delay_ms)


def rpc_finished(side: str, attributes: Mapping[str, Any], code: int, duration_ms: float) -> None:
    """One RPC answered (`side` "server") or made ("client"); `code`: its gRPC status code."""
    instruments = _get()
    histogram = instruments.rpc_server if side == "server" else instruments.rpc_client
    histogram.record(duration_ms, {**attributes, "rpc.grpc.status_code": code})
