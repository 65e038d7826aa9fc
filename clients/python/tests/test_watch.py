"""watch_timeline against a running suite: the first heartbeat says the watch is live, then a
new post by a followed author arrives as an entry."""

from __future__ import annotations

import queue
import threading
import time
import uuid

import pytest
from conftest import Live

from fanline_client import Client, timeline_pb2

Item = timeline_pb2.WatchTimelineResponse | BaseException


def next_item(received: queue.Queue[Item], timeout_s: float, what: str) -> Item:
    try:
        return received.get(timeout=max(0.0, timeout_s))
    except queue.Empty:
        pytest.fail(f"no {what} within the time allowed")


def test_a_watcher_sees_a_new_post_of_a_followed_author(live: Live, alice: Client,
                                                        bob: Client) -> None:
    bob.follow(live.bob, live.alice)
    received: queue.Queue[Item] = queue.Queue()
    watcher = live.client(live.bob_token or None)

    def consume() -> None:
        try:
            for response in watcher.watch_timeline(live.bob):
                received.put(response)
        except BaseException as error:  # the call's end (CANCELLED once we close) or a failure
            received.put(error)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    try:
        first = next_item(received, 15, "first response")
        if isinstance(first, BaseException):
            raise first
        assert first.WhichOneof("event") is None, "the first response is the live heartbeat"

        post = alice.create_post(live.alice, f"watched {uuid.uuid4().hex[:12]}")
        deadline = time.monotonic() + 20
        while True:
            item = next_item(received, deadline - time.monotonic(), "entry for the new post")
            if isinstance(item, BaseException):
                raise item
            if item.WhichOneof("event") == "entry" and item.entry.post.post_id == post.post_id:
                assert item.entry.post == post
                assert item.resume_token, "every response can be resumed after"
                break
    finally:
        watcher.close()  # ends the call; the consumer thread then stops
        thread.join(10)
