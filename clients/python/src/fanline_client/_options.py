"""What Client and AsyncClient are configured with, defined once for both: the addresses, the
bearer token, TLS, and the channel options (keepalive, and the gRPC service config that holds
the retry policy and the per-method deadlines)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from fanline_client._version import __version__

# A bearer token, or a zero-argument callable returning one. The callable is called for every
# RPC (so it can hand out a refreshed token); it must be cheap and must not block.
TokenSource = str | Callable[[], str]
Metadata = Sequence[tuple[str, str]]
ChannelOption = tuple[str, str | int]

POST_SERVICE = "feed.v1.PostService"
FANOUT_SERVICE = "feed.v1.FanoutService"
TIMELINE_SERVICE = "feed.v1.TimelineService"

# Retried on UNAVAILABLE: reads, and CreatePost, which the server makes idempotent per
# (author_id, request_id); the client always sends a request_id so a retry cannot post twice.
RETRIED_METHODS: Mapping[str, tuple[str, ...]] = {
    POST_SERVICE: ("CreatePost", "GetPost", "BatchGetPosts", "ListAuthorPosts"),
    FANOUT_SERVICE: ("ListFollowers", "ListFollowing", "GetAuthor", "GetDelivery"),
    TIMELINE_SERVICE: ("GetTimeline",),
}
# Not retried by the channel: a DeletePost or Follow that timed out on the way back may have
# happened, so the caller decides. (Both are harmless to repeat, but the server does not
# promise it, so neither do we.)
OTHER_METHODS: Mapping[str, tuple[str, ...]] = {
    POST_SERVICE: ("DeletePost",),
    FANOUT_SERVICE: ("Follow", "Unfollow"),
    TIMELINE_SERVICE: (),
}
WATCH_METHOD = "WatchTimeline"  # a long-lived stream: no deadline, resumed by the client itself

# Seconds. Writes get longer: Follow backfills an inbox, Unfollow purges one.
DEFAULT_TIMEOUTS: Mapping[str, float] = {
    "GetPost": 5.0, "BatchGetPosts": 5.0, "ListAuthorPosts": 5.0, "GetTimeline": 5.0,
    "ListFollowers": 5.0, "ListFollowing": 5.0, "GetAuthor": 5.0, "GetDelivery": 5.0,
    "CreatePost": 10.0, "DeletePost": 10.0, "Follow": 10.0, "Unfollow": 10.0,
}

# The watch ends with these when the server sheds load or shuts down: resume, don't fail.
RESUMABLE_WATCH_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclass(frozen=True)
class Targets:
    """The three services' addresses (`host:port`, or any gRPC target such as `dns:///name:port`)."""

    post: str
    fanout: str
    timeline: str

    @classmethod
    def single(cls, address: str) -> Targets:
        """All three behind one address (a gateway that routes by gRPC service name)."""
        return cls(address, address, address)


def _pem(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


@dataclass(frozen=True)
class Tls:
    """TLS for every channel. `root_ca`: PEM of the CA that issued the servers' certificates
    (None: the system's roots); `client_cert` and `client_key` (PEM, together): present a
    client certificate, for servers that require mutual TLS. `server_name`: the name to
    check the servers' certificate against when it differs from the address (tests, tunnels)."""

    root_ca: bytes | str | None = None
    client_cert: bytes | str | None = None
    client_key: bytes | str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together (mutual TLS)")

    @classmethod
    def from_files(cls, root_ca: str | Path | None = None, client_cert: str | Path | None = None,
                   client_key: str | Path | None = None, server_name: str | None = None) -> Tls:
        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return cls(read(root_ca), read(client_cert), read(client_key), server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=_pem(self.root_ca),
                                            private_key=_pem(self.client_key),
                                            certificate_chain=_pem(self.client_cert))


@dataclass(frozen=True)
class RetryPolicy:
    """gRPC's retry policy for the idempotent methods (RETRIED_METHODS), applied by the channel
    itself: a failed attempt with one of `codes` is sent again after a randomised exponential
    backoff, within the method's deadline."""

    max_attempts: int = 4  # the first call included; gRPC caps it at 5
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    backoff_multiplier: float = 2.0
    codes: tuple[str, ...] = ("UNAVAILABLE",)

    def __post_init__(self) -> None:
        if not 2 <= self.max_attempts <= 5:
            raise ValueError("max_attempts must be 2..5 (gRPC's bounds)")
        if self.initial_backoff_s <= 0 or self.max_backoff_s <= 0 or self.backoff_multiplier <= 0:
            raise ValueError("backoffs and multiplier must be above zero")

    def as_json(self) -> dict[str, Any]:
        return {"maxAttempts": self.max_attempts,
                "initialBackoff": _duration(self.initial_backoff_s),
                "maxBackoff": _duration(self.max_backoff_s),
                "backoffMultiplier": self.backoff_multiplier,
                "retryableStatusCodes": list(self.codes)}


@dataclass(frozen=True)
class ClientOptions:
    """Tuning shared by Client and AsyncClient; the defaults suit a client on the same network.

    - `timeouts`: per-method deadline in seconds by RPC name (`{"GetTimeline": 2.0}`), merged
      over DEFAULT_TIMEOUTS; None removes the deadline. `default_timeout_s` covers the other
      methods of the three services (the raw stubs' internal ones). A `timeout=` given to one
      call can shorten the configured deadline, not extend it (gRPC takes the smaller).
    - `retry`: the policy of the idempotent methods (None: no retries at all).
    - `keepalive_time_s` / `keepalive_timeout_s`: ping an idle-looking connection that has
      calls in flight (a watch) so a dead peer is noticed; no pings without calls, which the
      servers would answer with GOAWAY.
    - `watch_initial_backoff_s` / `watch_max_backoff_s`: delay before resuming a watch (doubles
      per failed attempt); `watch_max_failures`: give up (raise) after that many attempts in a
      row that received nothing (None: never).
    - `round_robin`: spread calls over every address a name resolves to (a headless Kubernetes
      Service), instead of pinning one connection.
    - `channel_options`: raw gRPC channel arguments, applied last (they win over the above).
    """

    timeouts: Mapping[str, float | None] = field(default_factory=dict)
    default_timeout_s: float | None = 10.0
    retry: RetryPolicy | None = field(default_factory=RetryPolicy)
    keepalive_time_s: float = 20.0
    keepalive_timeout_s: float = 10.0
    watch_initial_backoff_s: float = 0.1
    watch_max_backoff_s: float = 5.0
    watch_max_failures: int | None = None
    round_robin: bool = True
    channel_options: Sequence[ChannelOption] = ()

    def __post_init__(self) -> None:
        known = {m for table in (RETRIED_METHODS, OTHER_METHODS) for ms in table.values() for m in ms}
        unknown = set(self.timeouts) - known
        if unknown:
            raise ValueError(f"timeouts for unknown methods: {sorted(unknown)}")
        if not 0 < self.watch_initial_backoff_s <= self.watch_max_backoff_s:
            raise ValueError("watch backoffs: 0 < initial <= max")

    def timeout_of(self, method: str) -> float | None:
        return self.timeouts.get(method, DEFAULT_TIMEOUTS.get(method, self.default_timeout_s))

    def service_config(self) -> dict[str, Any]:
        """The gRPC service config: per-method deadline and, on idempotent methods, retries."""
        configs: list[dict[str, Any]] = []
        for service in (POST_SERVICE, FANOUT_SERVICE, TIMELINE_SERVICE):
            # The service-wide entry: the raw stubs' other methods get the default deadline.
            configs.append(_method_config([{"service": service}], self.default_timeout_s, None))
            for method in RETRIED_METHODS[service]:
                configs.append(_method_config([{"service": service, "method": method}],
                                              self.timeout_of(method), self.retry))
            for method in OTHER_METHODS[service]:
                configs.append(_method_config([{"service": service, "method": method}],
                                              self.timeout_of(method), None))
        # The most specific name wins: the watch has no deadline and no channel retries.
        configs.append({"name": [{"service": TIMELINE_SERVICE, "method": WATCH_METHOD}]})
        config: dict[str, Any] = {"methodConfig": configs}
        if self.retry is not None:
            # Retries stop when over half of recent calls failed: no retry storm on an outage.
            config["retryThrottling"] = {"maxTokens": 10, "tokenRatio": 0.1}
        if self.round_robin:
            config["loadBalancingConfig"] = [{"round_robin": {}}]
        return config

    def grpc_options(self) -> list[ChannelOption]:
        merged: dict[str, str | int] = {
            "grpc.service_config": json.dumps(self.service_config()),
            "grpc.enable_retries": 1 if self.retry is not None else 0,
            "grpc.keepalive_time_ms": int(self.keepalive_time_s * 1000),
            "grpc.keepalive_timeout_ms": int(self.keepalive_timeout_s * 1000),
            "grpc.keepalive_permit_without_calls": 0,
            # Reconnect soon after a server comes back (gRPC's default backoff grows to 2 min).
            "grpc.initial_reconnect_backoff_ms": 200,
            "grpc.max_reconnect_backoff_ms": 5_000,
            "grpc.primary_user_agent": f"fanline-client/{__version__}",
        }
        merged.update(dict(self.channel_options))
        return list(merged.items())


def _duration(seconds: float) -> str:
    """A protobuf JSON Duration ("0.1s"), as service configs spell them."""
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def _method_config(names: list[dict[str, str]], timeout_s: float | None,
                   retry: RetryPolicy | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": names}
    if timeout_s is not None:
        entry["timeout"] = _duration(timeout_s)
    if retry is not None:
        entry["retryPolicy"] = retry.as_json()
    return entry


def resolve_targets(post: str | Targets, fanout: str | None, timeline: str | None) -> Targets:
    if isinstance(post, Targets):
        if fanout is not None or timeline is not None:
            raise TypeError("give either a Targets or the three addresses, not both")
        return post
    if fanout is None or timeline is None:
        raise TypeError("give the post, fanout and timeline addresses (or a Targets)")
    return Targets(post, fanout, timeline)


def bearer_header(token: TokenSource | None) -> tuple[str, str] | None:
    """The authorization metadata for one call; None without a token (or an empty one)."""
    value = token() if callable(token) else token
    return ("authorization", f"Bearer {value}") if value else None


def with_bearer(metadata: Metadata | None, token: TokenSource | None) -> list[tuple[str, str]]:
    """`metadata` plus the bearer token, unless the call already carries an authorization of
    its own (two would be refused)."""
    out = list(metadata or ())
    if not any(key == "authorization" for key, _ in out):
        header = bearer_header(token)
        if header is not None:
            out.append(header)
    return out


def request_id_or_new(request_id: str | None) -> str:
    """CreatePost's idempotency key: the caller's, or a fresh one so channel retries of this
    call (and only of this call) land on the same post."""
    return request_id or str(uuid.uuid4())
