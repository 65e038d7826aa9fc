"""Watch positions and resume tokens, without a store: a re-read after any sequence of sends
repeats nothing listed and skips nothing inside the window."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fanline.common.errors import InvalidArgument
from fanline.common.pagination import PageTokens
from fanline.common.store.layout import first_id_at
from fanline.common.store.records import Event, EventKind
from fanline.timeline import resume
from fanline.timeline.resume import GRACE_MS, TOKEN_IDS, Position

T0 = 1_800_000_000_000  # unix ms
TOKENS = PageTokens(["w" * 32])


def at(ms_after: int, seq: int = 0) -> int:
    return first_id_at(T0 + ms_after) + seq


def test_a_new_watch_wants_only_later_posts() -> None:
    position = Position.starting_at(T0)
    assert not position.wants(at(-1))
    assert position.wants(at(1))


def test_a_late_entry_inside_the_window_is_still_wanted() -> None:
    position = Position.starting_at(T0)
    position.sent(at(5000))
    assert position.wants(at(1000))  # posted earlier, delivered later: not skipped
    assert not position.wants(at(5000))  # sent: not repeated


def test_the_window_is_grace_wide() -> None:
    position = Position.starting_at(T0)
    position.sent(at(GRACE_MS + 10_000))
    assert not position.wants(at(5_000))
    assert position.wants(at(15_000))


def test_the_list_is_capped_by_raising_the_floor() -> None:
    position = Position.starting_at(T0)
    ids = [at(i) for i in range(1, TOKEN_IDS + 6)]
    for post_id in ids:
        position.sent(post_id)
    assert len(position.listed) == TOKEN_IDS
    assert position.floor == ids[4]
    assert not any(position.wants(i) for i in ids)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=60_000), min_size=1, max_size=80))
def test_after_any_sends_nothing_sent_is_wanted_again(offsets: list[int]) -> None:
    position = Position.starting_at(T0)
    for seq, offset in enumerate(offsets):
        position.sent(at(offset, seq % 8))
        again = resume.decode(TOKENS, "v", "u", resume.encode(TOKENS, "v", "u", position))
        assert again == position
    assert not any(position.wants(at(o, s % 8)) for s, o in enumerate(offsets))


def test_tokens_stay_short_and_bound_to_reader_and_viewer() -> None:
    position = Position.starting_at(T0)
    for i in range(TOKEN_IDS * 2):
        position.sent(at(i * 7, i % 5))
    token = resume.encode(TOKENS, "alice", "alice", position)
    assert len(token) < 1024
    assert resume.decode(TOKENS, "alice", "alice", token) == position
    for viewer, user in (("bob", "alice"), ("alice", "bob")):
        with pytest.raises(InvalidArgument) as refused:
            resume.decode(TOKENS, viewer, user, token)
        assert refused.value.violations[0][0] == "resume_token"


@pytest.mark.parametrize("state", [
    {"f": 5, "h": 4, "d": []},  # floor above high
    {"f": 1, "h": 10, "d": [-1]},
    {"f": 1, "h": 10, "d": list(range(TOKEN_IDS + 1))},
    {"f": "1", "h": 10, "d": []},
    {"f": 1, "h": 10},
    {"f": 8, "h": 10, "d": [5]},  # a listed id at or below the floor
])
def test_malformed_positions_are_refused(state: dict[str, object]) -> None:
    token = TOKENS.issue(resume.scope("u"), "v", **state)
    with pytest.raises(InvalidArgument):
        resume.decode(TOKENS, "v", "u", token)


@pytest.mark.parametrize("event", [
    Event(EventKind.ADDED, post_id=42, users=("a", "b"), trace="00-" + "1" * 32 + "-" + "2" * 16 + "-01"),
    Event(EventKind.ADDED, post_id=42, users=("a",)),
    Event(EventKind.REMOVED, post_id=7, users=("a", "c:d")),
    Event(EventKind.POSTED, "star", 9, trace="t"),
    Event(EventKind.POSTED, "star"),
    Event(EventKind.DELETED, "x", 3),
    Event(EventKind.MODE, "x"),
])
def test_events_round_trip(event: Event) -> None:
    assert Event.decode(event.encode()) == event


@pytest.mark.parametrize("raw", ["added", "added 1 -", "added x - a", "removed 1", "posted a b c",
                                 "removed x a", ""])
def test_malformed_events_are_ignored(raw: str) -> None:
    assert Event.decode(raw) is None
