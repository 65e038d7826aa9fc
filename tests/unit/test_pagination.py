import pytest

from services.common.errors import InvalidArgument
from services.common.pagination import PageTokens
from services.timeline import cursor as cursors
from services.timeline.cursor import Cursor, Regime

TOKENS = PageTokens("test-secret")


def test_timeline_cursor_round_trips() -> None:
    token = cursors.encode(TOKENS, "alice", Cursor(Regime.ARCHIVE, 12345))
    assert cursors.decode(TOKENS, "alice", token) == Cursor(Regime.ARCHIVE, 12345)
    assert cursors.decode(TOKENS, "alice", "") == cursors.FIRST_PAGE


@pytest.mark.parametrize("token", ["garbage", "eyJzIjoidGltZWxpbmU6YWxpY2UifQ", "!!!", "a" * 200])
def test_tokens_we_did_not_issue_are_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        cursors.decode(TOKENS, "alice", token)
    assert err.value.field == "page_token"


def test_token_of_another_user_or_secret_is_refused() -> None:
    token = cursors.encode(TOKENS, "alice", Cursor(Regime.INBOX, 7))
    with pytest.raises(InvalidArgument):
        cursors.decode(TOKENS, "bob", token)
    with pytest.raises(InvalidArgument):
        cursors.decode(PageTokens("other-secret"), "alice", token)


def test_tampered_token_is_refused() -> None:
    token = cursors.encode(TOKENS, "alice", Cursor(Regime.INBOX, 7))
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(InvalidArgument):
        cursors.decode(TOKENS, "alice", tampered)
