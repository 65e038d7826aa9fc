"""WatchTimeline against the real processes, on one node and on a cluster: what reaches a
watcher and how fast, resuming without gaps or repeats, the bounds (slow reader, streams per
process), heartbeats, a drained server, and who may watch."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_status import rpc_status

from fanline.gen.feed.v1 import timeline_pb2, timeline_pb2_grpc
from fanline.launcher import Suite
from tests.conftest import suite_kwargs, wait_for
from tests.e2e.helpers import Clients, Watch

THRESHOLD = 5
BUFFER = 8
MAX_STREAMS = 12

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory, suite_store_mode: str) -> Iterator[Suite]:
    env = {"FANLINE_CELEBRITY_THRESHOLD": str(THRESHOLD), "FANLINE_AUTH": "jwt",
           "FANLINE_JWT_SECRETS": "e2e-watch-jwt-secret-0123456789abcdef",
           "FANLINE_PAGE_TOKEN_SECRETS": "e2e-watch-page-secret-0123456789abcdef",
           "FANLINE_WATCH_BUFFER": str(BUFFER), "FANLINE_WATCH_MAX_STREAMS": str(MAX_STREAMS),
           "FANLINE_WATCH_HEARTBEAT_S": "1"}
    with Suite(workers=1, extra_env=env, log_dir=str(tmp_path_factory.mktemp("watch-logs")),
               **suite_kwargs(suite_store_mode)) as running:
        yield running


@pytest.fixture(scope="module")
def api(suite: Suite) -> Clients:
    return Clients.of(suite)


@pytest.fixture
def watches() -> Iterator[list[Watch]]:
    opened: list[Watch] = []
    yield opened
    for watch in opened:
        watch.close()


def celebrity(api: Clients, name: str) -> None:
    """Make `name` a PULL author: THRESHOLD followers, then a post (the mode is decided when
    they post)."""
    for i in range(THRESHOLD):
        api.follow(f"{name}-fan{i}", name)
    api.wait_delivered(api.post(name, "now famous").post_id)


def test_push_pull_own_posts_and_removals_reach_the_watcher(
        api: Clients, uid: str, watches: list[Watch]) -> None:
    reader, friend, star = f"{uid}-r", f"{uid}-friend", f"{uid}-star"
    celebrity(api, star)
    api.follow(reader, friend)
    api.follow(reader, star)
    watch = api.watch(reader)
    watches.append(watch)

    pushed = api.post(friend, "pushed")
    event = watch.next_event()
    assert event.entry.post.post_id == pushed.post_id
    assert event.entry.post.text == "pushed"
    assert event.entry.source == timeline_pb2.ENTRY_SOURCE_INBOX

    pulled = api.post(star, "pulled")
    event = watch.next_event()
    assert (event.entry.post.post_id, event.entry.source) == (pulled.post_id,
                                                               timeline_pb2.ENTRY_SOURCE_PULL)
    own = api.post(reader, "mine")
    assert watch.next_event().entry.post.post_id == own.post_id

    for gone in (pushed, pulled):
        api.delete(gone)
        assert watch.next_event().removed_post_id == gone.post_id
    api.unfollow(reader, friend)  # an unfollow takes the friend's posts off the timeline
    later = api.post(friend, "after the unfollow")
    api.wait_delivered(later.post_id)
    assert watch.quiet(0.5)


def test_entries_reach_a_watcher_within_a_second_at_p99(
        api: Clients, uid: str, watches: list[Watch]) -> None:
    reader, author = f"{uid}-r", f"{uid}-a"
    api.follow(reader, author)
    watch = api.watch(reader)
    watches.append(watch)
    delays = []
    for i in range(50):
        post = api.post(author, f"#{i}")
        returned_at = time.monotonic()
        arrived_at, event = watch.next_stamped()
        while event.WhichOneof("event") is None:
            arrived_at, event = watch.next_stamped()
        assert event.entry.post.post_id == post.post_id  # in order, none missed or repeated
        delays.append(max(0.0, arrived_at - returned_at))
    delays.sort()
    assert delays[48] <= 1.0, delays  # p99 of 50 (one outlier allowed on a shared machine)


def test_no_gaps_or_repeats_across_reconnects_while_posts_keep_coming(
        api: Clients, uid: str, watches: list[Watch]) -> None:
    reader, authors = f"{uid}-r", [f"{uid}-a{i}" for i in range(3)]
    for author in authors:
        api.follow(reader, author)
    created: list[str] = []
    stop = threading.Event()

    def keep_posting() -> None:
        i = 0
        while not stop.is_set() and i < 120:
            created.append(api.post(authors[i % 3], f"#{i}").post_id)
            i += 1

    watch = api.watch(reader)
    watches.append(watch)
    writer = threading.Thread(target=keep_posting)
    writer.start()
    seen: list[str] = []
    try:
        for _ in range(6):  # read a few, drop the stream, resume with the last token
            seen += watch.entries(8)
            token = watch.token
            watch.close()
            watch = api.watch(reader, token)
            watches.append(watch)
    finally:
        stop.set()
        writer.join(30)
    for post_id in created:
        api.wait_delivered(post_id)
    while len(seen) < len(created):
        seen += watch.entries(1)
    assert len(seen) == len(set(seen)), "an entry was sent twice"
    assert set(seen) == set(created)
    assert watch.quiet(0.5)


def test_a_reader_too_slow_for_the_buffer_is_ended_and_resumes_from_its_token(
        api: Clients, suite: Suite, uid: str) -> None:
    reader, author = f"{uid}-r", f"{uid}-a"
    api.follow(reader, author)
    # A tiny receive window, so the server's writes wait as soon as the reader stops reading.
    channel = grpc.insecure_channel(suite.timeline_addr, options=[
        ("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)])
    call = timeline_pb2_grpc.TimelineServiceStub(channel).WatchTimeline(
        timeline_pb2.WatchTimelineRequest(user_id=reader), metadata=api.as_(reader))
    responses = iter(call)
    token = next(responses).resume_token
    posts = []
    try:
        # More than the transport's window and the stream's buffer hold, while the reader
        # reads nothing: the server ends the stream.
        for i in range(120):
            posts.append(api.post(author, f"{i:04}" + "x" * 990).post_id)
        api.wait_delivered(posts[-1])
        received = []
        with pytest.raises(grpc.RpcError) as ended:
            for response in responses:  # what was already on its way is still delivered
                if response.WhichOneof("event") == "entry":
                    received.append(response.entry.post.post_id)
                token = response.resume_token
        assert ended.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        assert len(received) < len(posts)
    finally:
        channel.close()
    for post_id in posts:
        api.wait_delivered(post_id)
    resumed = api.watch(reader, token)
    try:
        rest = resumed.entries(len(posts) - len(received))
    finally:
        resumed.close()
    assert received + rest == posts


def test_streams_per_process_are_bounded(api: Clients, uid: str, watches: list[Watch]) -> None:
    for i in range(MAX_STREAMS):
        watches.append(api.watch(f"{uid}-{i}"))
    with pytest.raises(grpc.RpcError) as refused:
        api.watch(f"{uid}-one-too-many")
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    watches.pop().close()
    wait_for(lambda: _watches_ok(api, f"{uid}-again", watches), 10, message="a freed slot")


def _watches_ok(api: Clients, user: str, watches: list[Watch]) -> bool:
    try:
        watches.append(api.watch(user))
    except grpc.RpcError:
        return False
    return True


def test_an_idle_stream_gets_heartbeats(api: Clients, uid: str, watches: list[Watch]) -> None:
    watch = api.watch(f"{uid}-r")
    watches.append(watch)
    first = watch.next(5)  # FANLINE_WATCH_HEARTBEAT_S=1 here
    assert first.WhichOneof("event") is None and first.resume_token


def test_only_the_reader_may_watch_and_bad_input_is_named(
        api: Clients, suite: Suite, uid: str) -> None:
    reader = f"{uid}-r"
    bare = timeline_pb2_grpc.TimelineServiceStub(grpc.insecure_channel(suite.timeline_addr))
    for metadata, code in ((api.as_("someone-else"), grpc.StatusCode.PERMISSION_DENIED),
                           (None, grpc.StatusCode.UNAUTHENTICATED)):
        call = bare.WatchTimeline(timeline_pb2.WatchTimelineRequest(user_id=reader),
                                  metadata=metadata)
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(call))
        assert refused.value.code() == code  # type: ignore[attr-defined]
    call = api.timeline.WatchTimeline(
        timeline_pb2.WatchTimelineRequest(user_id="bad id!", resume_token="forged"),
        metadata=api.as_("fanline:tests", "fanline.internal"))
    with pytest.raises(grpc.RpcError) as refused:
        next(iter(call))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
    assert status is not None
    text = status.message
    assert "user_id" in text and "resume_token" in text


def test_a_draining_server_ends_streams_at_once_and_they_resume_on_its_successor(
        api: Clients, suite: Suite, uid: str) -> None:
    reader, author = f"{uid}-r", f"{uid}-a"
    api.follow(reader, author)
    watch = api.watch(reader)
    try:
        first = api.post(author, "before").post_id
        assert watch.entries(1) == [first]
        started = time.monotonic()
        suite.stop_process("timeline", signal.SIGTERM)
        assert watch.ended_with(10) == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 8  # drained, not cut off at the end of the grace
        during = api.post(author, "while it was away").post_id
        suite.respawn("timeline")
        suite.wait_healthy(30, ["timeline"])
        token = watch.token
    finally:
        watch.close()
    resumed = api.watch(reader, token)
    try:
        assert resumed.entries(1, 15) == [during]
    finally:
        resumed.close()


def test_a_stream_that_cannot_fetch_bodies_ends_unavailable_and_resumes_without_loss(
        api: Clients, suite: Suite, uid: str) -> None:
    reader, author = f"{uid}-r", f"{uid}-a"
    api.follow(reader, author)
    watch = api.watch(reader)
    try:
        suite.procs["worker-0"].send_signal(signal.SIGSTOP)  # hold the delivery back
        try:
            held = api.post(author, "held back").post_id
            suite.stop_process("post", signal.SIGKILL)
        finally:
            suite.procs["worker-0"].send_signal(signal.SIGCONT)
        # Delivered and announced, but its body cannot be fetched: the stream ends, no hang.
        assert watch.ended_with(15) == grpc.StatusCode.UNAVAILABLE
        token = watch.token
    finally:
        watch.close()
        suite.respawn("post")
        suite.wait_healthy(30, ["post"])
    # The timeline's channel to the new post process may still be backing off: a resume may
    # end UNAVAILABLE again (as a client would, try again with the same token).
    assert wait_for(lambda: resume_once(api, reader, token), 30,
                    message="a resumed stream to deliver the held-back post") == [held]


def resume_once(api: Clients, reader: str, token: str) -> list[str] | None:
    resumed = api.watch(reader, token)
    try:
        return resumed.entries(1, 5)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        return None
    finally:
        resumed.close()
