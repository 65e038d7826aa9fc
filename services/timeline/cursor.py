"""Timeline page cursors: which regime a page is in and where it continues. Pure.

Regime INBOX pages merge the reader's inbox with the lists of the merged (PULL) authors they
follow. Once the inbox is used up, regime ARCHIVE continues from every followed author's own
post list, so scrolling past the inbox cap reaches older posts instead of stopping. Both page
below one key, the last post id returned: ids are global and time-ordered, so pages never
repeat or skip a post across the switch.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fanline.common.errors import InvalidArgument
from fanline.common.pagination import PageTokens


class Regime(StrEnum):
    INBOX = "i"
    ARCHIVE = "a"


@dataclass(frozen=True)
class Cursor:
    regime: Regime = Regime.INBOX
    before_id: int | None = None  # only posts with smaller ids; None = from the newest


FIRST_PAGE = Cursor()


def scope(user_id: str) -> str:
    return f"timeline:{user_id}"


def encode(tokens: PageTokens, viewer: str, user_id: str, cursor: Cursor) -> str:
    return tokens.issue(scope(user_id), viewer, r=cursor.regime.value, b=cursor.before_id)


def decode(tokens: PageTokens, viewer: str, user_id: str, token: str) -> Cursor:
    """`viewer`: the verified caller the token was issued to ("" with FANLINE_AUTH=none)."""
    if not token:
        return FIRST_PAGE
    state = tokens.parse(token, scope(user_id), viewer)
    try:
        regime = Regime(state["r"])
        before = state["b"]
        if before is not None and (not isinstance(before, int) or isinstance(before, bool)
                                   or before <= 0):
            raise ValueError(before)
    except (KeyError, ValueError, TypeError):
        raise InvalidArgument("page_token", "is not a valid timeline page token") from None
    return Cursor(regime, before)
