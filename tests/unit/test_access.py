"""The access table: every RPC has a rule, the rules decide as documented, the docs show them."""

from __future__ import annotations

from pathlib import Path

import pytest

from fanline.common.access import POLICY, Who, authorize, bearer, markdown_table
from fanline.common.auth import ADMIN, INTERNAL, Caller
from fanline.common.errors import PermissionDenied, Unauthenticated
from fanline.gen.feed.v1 import fanout_pb2, post_pb2, timeline_pb2

ROOT = Path(__file__).resolve().parents[2]
ALICE = Caller("alice", frozenset())
SUITE = Caller("fanline:post", frozenset({INTERNAL}))
OPERATOR = Caller("ops", frozenset({ADMIN}))


def every_rpc() -> list[str]:
    return [f"/{service.full_name}/{method.name}"
            for module in (post_pb2, fanout_pb2, timeline_pb2)
            for service in module.DESCRIPTOR.services_by_name.values()
            for method in service.methods]


def test_every_rpc_in_the_protos_has_exactly_one_rule() -> None:
    assert sorted(POLICY) == sorted(every_rpc())


def test_self_rules_name_real_user_fields() -> None:
    for method, rule in POLICY.items():
        if rule.who is Who.SELF:
            service, name = method.strip("/").split("/")
            module = {"PostService": post_pb2, "FanoutService": fanout_pb2,
                      "TimelineService": timeline_pb2}[service.split(".")[-1]]
            request = module.DESCRIPTOR.services_by_name[service.split(".")[-1]] \
                .methods_by_name[name].input_type
            assert rule.fields and all(f in request.fields_by_name for f in rule.fields), method


def test_security_doc_shows_the_table_as_enforced() -> None:
    assert markdown_table() in (ROOT / "docs" / "security.md").read_text()


def test_self_fields_must_name_the_caller_unless_the_suite_acts_for_a_user() -> None:
    method = "/feed.v1.FanoutService/Follow"
    authorize(method, ALICE, fanout_pb2.FollowRequest(follower_id="alice", followee_id="bob"))
    with pytest.raises(PermissionDenied, match="follower_id"):
        authorize(method, ALICE, fanout_pb2.FollowRequest(follower_id="bob", followee_id="x"))
    authorize(method, SUITE, fanout_pb2.FollowRequest(follower_id="bob", followee_id="x"))
    with pytest.raises(PermissionDenied):  # operators see, they do not act for users
        authorize(method, OPERATOR, fanout_pb2.FollowRequest(follower_id="bob", followee_id="x"))
    # An empty field is left to validation (INVALID_ARGUMENT listing every bad field).
    authorize(method, ALICE, fanout_pb2.FollowRequest())


def test_internal_and_admin_rules_need_their_scope() -> None:
    publish, stats = "/feed.v1.FanoutService/PublishPost", "/feed.v1.FanoutService/GetFanoutStats"
    for caller in (ALICE, OPERATOR, Caller("alice", frozenset({"fanline.internal.x"}))):
        with pytest.raises(PermissionDenied):
            authorize(publish, caller, fanout_pb2.PublishPostRequest())
    authorize(publish, SUITE, fanout_pb2.PublishPostRequest())
    for caller in (ALICE, SUITE):
        with pytest.raises(PermissionDenied):
            authorize(stats, caller, fanout_pb2.GetFanoutStatsRequest())
    authorize(stats, OPERATOR, fanout_pb2.GetFanoutStatsRequest())


def test_unlisted_methods_are_closed() -> None:
    with pytest.raises(PermissionDenied):
        authorize("/feed.v1.PostService/Anything", SUITE, post_pb2.GetPostRequest())


@pytest.mark.parametrize("metadata", [
    (), (("authorization", "Basic abc"),), (("authorization", "Bearer "),),
    (("authorization", "Bearer a"), ("authorization", "Bearer b")), (("x-user", "alice"),),
])
def test_authorization_metadata_must_be_one_bearer_token(metadata: tuple) -> None:
    with pytest.raises(Unauthenticated):
        bearer(metadata)


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer((("authorization", "bearer abc"),)) == "abc"
    assert bearer((("authorization", "Bearer abc"), ("x", "y"))) == "abc"


def test_timeline_reads_are_the_reader_own() -> None:
    method = "/feed.v1.TimelineService/GetTimeline"
    authorize(method, ALICE, timeline_pb2.GetTimelineRequest(user_id="alice"))
    with pytest.raises(PermissionDenied):
        authorize(method, ALICE, timeline_pb2.GetTimelineRequest(user_id="bob"))
