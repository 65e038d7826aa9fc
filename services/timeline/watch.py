"""Live timelines: the WatchTimeline streams of one timeline process.

How an entry reaches a watcher: the fan-out's inbox scripts announce each entry they add for a
user who is marked as watched (the bucket's watchers set, refreshed by the process holding the
stream) on the bucket's events channel; a PULL author's new post is announced there by the
worker. The process already follows every bucket's channel (the reader's cache invalidation),
and hands each event to the hub, which queues it on the streams it concerns.

A stream first registers (so announcements start), then re-reads its sources above its resume
position (what was added before the registration, or while it was away), then sends what
arrives. Pub/sub can lose messages (a store failover, a subscription re-made): each stream
then re-reads its sources, as it also does every AUTHORS_REFRESH_S to pick up follows of
PULL authors. resume.py says what a position is and why nothing is missed or repeated.

Bounded: at most `watch_buffer` events queued per stream (a reader that falls further behind
is ended with RESOURCE_EXHAUSTED while its send waits), at most `watch_max_streams` streams
per process; on shutdown every stream ends at once with UNAVAILABLE and resumes elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

import grpc

from fanline.common import metrics, telemetry
from fanline.common.clock import now_ms
from fanline.common.config import Settings
from fanline.common.errors import ResourceExhausted, Unavailable
from fanline.common.pagination import PageTokens
from fanline.common.store import Store
from fanline.common.store.layout import id_time
from fanline.common.store.records import Event, EventKind
from fanline.gen.feed.v1 import timeline_pb2
from fanline.timeline import resume
from fanline.timeline.merge import Source
from fanline.timeline.reader import SEEN_REFRESH_S, TimelineReader
from fanline.timeline.resume import Position

log = logging.getLogger(__name__)

MARK_TTL_MS = 30_000  # a stream's watched mark lasts this long unless refreshed
MARK_REFRESH_S = 10.0  # well inside the TTL: one failed refresh loses nothing
AUTHORS_REFRESH_S = 30.0  # a follow of a PULL author reaches an open stream within this
CATCH_UP_LIMIT = 1000  # ids read per source when a stream re-reads them
RECENT_IDS = 1024  # ids a stream remembers having sent, against duplicate announcements
HYDRATE_TIMEOUT_S = 2.0
DRAIN_WAIT_S = 2.0


@dataclass(frozen=True)
class Added:
    post_id: int
    source: Source
    trace: str = ""  # traceparent of the request that published the post


@dataclass(frozen=True)
class Removed:
    post_id: int


class _Resync:
    """Re-read the sources above the position: announcements may have been missed."""


RESYNC = _Resync()
Item = Added | Removed | _Resync


class Ended(enum.Enum):
    OVERFLOW = "overflow"
    DRAIN = "drain"


class Watcher:
    """One stream's queue and position."""

    def __init__(self, user_id: str, position: Position, buffer: int) -> None:
        self.user_id = user_id
        self.position = position
        self.pull_authors: frozenset[str] = frozenset()
        self.ended: Ended | None = None
        self._buffer = buffer
        self._pending: deque[Item] = deque()
        self._wake = asyncio.Event()
        # Done when the stream ends: a send waiting on a reader that stopped reading wakes up.
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._recent: OrderedDict[int, None] = OrderedDict()

    def offer(self, item: Item) -> None:
        if self.ended is not None:
            return
        if len(self._pending) >= self._buffer:
            self.end(Ended.OVERFLOW)
            return
        self._pending.append(item)
        self._wake.set()

    def resync(self) -> None:
        """Queue a re-read ahead of everything (it is not counted against the buffer)."""
        if RESYNC not in self._pending:
            self._pending.appendleft(RESYNC)
            self._wake.set()

    def end(self, why: Ended) -> None:
        if self.ended is None:
            self.ended = why
            self._ended.set_result(None)
            self._wake.set()

    async def take(self, timeout_s: float) -> list[Item]:
        """What is queued, waiting up to `timeout_s` for something; [] on timeout."""
        if not self._pending and self.ended is None:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout_s)
        items = list(self._pending)
        self._pending.clear()
        return items

    def unsent(self, post_id: int) -> bool:
        """True the first time an id is offered for sending (a re-run batch or a re-read may
        bring it again)."""
        if post_id in self._recent or post_id in self.position.listed:
            return False
        self._recent[post_id] = None
        if len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)
        return True

    async def send(self, context: grpc.aio.ServicerContext,
                   response: timeline_pb2.WatchTimelineResponse) -> None:
        """Write, unless the stream ends first (the reader stopped reading and the queue
        overflowed, or the server drains): then the write is abandoned."""
        write = asyncio.ensure_future(context.write(response))
        await asyncio.wait({write, self._ended}, return_when=asyncio.FIRST_COMPLETED)
        if not write.done():
            write.cancel()
        elif not write.cancelled():
            write.result()
        self.raise_if_ended()

    def raise_if_ended(self) -> None:
        if self.ended is Ended.OVERFLOW:
            raise ResourceExhausted(
                "the reader fell more than the stream buffer behind; resume with the last "
                "resume_token")
        if self.ended is Ended.DRAIN:
            raise Unavailable("the server is shutting down; resume with the last resume_token")


class WatchHub:
    def __init__(self, store: Store, reader: TimelineReader, tokens: PageTokens,
                 settings: Settings) -> None:
        self._store = store
        self._reader = reader
        self._tokens = tokens
        self._settings = settings
        self._max_streams = settings.watch_max_streams
        self._buffer = settings.watch_buffer
        self._heartbeat_s = settings.watch_heartbeat_s
        self._by_user: dict[str, set[Watcher]] = {}
        self._by_author: dict[str, set[Watcher]] = {}
        self._streams = 0
        self._draining = False
        self._none_left = asyncio.Event()  # set when the last stream has gone
        self._marker: asyncio.Task[None] | None = None

    def _every_watcher(self) -> list[Watcher]:
        return [w for watchers in self._by_user.values() for w in watchers]

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._marker = asyncio.create_task(self._refresh_marks())

    async def drain(self) -> None:
        """End every stream with UNAVAILABLE (clients resume on another process) and wait,
        briefly, for them to go."""
        self._draining = True
        for watcher in self._every_watcher():
            watcher.end(Ended.DRAIN)
        if self._streams:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._none_left.wait(), DRAIN_WAIT_S)
        if self._marker is not None:
            self._marker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._marker

    async def _refresh_marks(self) -> None:
        while True:
            await asyncio.sleep(MARK_REFRESH_S)
            users = list(self._by_user)
            if not users:
                continue
            try:
                await self._store.inboxes.watch(users, now_ms() + MARK_TTL_MS)
            except Exception as exc:  # the next round tries again; a lapse only delays
                log.warning("could not refresh watch marks: %s", exc)
                for watcher in self._every_watcher():
                    watcher.resync()

    # -- events ------------------------------------------------------------------------------

    def on_event(self, event: Event | None) -> None:
        """Queue an event on the streams it concerns (None: the subscription was re-made and
        events may have been lost: every stream re-reads)."""
        if event is None or event.kind is EventKind.MODE:
            for watcher in self._every_watcher():
                watcher.resync()
            return
        if event.kind is EventKind.ADDED:
            for user in event.users:
                for watcher in self._by_user.get(user, ()):
                    watcher.offer(Added(event.post_id, Source.INBOX, event.trace))
        elif event.kind is EventKind.REMOVED:
            for user in event.users:
                for watcher in self._by_user.get(user, ()):
                    watcher.offer(Removed(event.post_id))
        elif event.kind is EventKind.POSTED and event.post_id:
            for watcher in self._by_author.get(event.author_id, ()):
                watcher.offer(Added(event.post_id, Source.PULL, event.trace))
        elif event.kind is EventKind.DELETED:
            # PULL authors' posts were never in inboxes: no inbox removal will announce them.
            for watcher in self._by_author.get(event.author_id, ()):
                watcher.offer(Removed(event.post_id))

    def _index(self, watcher: Watcher, authors: frozenset[str]) -> None:
        for author in watcher.pull_authors - authors:
            group = self._by_author.get(author)
            if group is not None:
                group.discard(watcher)
                if not group:
                    del self._by_author[author]
        for author in authors - watcher.pull_authors:
            self._by_author.setdefault(author, set()).add(watcher)
        watcher.pull_authors = authors

    # -- a stream ----------------------------------------------------------------------------

    async def serve(self, user_id: str, viewer: str, position: Position,
                    context: grpc.aio.ServicerContext) -> None:
        """The whole stream: returns only by raising (the client cancels, or it ends with a
        status it can resume from)."""
        if self._draining:
            raise Unavailable("the server is shutting down; retry")
        if self._streams >= self._max_streams:
            raise ResourceExhausted("this server holds as many watch streams as it may; retry")
        watcher = Watcher(user_id, position, self._buffer)
        self._streams += 1
        self._none_left.clear()
        self._by_user.setdefault(user_id, set()).add(watcher)
        metrics.watch_streams(1)
        try:
            # Marked before the first read, so whatever is added later is announced and what
            # was added before is found by the read.
            await self._store.inboxes.watch([user_id], now_ms() + MARK_TTL_MS)
            await self._load_authors(watcher, activate=True)
            await watcher.send(context, self._response(viewer, watcher))  # the watch is live
            watcher.resync()
            authors_due = 0.0  # when to reload the followed PULL authors (with a re-read)
            while True:
                items = await watcher.take(self._heartbeat_s)
                watcher.raise_if_ended()
                if time.monotonic() >= authors_due and RESYNC not in items:
                    items.insert(0, RESYNC)
                if not items:
                    await watcher.send(context, self._response(viewer, watcher))  # heartbeat
                    continue
                if RESYNC in items:
                    await self._load_authors(watcher)
                    # Jittered, so streams opened together do not all re-read together.
                    authors_due = time.monotonic() + AUTHORS_REFRESH_S * random.uniform(0.8, 1.2)
                await self._deliver(context, viewer, watcher, items)
        finally:
            self._streams -= 1
            group = self._by_user.get(user_id)
            if group is not None:
                group.discard(watcher)
                if not group:
                    del self._by_user[user_id]
            self._index(watcher, frozenset())
            metrics.watch_streams(-1)
            if not self._streams:
                self._none_left.set()

    async def _load_authors(self, watcher: Watcher, activate: bool = False) -> None:
        """The PULL authors the reader follows (their posts are announced per author). On the
        first load also make sure fan-out pushes to this reader: an inactive one is skipped,
        so their inbox is rebuilt as a read would."""
        sources = self._reader.sources
        merged = await sources.merged_authors()
        seen, followed = await sources.reader_state(
            watcher.user_id, merged, self._settings.rebuild_max_following)
        self._index(watcher, frozenset(followed))
        if not activate:
            return
        now = time.time()
        if seen is None or seen < now - self._settings.active_days * 86400:
            await self._reader.rebuilder.rebuild(watcher.user_id, merged)
        elif seen < now - SEEN_REFRESH_S:
            await self._store.inboxes.touch([watcher.user_id], int(now))

    async def _catch_up(self, watcher: Watcher) -> list[Added]:
        """Entries above the position's low edge not yet sent, oldest first."""
        low = watcher.position.low()
        inbox = await self._store.inboxes.since(watcher.user_id, low, CATCH_UP_LIMIT)
        pulled = await self._store.posts.authors_ids_after(
            sorted(watcher.pull_authors), low, CATCH_UP_LIMIT)
        found: dict[int, Source] = {i: Source.PULL for ids in pulled for i in ids}
        found.update((i, Source.INBOX) for i in inbox)
        return [Added(i, found[i]) for i in sorted(found) if watcher.position.wants(i)]

    async def _deliver(self, context: grpc.aio.ServicerContext, viewer: str, watcher: Watcher,
                       items: list[Item]) -> None:
        expanded: list[Added | Removed] = []
        for item in items:
            if isinstance(item, _Resync):
                expanded += await self._catch_up(watcher)
            else:
                expanded.append(item)
        sendable = [i for i in expanded if isinstance(i, Removed) or watcher.unsent(i.post_id)]
        ids = [i.post_id for i in sendable if isinstance(i, Added)]
        try:
            bodies = await self._reader.hydrator.bodies(ids, HYDRATE_TIMEOUT_S) if ids else {}
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            # The post service is away or slow: end the stream; the client resumes from its
            # last token and gets these entries then.
            log.warning("watch: could not fetch post bodies: %s", exc)
            raise Unavailable("post bodies unavailable; resume with the last resume_token") from None
        for item in sendable:
            if isinstance(item, Removed):
                response = self._response(viewer, watcher)
                response.removed_post_id = str(item.post_id)
                await watcher.send(context, response)
                continue
            post = bodies.get(item.post_id)
            if post is None:  # deleted before it could be sent
                continue
            watcher.position.sent(item.post_id)
            response = self._response(viewer, watcher)
            response.entry.post.CopyFrom(post)
            response.entry.source = int(item.source)
            delay_ms = max(0.0, time.time() * 1000 - id_time(item.post_id).timestamp() * 1000)
            with telemetry.linked_span(
                    "timeline.watch.send", {"traceparent": item.trace} if item.trace else {},
                    {"fanline.post_id": str(item.post_id), "fanline.watch.delay_ms": delay_ms}):
                await watcher.send(context, response)
            metrics.watch_sent(delay_ms)

    def _response(self, viewer: str, watcher: Watcher) -> timeline_pb2.WatchTimelineResponse:
        return timeline_pb2.WatchTimelineResponse(
            resume_token=resume.encode(self._tokens, viewer, watcher.user_id, watcher.position))
