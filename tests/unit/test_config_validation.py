import pytest

from fanline.common import validation
from fanline.common.config import ConfigError, env_names, load_settings
from fanline.common.errors import InvalidArgument


def test_defaults_load() -> None:
    settings = load_settings({})
    assert settings.celebrity_threshold == 10_000
    assert settings.inbox_max == 800
    assert settings.timeline_budget_ms == 150
    assert settings.post_addr == "127.0.0.1:50051"
    assert (settings.redis_mode, settings.store_buckets, settings.queue_partitions) == ("single", 64, 8)
    assert settings.store_wait_replicas == 0
    assert "FANLINE_REDIS_URL" in env_names()


def test_cluster_mode_takes_a_list_of_seed_nodes() -> None:
    seeds = "redis://10.0.0.1:6379,redis://10.0.0.2:6379"
    settings = load_settings({"FANLINE_REDIS_MODE": "cluster", "FANLINE_REDIS_URL": seeds})
    assert settings.redis_url == seeds


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FANLINE_REDIS_MODE": "sharded"}, "FANLINE_REDIS_MODE"),
        ({"FANLINE_STORE_BUCKETS": "100"}, "FANLINE_STORE_BUCKETS"),
        ({"FANLINE_STORE_BUCKETS": "32"}, "FANLINE_STORE_BUCKETS"),
        ({"FANLINE_STORE_BUCKETS": "2048"}, "FANLINE_STORE_BUCKETS"),
        ({"FANLINE_QUEUE_PARTITIONS": "0"}, "FANLINE_QUEUE_PARTITIONS"),
        ({"FANLINE_QUEUE_PARTITIONS": "128"}, "FANLINE_QUEUE_PARTITIONS"),
        ({"FANLINE_REDIS_URL": "redis://a:1,redis://b:2"}, "FANLINE_REDIS_URL"),
        ({"FANLINE_REDIS_MODE": "cluster", "FANLINE_REDIS_URL": "redis://a:1,http://b:2"},
         "FANLINE_REDIS_URL"),
    ],
)
def test_store_settings_are_checked(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert named in str(err.value)


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


SECRET = "k" * 32


@pytest.mark.parametrize(("env", "named", "hint"), [
    ({"FANLINE_AUTH": "yes"}, "FANLINE_AUTH", "none or jwt"),
    ({"FANLINE_AUTH": "jwt"}, "FANLINE_JWT_SECRETS", "at least one secret"),
    ({"FANLINE_AUTH": "jwt", "FANLINE_JWT_SECRETS": SECRET}, "FANLINE_PAGE_TOKEN_SECRETS",
     "public development default"),
    ({"FANLINE_JWT_SECRETS": "short"}, "FANLINE_JWT_SECRETS", "at least 32"),
    ({"FANLINE_PAGE_TOKEN_SECRETS": ","}, "FANLINE_PAGE_TOKEN_SECRETS", "at least one"),
    ({"FANLINE_JWT_JWKS": "/nonexistent/jwks.json"}, "FANLINE_JWT_JWKS", "cannot read"),
    ({"FANLINE_REFLECTION": "maybe"}, "FANLINE_REFLECTION", "on or off"),
])
def test_auth_settings_refuse_what_would_run_open(env: dict[str, str], named: str,
                                                 hint: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert named in str(err.value) and hint in str(err.value)
    assert "\n" not in str(err.value)  # one line


def test_secret_values_never_appear_in_errors() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"FANLINE_JWT_SECRETS": f"{SECRET},leaked-short"})
    assert "leaked-short" not in str(err.value) and SECRET not in str(err.value)


def test_jwt_mode_with_its_keys_loads() -> None:
    settings = load_settings({"FANLINE_AUTH": "jwt", "FANLINE_JWT_SECRETS": f"{SECRET}, {'o' * 40}",
                              "FANLINE_PAGE_TOKEN_SECRETS": "p" * 32, "FANLINE_REFLECTION": "off"})
    assert settings.jwt_secrets == (SECRET, "o" * 40)
    assert settings.page_token_secrets == ("p" * 32,) and settings.reflection is False
    assert load_settings({}).auth == ""  # unset: fanline up trusts callers, fanline serve refuses
