"""The timeline read: inbox and pulled lists in parallel, merge, hydrate, within a budget."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from fanline.common import metrics, telemetry
from fanline.common.config import Settings
from fanline.common.errors import Unavailable
from fanline.common.store import Store
from fanline.common.store.records import Event, EventKind
from fanline.gen.feed.v1 import post_pb2, post_pb2_grpc
from fanline.timeline import merge
from fanline.timeline.cursor import Cursor, Regime
from fanline.timeline.hydrate import Hydrator
from fanline.timeline.merge import Page, Source
from fanline.timeline.sources import InboxRebuilder, Sources

log = logging.getLogger(__name__)

SEEN_REFRESH_S = 3600  # a read refreshes the reader's activity stamp at most this often
MIN_HYDRATE_S = 0.05  # bodies are worth waiting a little for even when sources used the budget
DEADLINE_MARGIN_S = 0.01  # of a caller's deadline, left for the reply to get back
# A load shared by concurrent readers (a pulled list, the merged authors, bodies) may take this
# long, retries through a failover included; each reader waits for it only within its budget.
SHARED_LOAD_LIMIT_S = 5.0


@dataclass(frozen=True)
class TimelinePage:
    entries: list[tuple[post_pb2.Post, Source]]
    next_cursor: Cursor | None
    partial: bool


class TimelineReader:
    def __init__(self, store: Store, posts: post_pb2_grpc.PostServiceStub,
                 settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._budget_s = settings.timeline_budget_ms / 1000
        self.sources = Sources(store, settings.pull_cache_ttl_ms / 1000, SHARED_LOAD_LIMIT_S)
        self.hydrator = Hydrator(posts, settings.body_cache_size, settings.body_cache_ttl_s,
                                 SHARED_LOAD_LIMIT_S)
        self.rebuilder = InboxRebuilder(
            store, settings.inbox_max, settings.rebuild_posts_per_author,
            settings.rebuild_max_following,
        )
        self._background: set[asyncio.Task[object]] = set()
        self._events_task: asyncio.Task[None] | None = None
        # Also told of every event (None: re-subscribed): the live timelines (watch.py).
        self.event_listeners: list[Callable[[Event | None], None]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._events_task = asyncio.create_task(self._follow_events())

    async def stop(self) -> None:
        if self._events_task:
            self._events_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._events_task
        for task in list(self._background):
            task.cancel()
        await self.hydrator.stop()

    def _spawn(self, coro: object) -> asyncio.Task[object]:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _follow_events(self) -> None:
        """Drop cached state the moment it goes stale (deletes, new pulled posts, mode
        changes); the TTLs only bound staleness if a message is missed."""
        async for event in self._store.events():
            for listener in self.event_listeners:
                listener(event)
            if event is None:  # (re)subscribed: anything may have changed meanwhile
                await self.sources.forget_modes()
                await self.sources.pulled_cache.clear()
            else:
                await self._apply_event(event)

    async def _apply_event(self, event: Event) -> None:
        if event.kind is EventKind.DELETED:
            await self.hydrator.forget(str(event.post_id))
            await self.sources.forget_author(event.author_id)
        elif event.kind is EventKind.POSTED:
            await self.sources.forget_author(event.author_id)
        elif event.kind is EventKind.MODE:
            await self.sources.forget_modes()
            await self.sources.forget_author(event.author_id)

    # -- the read ----------------------------------------------------------------------------

    def budget_s(self, caller_remaining_s: float | None) -> float:
        """The read's budget: the configured one, or less when the caller's own deadline is
        nearer (less a margin for the reply to travel back)."""
        if caller_remaining_s is None:
            return self._budget_s
        return max(0.0, min(self._budget_s, caller_remaining_s - DEADLINE_MARGIN_S))

    async def read(self, user_id: str, page_size: int, cursor: Cursor,
                   caller_remaining_s: float | None = None) -> TimelinePage:
        """`caller_remaining_s`: time left before the caller's deadline (None: no deadline)."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        budget_s = self.budget_s(caller_remaining_s)
        deadline = loop.time() + budget_s
        merged = await self.sources.merged_authors()
        seen, pulled_authors = await self.sources.reader_state(
            user_id, merged, self._settings.rebuild_max_following
        )
        regime = cursor.regime
        now = time.time()
        if seen is None or seen < now - self._settings.active_days * 86400:
            # Returning (or new) reader: fan-out skipped them. Rebuild within half the budget;
            # if it takes longer it finishes in the background and this page comes from the
            # authors' own lists, which is complete, only slower.
            rebuild = self._spawn(
                telemetry.traced("timeline.rebuild", None, self.rebuilder.rebuild, user_id, merged)
            )
            done, _ = await asyncio.wait({rebuild}, timeout=budget_s / 2)
            if not done:
                regime = Regime.ARCHIVE
        elif seen < now - SEEN_REFRESH_S:
            self._spawn(self._store.inboxes.touch([user_id], int(now)))

        partial = False
        if regime is Regime.INBOX:
            page, partial = await self._inbox_page(
                user_id, pulled_authors, page_size, cursor.before_id, deadline
            )
            handover = page.next_cursor
            if handover and handover.regime is Regime.ARCHIVE and len(page.entries) < page_size:
                # The inbox ran out on this page: fill it from the authors' own lists, so a
                # short timeline ends here instead of with an empty extra page.
                rest, missed = await self._archive_page(
                    user_id, page_size - len(page.entries), handover.before_id, deadline
                )
                page = Page(page.entries + rest.entries, rest.next_cursor)
                partial = partial or missed
        else:
            page, partial = await self._archive_page(
                user_id, page_size, cursor.before_id, deadline
            )

        # Bodies are worth waiting a little for even when the sources used the budget, but
        # never past the caller's deadline.
        remaining = max(min(MIN_HYDRATE_S, budget_s), deadline - loop.time())
        try:
            with telemetry.span("timeline.hydrate", {"fanline.hydrate.ids": len(page.entries)}):
                bodies = await self.hydrator.bodies([pid for pid, _ in page.entries], remaining)
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            log.warning("hydration missed the budget or failed: %s", exc)
            if isinstance(exc, TimeoutError):
                metrics.budget_overrun("hydrate")
            page = self._cached_prefix(page, cursor, regime)
            bodies = await self.hydrator.cached([pid for pid, _ in page.entries])
            partial = True
        else:
            gone = [pid for pid, src in page.entries if pid not in bodies and src is Source.INBOX]
            if gone:  # deleted posts: tidy the inbox so later reads do not fetch them again
                self._spawn(self._store.inboxes.tidy(user_id, gone))
        entries = [(bodies[pid], src) for pid, src in page.entries if pid in bodies]
        path = "archive" if regime is Regime.ARCHIVE else "merged" if pulled_authors else "inbox_only"
        telemetry.current_span().set_attributes({
            "fanline.timeline.path": path,
            "fanline.timeline.pulled_authors": len(pulled_authors),
            "fanline.timeline.entries": len(entries),
            "fanline.timeline.partial": partial,
        })
        metrics.timeline_read((time.perf_counter() - started) * 1000, path, partial)
        return TimelinePage(entries, page.next_cursor, partial)

    def _cached_prefix(self, page: Page, cursor: Cursor, regime: Regime) -> Page:
        """When bodies cannot be fetched in time: the page up to the first entry whose body is
        not cached, continuing right after it, so a retry skips nothing and repeats nothing."""
        prefix: list[tuple[int, Source]] = []
        for pid, src in page.entries:
            if not self.hydrator.is_cached(pid):
                break
            prefix.append((pid, src))
        if not prefix:
            return Page([], cursor)
        if len(prefix) == len(page.entries):
            return page
        return Page(prefix, Cursor(regime, prefix[-1][0]))

    async def _inbox_page(
        self, user_id: str, pulled_authors: list[str], page_size: int,
        before_id: int | None, deadline: float,
    ) -> tuple[Page, bool]:
        fetch = page_size + 1
        inbox_task = asyncio.ensure_future(
            telemetry.traced("timeline.inbox", None, self.sources.inbox, user_id, before_id, fetch)
        )
        pulled_tasks = [
            asyncio.ensure_future(telemetry.traced(
                "timeline.pulled", {"fanline.author_id": a}, self.sources.pulled, a, before_id, fetch
            ))
            for a in pulled_authors
        ]
        timeout = max(0.0, deadline - asyncio.get_running_loop().time())
        done, pending = await asyncio.wait([inbox_task, *pulled_tasks], timeout=timeout)
        for task in pending:
            task.cancel()
        failed = {t for t in done if t.exception() is not None}
        for task in failed:
            log.warning("timeline source failed: %s", task.exception())
        if inbox_task in failed and len(failed) == len(done):
            raise Unavailable("timeline sources unavailable; retry")
        ok = done - failed
        inbox = inbox_task.result() if inbox_task in ok else None
        pulled = [t.result() for t in pulled_tasks if t in ok]
        partial = bool(pending or failed)
        if pending:
            metrics.budget_overrun("inbox", int(inbox_task in pending))
            metrics.budget_overrun("pull", sum(t in pending for t in pulled_tasks))
        if partial:  # name the sources that missed the budget (or failed) on the request span
            names = dict(zip(pulled_tasks, (f"pull:{a}" for a in pulled_authors), strict=True))
            names[inbox_task] = "inbox"
            telemetry.current_span().set_attribute(
                "fanline.timeline.missed", sorted(names[t] for t in pending | failed)
            )
        with telemetry.span("timeline.merge", {"fanline.merge.lists": len(pulled) + (inbox is not None)}):
            return merge.inbox_page(inbox, pulled, page_size, before_id), partial

    async def _archive_page(
        self, user_id: str, page_size: int, before_id: int | None, deadline: float
    ) -> tuple[Page, bool]:
        timeout = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            lists = await asyncio.wait_for(
                telemetry.traced(
                    "timeline.archive", None, self.sources.archive,
                    user_id, before_id, page_size + 1, self._settings.rebuild_max_following,
                    await self.sources.merged_authors(),
                ),
                timeout,
            )
        except TimeoutError:
            metrics.budget_overrun("archive")
            # Nothing shown; the same cursor lets the client try this page again.
            telemetry.current_span().set_attribute("fanline.timeline.missed", ["archive"])
            return Page([], Cursor(Regime.ARCHIVE, before_id)), True
        with telemetry.span("timeline.merge", {"fanline.merge.lists": len(lists)}):
            return merge.archive_page(lists, page_size), False
