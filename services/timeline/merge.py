"""Merging timeline sources into one page. Pure: no I/O.

Each source is a list of post ids, newest first, all below the page cursor, fetched with a
limit of page_size + 1 so the merge can tell whether more follow.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from fanline.timeline.cursor import Cursor, Regime


class Source(IntEnum):
    """Values match feed.v1.EntrySource."""

    INBOX = 1
    PULL = 2


@dataclass(frozen=True)
class Page:
    entries: list[tuple[int, Source]]
    next_cursor: Cursor | None  # None = no more pages


def merge_newest_first(
    sources: Iterable[tuple[Source, Sequence[int]]], limit: int | None = None
) -> list[tuple[int, Source]]:
    """k-way merge, newest first, each post once (the first source listed wins a tie)."""
    tagged = [[(-pid, order, src) for pid in ids] for order, (src, ids) in enumerate(sources)]
    out: list[tuple[int, Source]] = []
    last = None
    for neg_id, _order, src in heapq.merge(*tagged):
        if neg_id == last:
            continue
        last = neg_id
        out.append((-neg_id, src))
        if limit is not None and len(out) >= limit:
            break
    return out


def inbox_page(
    inbox: Sequence[int] | None,
    pulled: Sequence[Sequence[int]],
    page_size: int,
    before_id: int | None,
) -> Page:
    """A page in the INBOX regime.

    `inbox` is None when the inbox read missed the budget: the page is then built from the
    pulled lists alone, and its cursor is this page's own, so the next call reads the same page
    again, whole (pushed posts between the pulled ones shown are not skipped). While the inbox
    has more than a page left, it holds every pushed post down to where the page ends. Once
    the inbox is exhausted (it returned page_size or fewer), nothing below its oldest entry may
    be shown from the pulled lists, or pushed posts that were trimmed off (or never held)
    would be skipped: the page stops there and the next one continues in the ARCHIVE regime.
    """
    sources: list[tuple[Source, Sequence[int]]] = []
    if inbox is not None:
        sources.append((Source.INBOX, inbox))
    sources += [(Source.PULL, ids) for ids in pulled]
    candidates = merge_newest_first(sources, page_size + 1)
    if inbox is None:
        return Page(candidates[:page_size], Cursor(Regime.INBOX, before_id))
    exhausted = len(inbox) <= page_size
    if exhausted:
        floor = inbox[-1] if inbox else None
        candidates = [c for c in candidates if floor is not None and c[0] >= floor]
        entries = candidates[:page_size]
        if len(candidates) > page_size:
            return Page(entries, Cursor(Regime.INBOX, entries[-1][0]))
        # The archive continues strictly below the last id shown, or below this page's own
        # cursor when nothing could be shown (the caller then reads the archive at once).
        return Page(entries, Cursor(Regime.ARCHIVE, entries[-1][0] if entries else before_id))
    entries = candidates[:page_size]
    more = len(candidates) > page_size
    return Page(entries, Cursor(Regime.INBOX, entries[-1][0]) if more and entries else None)


def archive_page(lists: Sequence[Sequence[int]], page_size: int) -> Page:
    """A page in the ARCHIVE regime: every followed author's own list, merged."""
    candidates = merge_newest_first(((Source.PULL, ids) for ids in lists), page_size + 1)
    entries = candidates[:page_size]
    more = len(candidates) > page_size
    return Page(entries, Cursor(Regime.ARCHIVE, entries[-1][0]) if more else None)
