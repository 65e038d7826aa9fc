"""The one place that reads configuration: environment variables, validated at start-up.

Every setting is declared once in `SETTINGS` (name, default, parser, meaning). The README
table and the Kubernetes ConfigMap test are both derived from this list, so a setting cannot
be documented or deployed without being read here, nor the reverse.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from fanline.common.auth import HMAC_SECRET_MIN_CHARS, load_jwks
from fanline.common.store.layout import BUCKETS_MAX, BUCKETS_MIN
from fanline.common.tls import TlsFiles

PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 100
TEXT_MAX_CHARS = 1000
ID_MAX_CHARS = 64
# Public, so anyone can forge page tokens signed with it: refused with FANLINE_AUTH=jwt.
DEV_PAGE_TOKEN_SECRET = "fanline-development-page-tokens-not-secret"


class ConfigError(ValueError):
    """Raised at start-up with every invalid setting named, so the process fails fast."""


def _addr(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT with a port in 1..65535")
    return value


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise ValueError(f"must be >= {minimum}")
        return number

    return parse


def _float_in(low: float, high: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        number = float(value)
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}")
        return number

    return parse


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("must be > 0")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if number < 0:
        raise ValueError("must be >= 0")
    return number


def _redis_url(value: str) -> str:
    for part in value.split(",") if value else []:
        if not part.strip().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected redis://, rediss:// or unix:// URLs (or empty for embedded)")
    return value


def _redis_mode(value: str) -> str:
    if value not in ("single", "cluster"):
        raise ValueError("expected single or cluster")
    return value


def _store_buckets(value: str) -> int:
    number = int(value)
    if number & (number - 1) or not BUCKETS_MIN <= number <= BUCKETS_MAX:
        raise ValueError(f"must be a power of two from {BUCKETS_MIN} to {BUCKETS_MAX}")
    return number


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
    return level


def _auth(value: str) -> str:
    # Empty means "not chosen": `fanline up` and tests run as `none`; `fanline serve` refuses.
    if value not in ("", "none", "jwt"):
        raise ValueError("expected none or jwt")
    return value


def _secrets(value: str) -> tuple[str, ...]:
    secrets = tuple(s.strip() for s in value.split(",") if s.strip())
    if any(len(s) < HMAC_SECRET_MIN_CHARS for s in secrets):
        raise ValueError(f"each secret must be at least {HMAC_SECRET_MIN_CHARS} characters")
    return secrets


def _on_off(value: str) -> bool:
    if value not in ("on", "off"):
        raise ValueError("expected on or off")
    return value == "on"


@dataclass(frozen=True)
class Setting:
    env: str
    attr: str
    default: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False  # never echoed in an error message


SETTINGS: tuple[Setting, ...] = (
    Setting("FANLINE_REDIS_URL", "redis_url", "", _redis_url,
            "Redis-compatible store; in cluster mode a comma-separated list of seed nodes; "
            "empty = `fanline up` starts an embedded Valkey"),
    Setting("FANLINE_REDIS_MODE", "redis_mode", "single", _redis_mode,
            "`single` (one node, or a primary with replicas) or `cluster` (Valkey/Redis Cluster)"),
    Setting("FANLINE_STORE_BUCKETS", "store_buckets", "64", _store_buckets,
            "buckets users' keys are spread over (power of two, 64..1024; fixed once data "
            "exists: see docs/scaling.md)"),
    Setting("FANLINE_QUEUE_PARTITIONS", "queue_partitions", "8", _int_at_least(1),
            "fan-out stream partitions, each with its own consumer group (at most the bucket "
            "count; fixed once data exists)"),
    Setting("FANLINE_STORE_WAIT_REPLICAS", "store_wait_replicas", "0", _int_at_least(0),
            "acknowledged writes wait until this many replicas have them (WAIT), so a failover "
            "loses none"),
    Setting("FANLINE_STORE_WAIT_MS", "store_wait_ms", "500", _int_at_least(1),
            "how long a write waits for its replicas before the call fails with UNAVAILABLE"),
    Setting("FANLINE_STORE_TIMEOUT_MS", "store_timeout_ms", "2000", _int_at_least(1000),
            "a store call with no answer for this long (plus FANLINE_STORE_WAIT_MS when it waits "
            "on replicas) is abandoned and retried, so a paused or cut-off store gives "
            "UNAVAILABLE, never a hang"),
    Setting("FANLINE_CELEBRITY_THRESHOLD", "celebrity_threshold", "10000", _int_at_least(0),
            "followers at which an author is promoted to PULL delivery"),
    Setting("FANLINE_DEMOTE_RATIO", "demote_ratio", "0.8", _float_in(0.0, 1.0),
            "a PULL author is demoted to PUSH only below threshold x this ratio (hysteresis)"),
    Setting("FANLINE_INBOX_MAX", "inbox_max", "800", _int_at_least(PAGE_SIZE_MAX + 1),
            "newest entries kept per inbox (must exceed the max page size)"),
    Setting("FANLINE_TIMELINE_BUDGET_MS", "timeline_budget_ms", "150", _int_at_least(1),
            "read budget; a source that misses it is left out and `partial` is set"),
    Setting("FANLINE_ACTIVE_DAYS", "active_days", "7", _positive_float,
            "push only to followers who read their timeline within this many days"),
    Setting("FANLINE_POST_ADDR", "post_addr", "127.0.0.1:50051", _addr,
            "post service address (bound by it, dialled by the others)"),
    Setting("FANLINE_FANOUT_ADDR", "fanout_addr", "127.0.0.1:50052", _addr,
            "fan-out service address"),
    Setting("FANLINE_TIMELINE_ADDR", "timeline_addr", "127.0.0.1:50053", _addr,
            "timeline service address"),
    Setting("FANLINE_WORKER_ADDR", "worker_addr", "127.0.0.1:50054", _addr,
            "fan-out worker health endpoint"),
    Setting("FANLINE_BIND_HOST", "bind_host", "", str,
            "host to bind instead of the one in the service's own address (e.g. 0.0.0.0)"),
    Setting("FANLINE_FANOUT_BATCH_SIZE", "fanout_batch_size", "1000", _int_at_least(1),
            "followers per fan-out batch (one server-side script call)"),
    Setting("FANLINE_WORKER_CONCURRENCY", "worker_concurrency", "4", _int_at_least(1),
            "batches one worker process has in hand at once (keeps the store busy)"),
    Setting("FANLINE_FANOUT_BATCH_PAUSE_MS", "fanout_batch_pause_ms", "0", _int_at_least(0),
            "pause after each batch (before its ack), to cap the store load one worker causes"),
    Setting("FANLINE_QUEUE_MAX", "queue_max", "100000", _int_at_least(1),
            "fan-out stream bound; PublishPost answers RESOURCE_EXHAUSTED beyond it"),
    Setting("FANLINE_CLAIM_IDLE_MS", "claim_idle_ms", "30000", _int_at_least(1),
            "a worker reclaims stream entries another worker has held this long"),
    Setting("FANLINE_PULL_CACHE_TTL_MS", "pull_cache_ttl_ms", "1000", _int_at_least(1),
            "TTL of the timeline's in-process cache of pulled lists and author modes"),
    Setting("FANLINE_BODY_CACHE_SIZE", "body_cache_size", "100000", _int_at_least(1),
            "post bodies kept in the timeline process"),
    Setting("FANLINE_BODY_CACHE_TTL_S", "body_cache_ttl_s", "60", _positive_float,
            "TTL of cached post bodies; it bounds memory, not staleness (deletes invalidate at "
            "once): a hot body is fetched again once per TTL"),
    Setting("FANLINE_REBUILD_POSTS_PER_AUTHOR", "rebuild_posts_per_author", "50", _int_at_least(1),
            "posts read per followee when rebuilding a returning user's inbox"),
    Setting("FANLINE_REBUILD_MAX_FOLLOWING", "rebuild_max_following", "2000", _int_at_least(1),
            "followees read by one timeline request (rebuild, archive pages, PULL matching)"),
    Setting("FANLINE_WATCH_MAX_STREAMS", "watch_max_streams", "5000", _int_at_least(1),
            "WatchTimeline streams one timeline process holds; more are RESOURCE_EXHAUSTED"),
    Setting("FANLINE_WATCH_BUFFER", "watch_buffer", "256", _int_at_least(1),
            "events queued for one WatchTimeline stream; a reader that falls further behind is "
            "ended with RESOURCE_EXHAUSTED and resumes with its last token"),
    Setting("FANLINE_WATCH_HEARTBEAT_S", "watch_heartbeat_s", "15", _positive_float,
            "a WatchTimeline stream with nothing to send sends an empty response this often"),
    Setting("FANLINE_OUTBOX_RETRY_MS", "outbox_retry_ms", "500", _int_at_least(10),
            "how often the post service retries hand-offs fan-out has not accepted"),
    Setting("FANLINE_AUTH", "auth", "", _auth,
            "`jwt`: every RPC needs a verified bearer token (docs/security.md); `none`: callers "
            "are trusted (development). `fanline serve` refuses to start without it"),
    Setting("FANLINE_JWT_SECRETS", "jwt_secrets", "", _secrets,
            "HS256 keys, comma-separated, each at least 32 characters: the first signs (the "
            "suite's internal tokens, `fanline token`), all verify, so keys rotate", secret=True),
    Setting("FANLINE_JWT_JWKS", "jwt_jwks", "", str,
            "a JWKS file of the identity provider's public keys: RS256/ES256 user tokens"),
    Setting("FANLINE_JWT_ISSUER", "jwt_issuer", "", str,
            "if set, tokens must carry this `iss` (and minted ones do)"),
    Setting("FANLINE_JWT_AUDIENCE", "jwt_audience", "", str,
            "if set, tokens must carry this `aud` (and minted ones do)"),
    Setting("FANLINE_PAGE_TOKEN_SECRETS", "page_token_secrets", DEV_PAGE_TOKEN_SECRET, _secrets,
            "HMAC keys for page tokens, comma-separated: the first signs, all verify (same "
            "value on every replica; the default is public and refused with FANLINE_AUTH=jwt)",
            secret=True),
    Setting("FANLINE_TLS_CERT", "tls_cert", "", str,
            "PEM certificate (chain) of this process: every listener and every channel to "
            "another service uses TLS (docs/security.md)"),
    Setting("FANLINE_TLS_KEY", "tls_key", "", str, "PEM private key of FANLINE_TLS_CERT"),
    Setting("FANLINE_TLS_CA", "tls_ca", "", str,
            "PEM CA bundle: servers then require client certificates it issued (mutual TLS) "
            "and clients trust only servers it issued"),
    Setting("FANLINE_HEALTH_PORT", "health_port", "0", _int_at_least(0),
            "with TLS: also serve gRPC health (only health) in plain text on this port, for "
            "Kubernetes probes, which cannot speak TLS (0 = off)"),
    Setting("FANLINE_REFLECTION", "reflection", "on", _on_off,
            "gRPC server reflection (grpcurl, buf curl); off in the prod overlay"),
    Setting("FANLINE_SHUTDOWN_GRACE_S", "shutdown_grace_s", "10", _positive_float,
            "on SIGTERM: time in-flight calls get before the server stops"),
    Setting("FANLINE_SHUTDOWN_DRAIN_S", "shutdown_drain_s", "0", _non_negative_float,
            "on SIGTERM: keep serving this long while health reports NOT_SERVING, so load "
            "balancers stop routing before the server refuses new calls"),
    Setting("FANLINE_METRICS_PORT", "metrics_port", "0", _int_at_least(0),
            "Prometheus scrape port (0 = off)"),
    Setting("FANLINE_LOG_LEVEL", "log_level", "INFO", _log_level, "log level"),
)


@dataclass(frozen=True)
class Settings:
    redis_url: str
    redis_mode: str
    store_buckets: int
    queue_partitions: int
    store_wait_replicas: int
    store_wait_ms: int
    store_timeout_ms: int
    celebrity_threshold: int
    demote_ratio: float
    inbox_max: int
    timeline_budget_ms: int
    active_days: float
    post_addr: str
    fanout_addr: str
    timeline_addr: str
    worker_addr: str
    bind_host: str
    fanout_batch_size: int
    worker_concurrency: int
    fanout_batch_pause_ms: int
    queue_max: int
    claim_idle_ms: int
    pull_cache_ttl_ms: int
    body_cache_size: int
    body_cache_ttl_s: float
    rebuild_posts_per_author: int
    rebuild_max_following: int
    watch_max_streams: int
    watch_buffer: int
    watch_heartbeat_s: float
    outbox_retry_ms: int
    auth: str
    jwt_secrets: tuple[str, ...]
    jwt_jwks: str
    jwt_issuer: str
    jwt_audience: str
    page_token_secrets: tuple[str, ...]
    tls_cert: str
    tls_key: str
    tls_ca: str
    health_port: int
    reflection: bool
    shutdown_grace_s: float
    shutdown_drain_s: float
    metrics_port: int
    log_level: str

    def bind_addr(self, own_addr: str) -> str:
        """The address a service listens on: its own address, or FANLINE_BIND_HOST:port."""
        if not self.bind_host:
            return own_addr
        return f"{self.bind_host}:{own_addr.rpartition(':')[2]}"

    def tls(self) -> TlsFiles | None:
        """The certificate files (read now), or None when TLS is off."""
        return TlsFiles.read(self.tls_cert, self.tls_key, self.tls_ca)

    def with_overrides(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Parse every FANLINE_* variable; raise ConfigError naming each bad one."""
    source = os.environ if env is None else env
    values: dict[str, Any] = {}
    problems: list[str] = []
    for setting in SETTINGS:
        raw = source.get(setting.env, setting.default).strip()
        try:
            values[setting.attr] = setting.parse(raw)
        except ValueError as exc:
            shown = "(hidden)" if setting.secret else repr(raw)
            problems.append(f"{setting.env}={shown}: {exc}")
    if not problems:
        problems += _cross_checks(values)
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))
    return Settings(**values)


def _cross_checks(values: Mapping[str, Any]) -> list[str]:
    """Rules that involve more than one setting."""
    problems = []
    if values["queue_partitions"] > values["store_buckets"]:
        problems.append(f"FANLINE_QUEUE_PARTITIONS={values['queue_partitions']}: must not exceed "
                        f"FANLINE_STORE_BUCKETS ({values['store_buckets']})")
    if values["redis_mode"] == "single" and "," in values["redis_url"]:
        problems.append("FANLINE_REDIS_URL: a list of seed nodes needs FANLINE_REDIS_MODE=cluster")
    if not values["page_token_secrets"]:
        problems.append("FANLINE_PAGE_TOKEN_SECRETS: must name at least one secret")
    if values["jwt_jwks"]:
        try:
            load_jwks(values["jwt_jwks"])
        except ValueError as exc:
            problems.append(f"FANLINE_JWT_JWKS: {exc}")
    try:
        TlsFiles.read(values["tls_cert"], values["tls_key"], values["tls_ca"])
    except ValueError as exc:
        problems.append(str(exc))
    if values["auth"] == "jwt":
        if not values["jwt_secrets"]:
            problems.append("FANLINE_JWT_SECRETS: FANLINE_AUTH=jwt needs at least one secret "
                            "(the services sign their calls to each other with it)")
        if DEV_PAGE_TOKEN_SECRET in values["page_token_secrets"]:
            problems.append("FANLINE_PAGE_TOKEN_SECRETS: FANLINE_AUTH=jwt refuses the public "
                            "development default; set secrets of your own")
    return problems


def env_names() -> list[str]:
    return [s.env for s in SETTINGS]


def markdown_table() -> str:
    """The README's configuration table, generated from SETTINGS (a test keeps them equal)."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(empty)"
        rows.append(f"| `{s.env}` | {default} | {s.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
