"""Where a WatchTimeline stream stands, and its resume token. Pure: no I/O.

Entries arrive in delivery order, which is not post-id order (a push lands a little after the
post, a slow batch later still), so "everything above the last id sent" would skip a late
entry. A position is instead a window: everything at or below `floor` is done; above it, the
ids sent within the last GRACE of post time are listed, and any other id above the window's
low edge has not been sent. A reconnect with the token re-reads the sources above the low edge
and sends what is not listed: nothing missed that arrived within GRACE of its post time,
nothing repeated. The list is capped (TOKEN_IDS) so tokens stay small; dropping its oldest id
raises the floor to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fanline.common.errors import InvalidArgument
from fanline.common.pagination import PageTokens
from fanline.common.store.layout import first_id_at, id_span

GRACE_MS = 30_000
TOKEN_IDS = 24
_GRACE_IDS = id_span(GRACE_MS)

FIELD = "resume_token"


@dataclass
class Position:
    floor: int  # ids at or below: done (sent, or before the watch began)
    high: int  # the highest id sent (or the floor)
    listed: list[int] = field(default_factory=list)  # sent ids above low(), ascending

    @classmethod
    def starting_at(cls, unix_ms: int) -> Position:
        """A new watch: only posts created from now on."""
        start = first_id_at(unix_ms)
        return cls(start, start)

    def low(self) -> int:
        """The window's low edge: ids at or below it are never sent again."""
        return max(self.floor, self.high - _GRACE_IDS)

    def wants(self, post_id: int) -> bool:
        """Whether a re-read should send this id."""
        return post_id > self.low() and post_id not in self.listed

    def sent(self, post_id: int) -> None:
        """Record an id sent (in any order)."""
        if post_id > self.high:
            self.high = post_id
        if post_id > self.low() and post_id not in self.listed:
            self.listed.append(post_id)
            self.listed.sort()
        while len(self.listed) > TOKEN_IDS:
            self.floor = max(self.floor, self.listed.pop(0))
        low = self.low()
        self.listed = [i for i in self.listed if i > low]


def scope(user_id: str) -> str:
    return f"watch:{user_id}"


def encode(tokens: PageTokens, viewer: str, user_id: str, position: Position) -> str:
    # Listed ids as offsets below `high`: shorter than the ids themselves.
    return tokens.issue(scope(user_id), viewer, f=position.floor, h=position.high,
                        d=[position.high - i for i in position.listed])


def decode(tokens: PageTokens, viewer: str, user_id: str, token: str) -> Position:
    """The position a token stands for; InvalidArgument naming resume_token otherwise."""
    state = tokens.parse(token, scope(user_id), viewer, FIELD)
    floor, high, offsets = state.get("f"), state.get("h"), state.get("d")
    if not (_count(floor) and _count(high) and isinstance(offsets, list)
            and len(offsets) <= TOKEN_IDS and all(_count(o) for o in offsets)
            and floor <= high):
        raise InvalidArgument(FIELD, "is not a valid resume token")
    position = Position(floor, high, sorted(high - o for o in offsets))
    if any(i <= position.low() for i in position.listed):
        raise InvalidArgument(FIELD, "is not a valid resume token")
    return position


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
