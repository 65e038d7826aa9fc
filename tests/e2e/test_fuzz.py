"""Garbage at every RPC of the running suite (FANLINE_AUTH=jwt): only documented codes, no
Python text in messages, nothing stored changed by a refused call, the suite still serving.

Requests are generated from the protos' own descriptors, so a new field or RPC is fuzzed
without touching this file."""

from __future__ import annotations

import string
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import redis
from google.protobuf import descriptor, message
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fanline.common.access import POLICY
from fanline.common.auth import ADMIN, INTERNAL, Keys
from fanline.gen.feed.v1 import fanout_pb2, post_pb2, post_pb2_grpc, timeline_pb2
from fanline.launcher import Suite, healthy
from tests.e2e.test_auth import AUTH_ENV, SECRET, STREAMING, first_response

pytestmark = pytest.mark.e2e

DOCUMENTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
              grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
              grpc.StatusCode.RESOURCE_EXHAUSTED}
PYTHON_TEXT = ("Traceback", 'File "', "Exception", "Error(", "object has no attribute")
KEYS = Keys([SECRET])
USERS = ["alice", "bob", "fuzz-a", "fuzz-b"]
MODULES = {"PostService": post_pb2, "FanoutService": fanout_pb2, "TimelineService": timeline_pb2}
INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1), FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
}

unicode_digits = st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=6)
nasty = st.sampled_from(["", " ", "²", "٣", "١٢٣", "0", "-1", "1e3", "{b00}", "a\x00b", "🙂",
                         "a" * 65, "9" * 80, "x" * 70_000])
# Weighted by repetition: the inputs that broke things before come up often.
strings = st.sampled_from([
    st.sampled_from(USERS), st.sampled_from(USERS),
    unicode_digits, unicode_digits,  # str.isdigit() says yes, int() may not agree
    nasty, nasty,
    st.integers(-(10**30), 10**30).map(str),
    st.integers(1, 2**62).map(str),  # post-id shaped
    st.text(max_size=80),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
]).flatmap(lambda strategy: strategy)
printable = st.text(alphabet=string.ascii_letters + string.digits + string.punctuation + " ",
                    max_size=200)


def token_for(user: str, *scopes: str, ttl: int = 300) -> str:
    return KEYS.mint(user, scopes, ttl)


def bearer_of(user: str, *scopes: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token_for(user, *scopes)}")]


garbage_metadata = st.one_of(
    st.just([]),
    printable.map(lambda t: [("authorization", f"Bearer {t}")]),
    printable.map(lambda t: [("authorization", t)]),
    st.lists(st.tuples(st.text(alphabet=string.ascii_lowercase + "-", min_size=1, max_size=12)
                       .filter(lambda k: not k.startswith("grpc-")), printable), max_size=3),
)


def metadata_for(values: dict[str, Any]) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Mostly callers that get past the access rules (so validation and the domain see the
    garbage): the suite, an operator, or whoever the request names; else garbage."""
    named = sorted({v for v in values.values() if isinstance(v, str) and v} & set(USERS[:4]))
    return st.one_of(
        st.just(bearer_of("fanline:fuzz", INTERNAL)),
        st.just(bearer_of("ops", ADMIN)),
        st.sampled_from(named or USERS[:4]).map(bearer_of),
        st.sampled_from(USERS[:4]).map(bearer_of),
        garbage_metadata,
    )


def field_values(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_STRING:
        single: st.SearchStrategy[Any] = strings
    elif field.type == FieldDescriptor.TYPE_BYTES:
        single = st.binary(max_size=100)
    elif field.type in INT_RANGES:
        low, high = INT_RANGES[field.type]
        single = st.one_of(st.integers(low, high), st.sampled_from([low, high, 0, -1, 1, 100, 101]))
    elif field.type == FieldDescriptor.TYPE_BOOL:
        single = st.booleans()
    elif field.type == FieldDescriptor.TYPE_ENUM:
        single = st.integers(-3, 10)
    elif field.type == FieldDescriptor.TYPE_MESSAGE and depth < 3:
        single = messages(field.message_type, depth + 1)
    else:
        return st.nothing()
    if field.is_repeated:
        return st.one_of(st.lists(single, max_size=5),
                         st.lists(st.integers(1, 2**40).map(str), min_size=1001, max_size=1001))
    return single


def messages(kind: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """A dict of `kind`'s fields (all, or some) with generated values."""
    fields = {f.name: field_values(f, depth) for f in kind.fields
              if not (f.type == FieldDescriptor.TYPE_MESSAGE and depth >= 3)}
    return st.one_of(st.fixed_dictionaries(fields), st.fixed_dictionaries({}, optional=fields))


def build(kind: descriptor.Descriptor, values: dict[str, Any]) -> message.Message:
    from google.protobuf import message_factory

    out = message_factory.GetMessageClass(kind)()
    for name, value in values.items():
        field = kind.fields_by_name[name]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                for item in value:
                    getattr(out, name).add().CopyFrom(build(field.message_type, item))
            else:
                getattr(out, name).CopyFrom(build(field.message_type, value))
        elif field.is_repeated:
            getattr(out, name).extend(value)
        else:
            setattr(out, name, value)
    return out


def input_type(method: str) -> descriptor.Descriptor:
    service, name = method.strip("/").split("/")
    short = service.split(".")[-1]
    return MODULES[short].DESCRIPTOR.services_by_name[short].methods_by_name[name].input_type


calls = st.sampled_from(sorted(POLICY)).flatmap(
    lambda m: messages(input_type(m)).flatmap(
        lambda values: st.tuples(st.just(m), st.just(values), metadata_for(values))))


def snapshot(client: redis.Redis) -> dict[bytes, bytes | None]:
    """Every key's serialized value: equal snapshots mean equal stored data."""
    return {key: client.dump(key) for key in sorted(client.scan_iter(count=1000))}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    # No worker: nothing changes the store between calls but the calls themselves.
    logs = tmp_path_factory.mktemp("fuzz-logs")
    with Suite(workers=0, extra_env=AUTH_ENV, log_dir=str(logs)) as running:
        yield running


def test_garbage_gets_documented_codes_and_changes_nothing(fuzzed: Suite) -> None:
    channels = {name: grpc.insecure_channel(addr) for name, addr in
                (("PostService", fuzzed.post_addr), ("FanoutService", fuzzed.fanout_addr),
                 ("TimelineService", fuzzed.timeline_addr))}
    store = redis.Redis.from_url(fuzzed.env["FANLINE_REDIS_URL"])
    # Some real data for the garbage to aim at.
    post = post_pb2_grpc.PostServiceStub(channels["PostService"]).CreatePost(
        post_pb2.CreatePostRequest(author_id="alice", text="target"),
        metadata=[("authorization", f"Bearer {token_for('alice')}")]).post
    USERS.append(post.post_id)
    state = {"data": snapshot(store)}
    seen: set[tuple[str, grpc.StatusCode]] = set()

    @settings(max_examples=600, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(calls)
    def one(case: tuple[str, dict[str, Any], list[tuple[str, str]]]) -> None:
        method, values, meta = case
        kind = input_type(method)
        request = build(kind, values)
        service = method.strip("/").split("/")[0].split(".")[-1]
        try:
            if method.rsplit("/", 1)[1] in STREAMING:
                first_response(channels[service].unary_stream(
                    method, request_serializer=lambda m: m.SerializeToString(),
                    response_deserializer=lambda b: b)(request, metadata=meta, timeout=10))
            else:
                channels[service].unary_unary(
                    method, request_serializer=lambda m: m.SerializeToString(),
                    response_deserializer=lambda b: b)(request, metadata=meta, timeout=10)
            code, details = grpc.StatusCode.OK, ""
        except grpc.RpcError as err:
            code, details = err.code(), err.details() or ""  # type: ignore[attr-defined]
        seen.add((method, code))
        assert code in DOCUMENTED, (method, request, meta, code, details)
        assert not any(text in details for text in PYTHON_TEXT), (method, details)
        now = snapshot(store)
        if code is not grpc.StatusCode.OK:
            assert now == state["data"], (method, request, meta, code, "changed stored data")
        state["data"] = now

    one()
    # The run reached every RPC, and each both refused and (for most) accepted something.
    assert {m for m, _ in seen} == set(POLICY)
    assert {c for _, c in seen} >= {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
                                    grpc.StatusCode.PERMISSION_DENIED,
                                    grpc.StatusCode.UNAUTHENTICATED}
    deadline = time.monotonic() + 10
    while not all(healthy(a) for a in (fuzzed.post_addr, fuzzed.fanout_addr,
                                        fuzzed.timeline_addr)):
        assert time.monotonic() < deadline, "the suite stopped serving"
        time.sleep(0.1)  # polling health
    assert timeline_pb2.GetTimelineResponse.FromString(channels["TimelineService"].unary_unary(
        "/feed.v1.TimelineService/GetTimeline",
        request_serializer=lambda m: m.SerializeToString(), response_deserializer=lambda b: b)(
        timeline_pb2.GetTimelineRequest(user_id="alice"),
        metadata=[("authorization", f"Bearer {token_for('alice')}")], timeout=10)).entries
    for channel in channels.values():
        channel.close()
    store.close()
