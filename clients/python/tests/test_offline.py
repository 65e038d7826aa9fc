"""The client against small in-process fake servers: what goes on the wire (token, request ids,
resume tokens) and what the channel's service config does (retries, deadlines), with failures
a real suite would not produce on demand."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from fanline_client import (
    RETRIED_METHODS,
    AsyncClient,
    Client,
    ClientOptions,
    RetryPolicy,
    Targets,
    Tls,
    post_pb2,
    timeline_pb2,
)
from fanline_client._gen.feed.v1 import post_pb2_grpc, timeline_pb2_grpc

FAST_WATCH = ClientOptions(watch_initial_backoff_s=0.01, watch_max_backoff_s=0.05)


@dataclass
class Seen:
    method: str
    request: Any
    metadata: dict[str, str]


@dataclass
class Fake:
    """What the fake servers saw and what they are told to do."""

    calls: list[Seen] = field(default_factory=list)
    unavailable: dict[str, int] = field(default_factory=dict)  # method -> failures to answer
    release: threading.Event = field(default_factory=threading.Event)  # GetPost waits on it
    slow_get: bool = False
    # WatchTimeline: one script per call, (responses, status code to end with or None).
    watch_scripts: list[tuple[list[timeline_pb2.WatchTimelineResponse], grpc.StatusCode | None]] = (
        field(default_factory=list))

    def seen(self, method: str, request: Any, context: grpc.ServicerContext) -> None:
        self.calls.append(Seen(method, request, dict(context.invocation_metadata())))
        if self.unavailable.get(method, 0) > 0:
            self.unavailable[method] -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")

    def of(self, method: str) -> list[Seen]:
        return [c for c in self.calls if c.method == method]


class FakePosts(post_pb2_grpc.PostServiceServicer):
    def __init__(self, fake: Fake) -> None:
        self.fake = fake

    def CreatePost(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.fake.seen("CreatePost", request, context)
        return post_pb2.CreatePostResponse(post=post_pb2.Post(
            post_id="7", author_id=request.author_id, text=request.text))

    def GetPost(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.fake.seen("GetPost", request, context)
        if self.fake.slow_get:
            self.fake.release.wait(5)
        return post_pb2.GetPostResponse(post=post_pb2.Post(post_id=request.post_id))

    def DeletePost(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.fake.seen("DeletePost", request, context)
        return post_pb2.DeletePostResponse()


class FakeTimeline(timeline_pb2_grpc.TimelineServiceServicer):
    def __init__(self, fake: Fake) -> None:
        self.fake = fake

    def WatchTimeline(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self.fake.calls.append(Seen("WatchTimeline", request, dict(context.invocation_metadata())))
        responses, code = self.fake.watch_scripts.pop(0)
        yield from responses
        if code is not None:
            context.abort(code, "watch ended")


@pytest.fixture
def fake() -> Iterator[tuple[Fake, Targets]]:
    """A fresh server per test: gRPC's retry throttling is kept per target, so tests that
    fail calls on purpose must not share one."""
    state = Fake()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    post_pb2_grpc.add_PostServiceServicer_to_server(FakePosts(state), server)
    timeline_pb2_grpc.add_TimelineServiceServicer_to_server(FakeTimeline(state), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield state, Targets.single(f"127.0.0.1:{port}")
    state.release.set()
    server.stop(None)


def entry(post_id: str, token: str) -> timeline_pb2.WatchTimelineResponse:
    return timeline_pb2.WatchTimelineResponse(
        entry=timeline_pb2.TimelineEntry(post=post_pb2.Post(post_id=post_id)), resume_token=token)


def heartbeat(token: str) -> timeline_pb2.WatchTimelineResponse:
    return timeline_pb2.WatchTimelineResponse(resume_token=token)


def code_of(error: BaseException) -> grpc.StatusCode:
    assert isinstance(error, grpc.RpcError)
    return error.code()


# Token

def test_the_token_goes_on_every_call_and_a_callable_is_asked_each_time(fake: tuple[Fake, Targets]) -> None:
    state, targets = fake
    issued: list[str] = []

    def token() -> str:
        issued.append(f"t{len(issued)}")
        return issued[-1]

    state.watch_scripts.append(([heartbeat("a")], None))
    with Client(targets, token=token) as client:
        client.get_post("1")
        client.create_post("alice", "hi")
        assert len(list(client.watch_timeline("alice"))) == 1
        # A call's own authorization replaces the client's (two would be refused).
        client.get_post("1", metadata=[("authorization", "Bearer mine")])
    assert [c.metadata.get("authorization") for c in state.calls] == [
        "Bearer t0", "Bearer t1", "Bearer t2", "Bearer mine"]


def test_without_a_token_no_authorization_is_sent(fake: tuple[Fake, Targets]) -> None:
    state, targets = fake
    with Client(targets) as client:
        client.get_post("1")
    with Client(targets, token="") as client:
        client.get_post("1")
    assert all("authorization" not in c.metadata for c in state.calls)


# Retries and deadlines (the service config)

def test_reads_are_retried_on_unavailable(fake: tuple[Fake, Targets]) -> None:
    state, targets = fake
    state.unavailable["GetPost"] = 2
    with Client(targets, token="t") as client:
        assert client.get_post("5").post_id == "5"
    assert len(state.of("GetPost")) == 3


def test_retries_end_after_max_attempts(fake: tuple[Fake, Targets]) -> None:
    state, targets = fake
    state.unavailable["GetPost"] = 100
    with Client(targets, options=ClientOptions(retry=RetryPolicy(max_attempts=3))) as client:
        with pytest.raises(grpc.RpcError) as raised:
            client.get_post("5")
    assert code_of(raised.value) == grpc.StatusCode.UNAVAILABLE
    assert len(state.of("GetPost")) == 3


def test_create_post_retries_carry_the_same_request_id(fake: tuple[Fake, Targets]) -> None:
    state, targets = fake
    state.unavailable["CreatePost"] = 1
    with Client(targets) as client:
        client.create_post("alice", "one")
        client.create_post("alice", "two")
        client.create_post("alice", "three", request_id="mine")
    ids = [c.request.request_id for c in state.of("CreatePost")]
    assert len(ids) == 4 and all(ids)
    assert ids[0] == ids[1], "the retried attempt is the same post"
    assert ids[1] != ids[2], "another call is another post"
    assert ids[3] == "mine"


def test_delete_is_not_retried(fake: tuple[Fake, Targets]) -> None:
    state, targets = fake
    state.unavailable["DeletePost"] = 1
    with Client(targets) as client, pytest.raises(grpc.RpcError) as raised:
        client.delete_post("7", "alice")
    assert code_of(raised.value) == grpc.StatusCode.UNAVAILABLE
    assert len(state.of("DeletePost")) == 1


def test_per_method_deadline(fake: tuple[Fake, Targets]) -> None:
    state, targets = fake
    state.slow_get = True
    with Client(targets, options=ClientOptions(timeouts={"GetPost": 0.2})) as client:
        with pytest.raises(grpc.RpcError) as raised:
            client.get_post("1")
        assert code_of(raised.value) == grpc.StatusCode.DEADLINE_EXCEEDED
        state.release.set()
        client.create_post("alice", "other methods keep their own deadline")


def test_service_config_retries_only_idempotent_methods() -> None:
    config = ClientOptions(timeouts={"GetTimeline": 2.5, "Follow": None}).service_config()
    by_method = {(n["service"], n.get("method", "")): c for c in config["methodConfig"]
                 for n in c["name"]}
    retried = {(s, m) for s, ms in RETRIED_METHODS.items() for m in ms}
    assert ("feed.v1.PostService", "CreatePost") in retried
    for key, method_config in by_method.items():
        assert ("retryPolicy" in method_config) == (key in retried), key
    assert by_method[("feed.v1.TimelineService", "GetTimeline")]["timeout"] == "2.5s"
    assert "timeout" not in by_method[("feed.v1.FanoutService", "Follow")]
    assert by_method[("feed.v1.PostService", "DeletePost")]["timeout"] == "10s"
    assert by_method[("feed.v1.TimelineService", "WatchTimeline")] == {
        "name": [{"service": "feed.v1.TimelineService", "method": "WatchTimeline"}]}
    options = dict(ClientOptions().grpc_options())
    assert options["grpc.enable_retries"] == 1
    assert json.loads(str(options["grpc.service_config"])) == ClientOptions().service_config()


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown methods"):
        ClientOptions(timeouts={"GetPots": 1.0})
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=9)
    with pytest.raises(ValueError, match="go together"):
        Tls(client_cert=b"-----BEGIN CERTIFICATE-----")
    with pytest.raises(TypeError):
        Client("127.0.0.1:1")


# The watch

def test_watch_resumes_with_the_last_resume_token(fake: tuple[Fake, Targets]) -> None:
    state, targets = fake
    state.watch_scripts += [
        ([heartbeat("r0"), entry("1", "r1")], grpc.StatusCode.UNAVAILABLE),
        ([], grpc.StatusCode.UNAVAILABLE),  # nothing received: resumes after a longer delay
        ([heartbeat("r1"), entry("2", "r2")], grpc.StatusCode.RESOURCE_EXHAUSTED),
        ([entry("3", "r3")], None),  # a clean end ends the iteration
    ]
    with Client(targets, token="t", options=FAST_WATCH) as client:
        got = list(client.watch_timeline("bob", resume_token="r-start"))
    assert [r.resume_token for r in got] == ["r0", "r1", "r1", "r2", "r3"]
    assert [r.entry.post.post_id for r in got if r.HasField("entry")] == ["1", "2", "3"]
    watches = state.of("WatchTimeline")
    assert [w.request.resume_token for w in watches] == ["r-start", "r1", "r1", "r2"]
    assert all(w.request.user_id == "bob" for w in watches)
    assert all(w.metadata["authorization"] == "Bearer t" for w in watches)


def test_watch_raises_errors_it_does_not_resume_from(fake: tuple[Fake, Targets]) -> None:
    state, targets = fake
    state.watch_scripts.append(([heartbeat("r0")], grpc.StatusCode.PERMISSION_DENIED))
    with Client(targets, options=FAST_WATCH) as client:
        got = []
        with pytest.raises(grpc.RpcError) as raised:
            for response in client.watch_timeline("bob"):
                got.append(response)
    assert code_of(raised.value) == grpc.StatusCode.PERMISSION_DENIED
    assert len(got) == 1 and len(state.of("WatchTimeline")) == 1


def test_watch_gives_up_after_max_failures(fake: tuple[Fake, Targets]) -> None:
    state, targets = fake
    state.watch_scripts += [([], grpc.StatusCode.UNAVAILABLE)] * 3
    options = ClientOptions(watch_initial_backoff_s=0.01, watch_max_failures=2)
    with Client(targets, options=options) as client, pytest.raises(grpc.RpcError) as raised:
        list(client.watch_timeline("bob"))
    assert code_of(raised.value) == grpc.StatusCode.UNAVAILABLE
    assert len(state.of("WatchTimeline")) == 3


def test_closing_the_watch_ends_the_call(fake: tuple[Fake, Targets]) -> None:
    state, targets = fake
    state.watch_scripts.append(([heartbeat("r0"), entry("1", "r1"), entry("2", "r2")], None))
    with Client(targets) as client:
        watch = client.watch_timeline("bob")
        assert next(watch).resume_token == "r0"
        watch.close()
    assert len(state.of("WatchTimeline")) == 1


# The async client: same wire behaviour

def test_async_client_token_retries_and_request_ids(fake: tuple[Fake, Targets]) -> None:
    state, targets = fake
    state.unavailable.update(GetPost=1, CreatePost=1)

    async def run() -> None:
        async with AsyncClient(targets, token=lambda: "at") as client:
            assert (await client.get_post("3")).post_id == "3"
            assert (await client.create_post("alice", "hi")).text == "hi"

    asyncio.run(run())
    assert len(state.of("GetPost")) == 2
    creates = state.of("CreatePost")
    assert len(creates) == 2 and creates[0].request.request_id == creates[1].request.request_id != ""
    assert all(c.metadata["authorization"] == "Bearer at" for c in state.calls)


def test_async_watch_resumes(fake: tuple[Fake, Targets]) -> None:
    state, targets = fake
    state.watch_scripts += [
        ([heartbeat("r0"), entry("1", "r1")], grpc.StatusCode.UNAVAILABLE),
        ([entry("2", "r2")], grpc.StatusCode.RESOURCE_EXHAUSTED),
        ([heartbeat("r2")], grpc.StatusCode.NOT_FOUND),
    ]

    async def run() -> list[str]:
        seen: list[str] = []
        async with AsyncClient(targets, token="at", options=FAST_WATCH) as client:
            with pytest.raises(grpc.RpcError) as raised:
                async for response in client.watch_timeline("bob"):
                    seen.append(response.resume_token)
            assert code_of(raised.value) == grpc.StatusCode.NOT_FOUND
        return seen

    assert asyncio.run(run()) == ["r0", "r1", "r2", "r2"]
    assert [w.request.resume_token for w in state.of("WatchTimeline")] == ["", "r1", "r2"]
    assert all(w.metadata["authorization"] == "Bearer at" for w in state.of("WatchTimeline"))
