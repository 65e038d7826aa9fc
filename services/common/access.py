"""Who may call which RPC: the one table, enforced by `AccessInterceptor`.

With FANLINE_AUTH=jwt every RPC but health and reflection needs a verified bearer token
(UNAUTHENTICATED otherwise), and then the RPC's rule decides (PERMISSION_DENIED otherwise):

- ANYONE: any authenticated caller (public data: posts, follower lists, author cards);
- SELF: the fields that name a user must name the caller (`sub`); the suite's own services
  (scope `fanline.internal`) may act for any user;
- OWNER: the RPC's subject must belong to the caller, checked by the domain (a delivery record
  is its post's author's); `fanline.admin` may see any;
- INTERNAL: only the suite's own services (`fanline.internal`);
- ADMIN: operators (`fanline.admin`).

docs/security.md renders this table; a test keeps the two equal and walks every row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import grpc

from fanline.common import auth
from fanline.common.auth import ADMIN, INTERNAL, Caller, Keys
from fanline.common.errors import PermissionDenied, Unauthenticated
from fanline.common.interceptor import Unary, UnaryServerInterceptor

# Always open: probes and tooling that cannot hold a token.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class Who(StrEnum):
    ANYONE = "any authenticated caller"
    SELF = "the user named by the request"
    OWNER = "the owner of the subject"
    INTERNAL = "the suite's own services"
    ADMIN = "operators"


@dataclass(frozen=True)
class Rule:
    who: Who
    fields: tuple[str, ...] = ()  # SELF: the request fields that must equal the caller's sub
    note: str = ""


POLICY: dict[str, Rule] = {
    "/feed.v1.PostService/CreatePost": Rule(Who.SELF, ("author_id",)),
    "/feed.v1.PostService/GetPost": Rule(Who.ANYONE, note="posts are public"),
    "/feed.v1.PostService/BatchGetPosts": Rule(Who.ANYONE, note="posts are public"),
    "/feed.v1.PostService/DeletePost": Rule(Who.SELF, ("author_id",),
                                            note="the post must be theirs"),
    "/feed.v1.PostService/ListAuthorPosts": Rule(Who.ANYONE, note="posts are public"),
    "/feed.v1.FanoutService/Follow": Rule(Who.SELF, ("follower_id",)),
    "/feed.v1.FanoutService/Unfollow": Rule(Who.SELF, ("follower_id",)),
    "/feed.v1.FanoutService/ListFollowers": Rule(Who.ANYONE, note="the follow graph is public"),
    "/feed.v1.FanoutService/ListFollowing": Rule(Who.ANYONE, note="the follow graph is public"),
    "/feed.v1.FanoutService/GetAuthor": Rule(Who.ANYONE, note="the follow graph is public"),
    "/feed.v1.FanoutService/PublishPost": Rule(Who.INTERNAL, note="the post service's hand-off"),
    "/feed.v1.FanoutService/RetractPost": Rule(Who.INTERNAL, note="the post service's hand-off"),
    "/feed.v1.FanoutService/GetFanoutStats": Rule(Who.ADMIN),
    "/feed.v1.FanoutService/GetDelivery": Rule(Who.OWNER, note="the post's author, or operators"),
    "/feed.v1.TimelineService/GetTimeline": Rule(Who.SELF, ("user_id",)),
    "/feed.v1.TimelineService/WatchTimeline": Rule(Who.SELF, ("user_id",)),
}


def may_see_everything(caller: Caller | None) -> bool:
    """For OWNER rules, checked by the domain: no auth, or an operator."""
    return caller is None or caller.has(ADMIN)


def authorize(method: str, caller: Caller, request: Any) -> None:
    rule = POLICY.get(method)
    if rule is None:
        raise PermissionDenied("this method is not open to callers")
    if rule.who is Who.INTERNAL and not caller.has(INTERNAL):
        raise PermissionDenied(f"only the suite's own services may call this (scope {INTERNAL})")
    if rule.who is Who.ADMIN and not caller.has(ADMIN):
        raise PermissionDenied(f"needs scope {ADMIN}")
    if rule.who is Who.SELF and not caller.has(INTERNAL):
        for field in rule.fields:
            value = getattr(request, field)
            # An empty field is INVALID_ARGUMENT, reported by validation with the others.
            if value and value != caller.sub:
                raise PermissionDenied(f"{field} must be the caller's own id")


def bearer(metadata: Any) -> str:
    values = [v for k, v in metadata or () if k == "authorization"]
    if len(values) != 1:
        raise Unauthenticated("missing authorization metadata (Bearer token)"
                              if not values else "more than one authorization header")
    scheme, _, token = str(values[0]).partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization must be 'Bearer <token>'")
    return token.strip()


class AccessInterceptor(UnaryServerInterceptor):
    """Verifies the caller and applies POLICY before the servicer runs; the verified caller is
    then `auth.current()` for the rest of the call. Methods of a kind the base class does not
    wrap (client streaming: the API has none) are refused rather than left open."""

    def __init__(self, keys: Keys) -> None:
        self._keys = keys

    def applies_to(self, method: str) -> bool:
        return not method.startswith(OPEN_PREFIXES)

    def wrap(self, method: str, inner: Unary) -> Unary:
        keys = self._keys

        async def admitted(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                caller = keys.verify(bearer(context.invocation_metadata()))
                authorize(method, caller, request)
                auth.acting_as(caller)  # this call's own task context
            except (Unauthenticated, PermissionDenied) as refusal:
                status = refusal.to_grpc_status()
                await context.abort(status.code, status.details, status.trailing_metadata)
            return await inner(request, context)

        return admitted

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await super().intercept_service(continuation, details)
        if (handler is None or not self.applies_to(details.method)  # type: ignore[attr-defined]
                or handler.unary_unary is not None or handler.unary_stream is not None):
            return handler

        async def refuse(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                "this method is not open to callers")

        return grpc.stream_unary_rpc_method_handler(
            refuse, handler.request_deserializer, handler.response_serializer)


def markdown_table() -> str:
    """The docs/security.md table, from POLICY (a test keeps them equal)."""
    rows = ["| RPC | Who may call it | Request fields that must be the caller |",
            "|---|---|---|"]
    for method, rule in POLICY.items():
        who = {Who.INTERNAL: f"{rule.who.value} (`{INTERNAL}`)",
               Who.ADMIN: f"{rule.who.value} (`{ADMIN}`)"}.get(rule.who, rule.who.value)
        if rule.note:
            who += f"; {rule.note}"
        fields = ", ".join(f"`{f}`" for f in rule.fields) or "-"
        rows.append(f"| `{method.lstrip('/')}` | {who} | {fields} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
