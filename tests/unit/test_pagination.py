import pytest

from fanline.common.errors import InvalidArgument
from fanline.common.pagination import PageTokens
from fanline.timeline import cursor as cursors
from fanline.timeline.cursor import Cursor, Regime

TOKENS = PageTokens(["test-secret"])


def test_timeline_cursor_round_trips() -> None:
    token = cursors.encode(TOKENS, "alice", "alice", Cursor(Regime.ARCHIVE, 12345))
    assert cursors.decode(TOKENS, "alice", "alice", token) == Cursor(Regime.ARCHIVE, 12345)
    assert cursors.decode(TOKENS, "alice", "alice", "") == cursors.FIRST_PAGE


@pytest.mark.parametrize("token", ["garbage", "eyJzIjoidGltZWxpbmU6YWxpY2UifQ", "!!!", "a" * 200,
                                   "a" * 5000, "\u00b2\u0663", "=" * 40])
def test_tokens_we_did_not_issue_are_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        cursors.decode(TOKENS, "alice", "alice", token)
    assert err.value.field == "page_token"


def test_a_token_is_bound_to_its_viewer_its_query_and_the_secrets() -> None:
    token = cursors.encode(TOKENS, "alice", "alice", Cursor(Regime.INBOX, 7))
    with pytest.raises(InvalidArgument):
        cursors.decode(TOKENS, "bob", "alice", token)  # issued to alice, shown by bob
    with pytest.raises(InvalidArgument):
        cursors.decode(TOKENS, "alice", "bob", token)  # another timeline
    with pytest.raises(InvalidArgument):
        cursors.decode(PageTokens(["other-secret"]), "alice", "alice", token)


def test_secrets_rotate_the_first_signs_and_all_verify() -> None:
    old = cursors.encode(TOKENS, "alice", "alice", Cursor(Regime.INBOX, 7))
    rotated = PageTokens(["new-secret", "test-secret"])
    assert cursors.decode(rotated, "alice", "alice", old) == Cursor(Regime.INBOX, 7)
    fresh = cursors.encode(rotated, "alice", "alice", Cursor(Regime.INBOX, 8))
    with pytest.raises(InvalidArgument):
        cursors.decode(TOKENS, "alice", "alice", fresh)  # signed with the new secret only


def test_tampered_token_is_refused() -> None:
    token = cursors.encode(TOKENS, "alice", "alice", Cursor(Regime.INBOX, 7))
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(InvalidArgument):
        cursors.decode(TOKENS, "alice", "alice", tampered)


@pytest.mark.parametrize("state", [{"r": "i", "b": "7"}, {"r": "x", "b": 7}, {"r": ["i"], "b": 7},
                                   {"b": 7}, {"r": "i", "b": -1}, {"r": "i", "b": True}])
def test_well_signed_tokens_with_a_wrong_state_are_invalid_argument(state: dict) -> None:
    # What someone holding the secret could sign: still a clean INVALID_ARGUMENT.
    token = TOKENS.issue(cursors.scope("alice"), "alice", **state)
    with pytest.raises(InvalidArgument):
        cursors.decode(TOKENS, "alice", "alice", token)
