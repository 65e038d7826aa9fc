"""The connection to the store: one node, or a Valkey/Redis Cluster, behind one interface.

This is the only module that knows which of the two it talks to. Everything above it issues
single-slot calls (layout.py sees to that) and batches of them; here a batch becomes one
pipeline, which a cluster client splits by node and sends to all nodes in parallel.

What it adds to the redis-py clients:
- scripts loaded on every primary, and reloaded on NOSCRIPT (a promoted replica starts empty);
- retries of transient failures (a failover window, a moved slot, a dropped connection) for
  up to RETRY_BUDGET_S: every call the storage layer makes is idempotent, so a retry is safe;
- durable writes: with FANLINE_STORE_WAIT_REPLICAS > 0, a write is confirmed only once that
  many replicas have it (WAIT on the connection that wrote), so a failover cannot lose it;
- sharded pub/sub that follows the cluster's topology.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import hiredis
import redis.exceptions as rx
from redis.asyncio import BlockingConnectionPool, Connection, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster

from fanline.common.store.scripts import ALL as ALL_SCRIPTS
from fanline.common.store.scripts import Script

log = logging.getLogger(__name__)

POOL_WAIT_S = 5.0
RETRY_BUDGET_S = 2.0  # transient failures are retried this long before the caller sees them
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 0.4
REPLICAS_REFRESH_S = 5.0
TOPOLOGY_REFRESH_S = 0.1

# Failures that end by themselves: the store restarting, a failover, a slot moving, a full
# connection pool. Callers see them as UNAVAILABLE once the retry budget is spent.
TRANSIENT: tuple[type[BaseException], ...] = (
    rx.ConnectionError,  # includes BusyLoadingError and MaxConnectionsError
    rx.TimeoutError,
    rx.ClusterError,  # includes ClusterDownError, MasterDownError, "TTL exhausted"
    rx.TryAgainError,
    rx.AskError,  # includes MovedError
    rx.ReadOnlyError,  # a write reached a node that was demoted to replica
    rx.SlotNotCoveredError,
    TimeoutError,
    OSError,
)


def redacted(urls: str) -> str:
    """Store URLs fit to print: any password replaced by ***."""
    return re.sub(r"(rediss?://[^:/@,]*:)[^@,]*@", r"\1***@", urls)


class ReplicationTimeout(rx.ConnectionError):
    """A durable write did not reach the configured number of replicas in time."""


def is_outage(exc: BaseException) -> bool:
    """True for failures that mean "the store is unavailable right now, retry"."""
    if isinstance(exc, TRANSIENT):
        return not isinstance(exc, rx.AuthenticationError)
    return _torn_connection(exc)


def _torn_connection(exc: BaseException) -> bool:
    """A connection closed by another task while this one used it (the cluster client closes
    all its connections after a failover): redis-py then fails inside its connection code
    with an AttributeError on the writer or reader it just lost. That is a dropped
    connection, not a bug of ours."""
    if not isinstance(exc, AttributeError) or exc.__traceback__ is None:
        return False
    frame = exc.__traceback__
    while frame.tb_next is not None:
        frame = frame.tb_next
    return frame.tb_frame.f_code.co_filename.endswith(("redis/asyncio/connection.py",
                                                      "redis/_parsers/base.py"))


class HiredisPackedConnection(Connection):
    """Packs commands with hiredis's C encoder.

    redis.asyncio packs every argument in Python (about 1.3 µs each); a fan-out batch sends
    thousands of keys per script call, so packing alone cost more than the store spent
    running it.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:
            # redis-py passes multi-word commands ("CLIENT SETNAME") as one argument.
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # memoryview or another type hiredis does not take: as redis-py would
            return [hiredis.pack_command(tuple(_encodable(a) for a in args))]


def _encodable(value: Any) -> Any:
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, str | bytes | int | float):
        return value
    return str(value)


@dataclass(frozen=True)
class Call:
    """One script call; its keys are in one slot."""

    script: Script
    keys: Sequence[str]
    args: Sequence[str | int | float | bytes]


def parse_seeds(url: str) -> list[tuple[str, int]]:
    seeds = []
    for part in url.split(","):
        parsed = urlparse(part.strip())
        seeds.append((parsed.hostname or "127.0.0.1", parsed.port or 6379))
    return seeds


class StoreClient:
    """A pooled asyncio client of a single node or a cluster; see the module docstring."""

    def __init__(self, redis: Redis | RedisCluster, wait_replicas: int = 0,
                 wait_ms: int = 500, max_connections: int = 64) -> None:
        self.redis = redis
        self.cluster = isinstance(redis, RedisCluster)
        # The cluster client's per-node pools fail a call (MaxConnectionsError) instead of
        # waiting when every connection is busy; the single-node pool waits (below). Bounding
        # the calls in flight to one pool's size makes a burst queue here on a cluster too.
        self._in_flight: asyncio.Semaphore | contextlib.nullcontext[None] = (
            asyncio.Semaphore(max_connections) if self.cluster else contextlib.nullcontext())
        self._wait_replicas = wait_replicas
        self._wait_ms = wait_ms
        self._replicas = 0
        self._replicas_read_at = -REPLICAS_REFRESH_S
        self._topology_read_at = -TOPOLOGY_REFRESH_S
        self._down = False  # the last call spent the whole retry budget

    @classmethod
    def connect(cls, mode: str, url: str, max_connections: int = 64, wait_replicas: int = 0,
                wait_ms: int = 500, timeout_ms: int = 2000) -> StoreClient:
        """`mode` "single": `url` is one redis:// URL. "cluster": a comma-separated list of seed
        node URLs (credentials and TLS taken from the first).

        The single-node pool blocks (up to POOL_WAIT_S) when every connection is busy instead
        of failing the call, so a burst of requests queues for a connection rather than
        erroring. `decode_responses` stays off: post bodies are protobuf bytes.

        A reply that takes longer than `timeout_ms` (plus `wait_ms` when writes wait on
        replicas, as WAIT blocks that long) drops the connection and counts as an outage: a
        store that is paused or cut off without closing its sockets would otherwise hold every
        call forever. Subscriptions block without it (redis-py reads them with no timeout)."""
        reply_s = (timeout_ms + (wait_ms if wait_replicas else 0)) / 1000
        timeouts = {"socket_timeout": reply_s, "socket_connect_timeout": timeout_ms / 1000}
        if not url:
            raise ValueError("FANLINE_REDIS_URL is empty: start `fanline up` or set a store URL")
        if mode == "cluster":
            first = url.split(",")[0].strip()
            seeds = parse_seeds(url)
            client = RedisCluster.from_url(
                first, max_connections=max_connections, **timeouts,
                startup_nodes=[ClusterNode(host, port) for host, port in seeds],
                require_full_coverage=True,
                # On MOVED, learn the slot's new owner from the reply. By default every fifth
                # MOVED closes every connection of the client to reload the map, which cuts off
                # calls in flight on other tasks (a blocked stream read among them).
                reinitialize_steps=0,
            )
            if not first.startswith("rediss://"):
                # redis-py builds every node's connections from these kwargs; there is no
                # constructor argument for the connection class.
                client.connection_kwargs["connection_class"] = HiredisPackedConnection
                for node in client.startup_nodes:
                    node.connection_class = HiredisPackedConnection
            return cls(client, wait_replicas, wait_ms, max_connections)
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=POOL_WAIT_S, health_check_interval=30,
            connection_class=HiredisPackedConnection, **timeouts,
        )
        return cls(Redis.from_pool(pool), wait_replicas, wait_ms)

    async def close(self) -> None:
        await self.redis.aclose()

    # -- calls -------------------------------------------------------------------------------

    async def _retrying(self, attempt: Callable[[], Any]) -> Any:
        """Run `attempt` until it succeeds, a non-transient error, or the retry budget.

        Once a call has spent the whole budget, the store is taken for down: later calls try
        once and fail at once (callers get UNAVAILABLE without waiting), until one succeeds."""
        deadline = time.monotonic() + (0.0 if self._down else RETRY_BUDGET_S)
        pause = RETRY_FIRST_S
        reloaded = False
        while True:
            try:
                async with self._in_flight:
                    result = await attempt()
                self._down = False
                return result
            except rx.NoScriptError:
                # A node without our scripts (a promoted replica, a flushed cache): load them
                # everywhere once, then retry.
                if reloaded:
                    raise
                reloaded = True
                await self.load_scripts()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                if time.monotonic() + pause > deadline:
                    self._down = True
                    raise
                log.debug("store call failed (%s); retrying in %.2fs", exc, pause)
                await self._refresh_topology()
                await asyncio.sleep(pause * (0.5 + random.random()))
                pause = min(pause * 2, RETRY_MAX_S)

    async def _refresh_topology(self) -> None:
        """Re-read the cluster's slot map (at most every TOPOLOGY_REFRESH_S: when a node
        fails, every call in flight lands here at once)."""
        if not isinstance(self.redis, RedisCluster):
            return
        now = time.monotonic()
        if now - self._topology_read_at < TOPOLOGY_REFRESH_S:
            return
        self._topology_read_at = now
        try:
            await self.redis.nodes_manager.initialize()
        except Exception as exc:  # every seed down: the next attempt fails and retries
            log.debug("cluster topology refresh failed: %s", exc)

    async def call(self, method: Callable[[Redis | RedisCluster], Awaitable[Any]]) -> Any:
        """A redis-py client method (for replies it parses by its arguments), with retries."""
        return await self._retrying(lambda: method(self.redis))

    async def command(self, *args: Any) -> Any:
        """One command; its keys (if several) in one slot."""
        return await self._retrying(lambda: self.redis.execute_command(*args))

    async def run(self, call: Call, durable: bool = False) -> Any:
        """One script call. `durable`: confirmed by the configured replicas before returning."""
        return (await self.run_many([call], durable))[0]

    async def run_many(self, calls: Sequence[Call], durable: bool = False) -> list[Any]:
        """Script calls pipelined (per node, in parallel on a cluster); results in order."""
        if not calls:
            return []
        wait = durable and self._wait_replicas > 0
        if len(calls) == 1 and not wait:
            # A lone call as a plain command: the client follows redirections itself.
            call = calls[0]
            return [await self._retrying(lambda: self.redis.execute_command(
                "EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args,
                **self._route(call)))]

        async def attempt() -> list[Any]:
            pipe = self.redis.pipeline(transaction=False)
            for call in calls:
                pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys,
                                     *call.args, **self._route(call))
            wanted = await self._add_waits(pipe, [c.keys[0] for c in calls]) if wait else []
            if isinstance(pipe, ClusterPipeline):
                # No redirections inside a durable pipeline: a redirected write would not be
                # covered by the WAIT sent to the node it left. Retry the whole (idempotent)
                # pipeline instead.
                results = await pipe.execute(raise_on_error=False, allow_redirections=not wait)
            else:
                results = await pipe.execute(raise_on_error=False)
            for result in results:
                if isinstance(result, Exception):
                    raise result
            if wanted:
                confirmed = results[-len(wanted):]
                if any(int(c) < w for c, w in zip(confirmed, wanted, strict=True)):
                    raise ReplicationTimeout(
                        f"write not confirmed by {self._wait_replicas} replica(s) "
                        f"within {self._wait_ms} ms"
                    )
                results = results[:-len(wanted)]
            return list(results)

        return await self._retrying(attempt)  # type: ignore[no-any-return]

    def _route(self, call: Call) -> dict[str, Any]:
        """Send a script call to the primary of its first key's slot. Its keys share that
        slot by construction (layout.py; the slot test checks it), and without a target the
        cluster client would hash every key to check: about 1 ms for a batch's 2,000 keys.
        A redirection is still followed (the client re-reads the slot on MOVED and ASK)."""
        if isinstance(self.redis, RedisCluster):
            return {"target_nodes": self.redis.get_node_from_key(call.keys[0])}
        return {}

    async def _add_waits(self, pipe: Pipeline | ClusterPipeline, keys: Sequence[str]) -> list[int]:
        """WAIT after the writes, on each connection that wrote; returns the replica count
        each WAIT must reach.

        That is FANLINE_STORE_WAIT_REPLICAS, or fewer when the primary has fewer replicas
        right now (after a failover promoted its only replica): the write is then on every
        copy there is, and waiting for one that does not exist would refuse every write
        until an operator adds a replica."""
        wanted: list[int] = []
        if isinstance(pipe, ClusterPipeline):
            assert isinstance(self.redis, RedisCluster)
            nodes = {}
            for key in keys:
                slot = self.redis.keyslot(key)
                nodes[self.redis.get_node_from_key(key).name] = slot
            for slot in nodes.values():
                holders = self.redis.nodes_manager.slots_cache.get(slot, [])
                count = min(self._wait_replicas, max(0, len(holders) - 1))
                if count:
                    pipe.execute_command("WAIT", count, self._wait_ms, target_nodes=holders[0])
                    wanted.append(count)
            return wanted
        count = min(self._wait_replicas, await self._single_node_replicas())
        if count:
            pipe.execute_command("WAIT", count, self._wait_ms)
            wanted.append(count)
        return wanted

    async def _single_node_replicas(self) -> int:
        """Replicas attached to the single primary (INFO replication, re-read every few
        seconds)."""
        now = time.monotonic()
        if now - self._replicas_read_at > REPLICAS_REFRESH_S:
            info = await self.redis.info("replication")
            self._replicas = int(info.get("connected_slaves", 0))
            self._replicas_read_at = now
        return self._replicas

    async def batch(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Plain commands pipelined (each single-slot; per node, in parallel on a cluster);
        raw replies in order. For reads and idempotent writes: a failed batch is retried
        whole."""
        if not commands:
            return []

        async def attempt() -> list[Any]:
            pipe = self.redis.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            results = await pipe.execute(raise_on_error=False)
            for result in results:
                if isinstance(result, Exception):
                    raise result
            return list(results)

        return await self._retrying(attempt)  # type: ignore[no-any-return]

    async def load_scripts(self) -> None:
        """Load every script on every primary, so calls are plain EVALSHA from the start."""
        for script in ALL_SCRIPTS:
            await self.redis.script_load(script.source)

    # -- topology (for checks and benchmarks) ------------------------------------------------

    def node_of(self, key: str) -> str:
        """host:port of the primary serving `key`."""
        if isinstance(self.redis, RedisCluster):
            return str(self.redis.get_node_from_key(key).name)
        kwargs = self.redis.connection_pool.connection_kwargs
        return f"{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}"

    def node_clients(self) -> dict[str, Redis]:
        """A plain client per primary (callers close them), for per-node stats."""
        if isinstance(self.redis, RedisCluster):
            return {n.name: Redis(host=n.host, port=int(n.port), **_credentials(n.connection_kwargs))
                    for n in self.redis.get_primaries()}
        kwargs = self.redis.connection_pool.connection_kwargs
        return {self.node_of(""): Redis(host=kwargs.get("host", "127.0.0.1"),
                                        port=int(kwargs.get("port", 6379)), **_credentials(kwargs))}

    async def healthy(self) -> bool:
        """The store answers: the node a PING; a cluster CLUSTER INFO with every slot served
        (cluster_state:ok). No retries: this is what a health check asks."""
        if isinstance(self.redis, RedisCluster):
            info = await self.redis.cluster_info()
            return str(info.get("cluster_state", "")) == "ok"
        return bool(await self.redis.ping())

    async def ready(self) -> None:
        """Connect (and, on a cluster, learn the slot map) or raise."""
        if isinstance(self.redis, RedisCluster):
            await self.redis.initialize()
        await self.redis.ping()

    # -- sharded pub/sub ---------------------------------------------------------------------

    async def subscribe(self, channels: Sequence[str]) -> AsyncIterator[bytes | None]:
        """Messages published (SPUBLISH) on `channels`, for as long as the caller iterates.

        Yields None right after each (re)subscription: messages may have been missed before
        it, so the caller should drop whatever state the messages keep fresh. A lost node, a
        failover or a slot moving ends the current subscriptions; they are made again against
        the current topology."""
        while True:
            queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
            listeners: list[asyncio.Task[None]] = []
            try:
                await self._refresh_topology()
                _raise_if_cancelled()
                by_node = self._channels_by_node(channels)
                for node_name, names in by_node.items():
                    listeners.append(asyncio.create_task(self._listen(node_name, names, queue)))
                waiting = len(listeners)  # each listener puts None once it has subscribed
                early: list[bytes] = []
                while waiting:
                    item = await queue.get()
                    if isinstance(item, BaseException):
                        raise item
                    if item is None:
                        waiting -= 1
                    else:
                        early.append(item)
                yield None
                for item in early:
                    yield item
                while True:
                    item = await queue.get()
                    if isinstance(item, BaseException):
                        raise item
                    if item is not None:
                        yield item
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event subscription lost (%s); subscribing again", exc)
                await asyncio.sleep(0.2 + random.random() * 0.3)
            finally:
                for task in listeners:
                    task.cancel()
                await asyncio.gather(*listeners, return_exceptions=True)

    def _channels_by_node(self, channels: Sequence[str]) -> dict[str, list[str]]:
        if not isinstance(self.redis, RedisCluster):
            return {"": list(channels)}
        out: dict[str, list[str]] = {}
        for name in channels:
            out.setdefault(self.redis.get_node_from_key(name).name, []).append(name)
        return out

    async def _listen(self, node_name: str, channels: list[str],
                      queue: asyncio.Queue[bytes | BaseException | None]) -> None:
        node: Redis | None = None
        if isinstance(self.redis, RedisCluster):
            cluster_node = self.redis.get_node(node_name=node_name)
            if cluster_node is None:
                raise rx.ConnectionError(f"node {node_name} left the cluster")
            node = Redis(host=cluster_node.host, port=int(cluster_node.port),
                         **_credentials(cluster_node.connection_kwargs))
            pubsub = node.pubsub()
        else:
            pubsub = self.redis.pubsub()
        try:
            for name in channels:  # one per call: a multi-channel SSUBSCRIBE must be one slot
                await pubsub.ssubscribe(name)
                _raise_if_cancelled()
            queue.put_nowait(None)
            # listen() blocks on the socket with no timeout of its own: get_message(timeout=...)
            # can swallow a cancellation that arrives together with its timeout.
            async for message in pubsub.listen():
                kind = message.get("type")
                if kind == "smessage":
                    queue.put_nowait(message["data"])
                elif kind == "sunsubscribe":  # the slot moved to another node
                    raise rx.ConnectionError(f"a channel moved off {node_name or 'the store'}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            queue.put_nowait(exc)
        finally:
            await pubsub.aclose()
            if node is not None:
                await node.aclose()


def _raise_if_cancelled() -> None:
    """redis-py can swallow a cancellation that lands while it connects; honour it anyway,
    or the caller would wait forever for this task to end."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


_CREDENTIAL_KEYS = ("username", "password", "ssl", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile",
                    "ssl_cert_reqs", "ssl_check_hostname", "db")


def _credentials(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {k: kwargs[k] for k in _CREDENTIAL_KEYS if kwargs.get(k) is not None}
    if "connection_class" in kwargs and "SSL" in kwargs["connection_class"].__name__:
        out["ssl"] = True
    return out
