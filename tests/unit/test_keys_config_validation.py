import pytest
from redis.crc import key_slot

from services.common import keys, validation
from services.common.config import ConfigError, env_names, load_settings
from services.common.errors import InvalidArgument


def test_per_user_keys_share_one_cluster_slot() -> None:
    per_user = [keys.inbox("u1"), keys.last_seen("u1"), keys.followers("u1"),
                keys.following("u1"), keys.author_posts("u1"), keys.request_id("u1", "r")]
    assert len({key_slot(k.encode()) for k in per_user}) == 1
    assert key_slot(keys.inbox("u1").encode()) != key_slot(keys.inbox("u2").encode())


def test_queue_bookkeeping_shares_one_slot() -> None:
    queue = [keys.fanout_stream(), keys.fanout_stats(), keys.delivery("123")]
    assert len({key_slot(k.encode()) for k in queue}) == 1
    assert key_slot(keys.pull_authors().encode()) == key_slot(keys.merged_authors().encode())


def test_defaults_load() -> None:
    settings = load_settings({})
    assert settings.celebrity_threshold == 10_000
    assert settings.inbox_max == 800
    assert settings.timeline_budget_ms == 150
    assert settings.post_addr == "127.0.0.1:50051"
    assert "FANLINE_REDIS_URL" in env_names()


def test_bad_settings_fail_fast_naming_each_variable() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"FANLINE_INBOX_MAX": "10", "FANLINE_POST_ADDR": "nope",
                       "FANLINE_CELEBRITY_THRESHOLD": "many"})
    message = str(err.value)
    for name in ("FANLINE_INBOX_MAX", "FANLINE_POST_ADDR", "FANLINE_CELEBRITY_THRESHOLD"):
        assert name in message


def test_bind_addr_override() -> None:
    settings = load_settings({"FANLINE_BIND_HOST": "0.0.0.0"})
    assert settings.bind_addr("post:50051") == "0.0.0.0:50051"


@pytest.mark.parametrize(
    ("value", "problem"),
    [("", "empty"), ("x" * 65, "64"), ("a{b}", "letters")],
)
def test_user_id_validation_names_the_field(value: str, problem: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validation.user_id(value, "follower_id")
    assert err.value.field == "follower_id"
    assert problem in err.value.problem


def test_page_size_rule() -> None:
    assert validation.page_size(0) == 20
    assert validation.page_size(500) == 100
    assert validation.page_size(7) == 7
    with pytest.raises(InvalidArgument):
        validation.page_size(-1)


def test_text_limits() -> None:
    assert validation.text("x" * 1000)
    for bad in ("", "   ", "x" * 1001):
        with pytest.raises(InvalidArgument):
            validation.text(bad)


def test_fanout_write_keys_match_the_single_key_builders() -> None:
    assert keys.fanout_write_keys(["a", "b"]) == [
        keys.inbox("a"), keys.last_seen("a"), keys.following("a"),
        keys.inbox("b"), keys.last_seen("b"), keys.following("b"),
    ]
