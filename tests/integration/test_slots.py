"""Every call the services make stays in one cluster slot.

The whole suite's behaviour (posts, follows, push and pull fan-out in batches, reclaims,
deletes, unfollows, mode changes and their backfill, timeline reads with rebuilds and archive
pages, the outbox) runs on one node while MONITOR records every command it executes,
including the commands each script runs inside the server. Then, for each command: its keys
(as the server itself finds them, COMMAND GETKEYS) must hash to one slot; a script's inner
commands (and the shard channels it publishes to) must stay in the slot of its declared keys;
and every script the storage layer owns must have run.

On a cluster a violation fails at once (CROSSSLOT); here it is caught on one node, for every
operation, including those a cluster happens to serve from one node.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from fanline.common.embedded import EmbeddedStore
from fanline.common.store import scripts
from fanline.common.store.layout import slot_of
from fanline.gen.feed.v1 import fanout_pb2, post_pb2
from fanline.timeline.cursor import FIRST_PAGE
from tests.conftest import StoreServer, async_wait_for
from tests.integration.conftest import Stack

# Commands whose "key" is a shard channel (GETKEYS reports none).
CHANNEL_COMMANDS = {"SPUBLISH", "SSUBSCRIBE", "SUNSUBSCRIBE"}
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", '"': '"', "\\": "\\"}
_LINE = re.compile(r'^\+?[\d.]+ \[\d+ (?P<source>[^\]]+)\] (?P<args>.*)$')


@dataclass
class Command:
    from_script: bool
    args: list[str]

    @property
    def name(self) -> str:
        return self.args[0].upper()


def parse_args(text: str) -> list[str]:
    """MONITOR's quoted, C-escaped arguments."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != '"':
            i += 1
            continue
        i += 1
        value = []
        while text[i] != '"':
            if text[i] == "\\":
                nxt = text[i + 1]
                if nxt == "x":
                    value.append(chr(int(text[i + 2:i + 4], 16)))
                    i += 4
                    continue
                value.append(_ESCAPES.get(nxt, nxt))
                i += 2
                continue
            value.append(text[i])
            i += 1
        out.append("".join(value))
        i += 1
    return out


class Recorder:
    """MONITOR on a raw socket, parsed into commands."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port))
        self._sock.sendall(b"MONITOR\r\n")
        self._lines: list[bytes] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = b""
        while chunk := self._recv():
            buffer += chunk
            *lines, buffer = buffer.split(b"\r\n")
            self._lines += lines

    def _recv(self) -> bytes:
        try:
            return self._sock.recv(1 << 16)
        except OSError:
            return b""

    def close(self, port: int) -> list[Command]:
        """Stop once a marker sent after everything else has been recorded."""
        marker = "fanline-slot-test-end"
        with redis.Redis(port=port) as client:
            client.echo(marker)
        deadline = time.monotonic() + 10
        while not any(marker.encode() in line for line in list(self._lines)):
            assert time.monotonic() < deadline, "MONITOR did not record the end marker"
            time.sleep(0.01)
        self._sock.close()
        self._thread.join(timeout=5)
        commands = []
        for raw in self._lines:
            match = _LINE.match(raw.decode(errors="replace"))
            if match:
                commands.append(Command(match["source"] == "lua", parse_args(match["args"])))
        return commands


@pytest.fixture(scope="module")
def store_server() -> Iterator[StoreServer]:
    """One node only: MONITOR sees a whole store there."""
    with EmbeddedStore() as server:
        yield StoreServer("single", server)


async def exercise(stack: Stack) -> None:
    """Every kind of operation the services make."""
    fanout = stack.fanout
    small = [f"s{i}" for i in range(3)]
    big = [f"b{i:03d}" for i in range(40)]  # batch size 4: bucket ranges and continuations
    for user in small:
        await fanout.follow(user, "alice")
    await stack.activate(*small, *big[:30])
    for user in big:
        await fanout.follow(user, "bigshot")
    first = await stack.post("alice", "hello", request_id="r1")
    await stack.post("alice", "hello", request_id="r1")  # a retry: the same post
    bigpost = await stack.post("bigshot", "to many")
    await stack.drain()
    # A worker dies holding an entry; another reclaims it.
    taken = await stack.post("alice", "reclaimed")
    partition = stack.store.layout.partition_of_post(int(taken.post_id))
    assert await stack.store.queue.read(partition, "dead", None)
    await async_wait_for(lambda: stack.worker.step(block_ms=5), message="reclaim")
    await stack.drain()
    # Reads: a returning reader (rebuild), pages past the inbox into the archive.
    for user in ("s0", "b035"):
        cursor = FIRST_PAGE
        for _ in range(3):
            page = await stack.page(user, 2, cursor)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    # Promotion to PULL (threshold 30), a pulled post, then a demotion and its backfill.
    for user in [f"fan{i}" for i in range(30)]:
        await fanout.follow(user, "alice")
    pulled = await stack.post("alice", "pulled")
    await stack.drain()
    await stack.page("s1", 5)
    for user in [f"fan{i}" for i in range(30)]:
        await fanout.unfollow(user, "alice")
    await stack.drain()
    # Deletes (retraction of pushed and pulled posts), an unfollow purge.
    for post in (first, pulled, bigpost):
        await stack.posts.DeletePost(post_pb2.DeletePostRequest(post_id=post.post_id,
                                                                author_id=post.author_id))
    await stack.drain()
    await fanout.unfollow("s2", "alice")
    # The rest of the API, and the outbox drainer.
    await stack.fanout_stub.GetFanoutStats(fanout_pb2.GetFanoutStatsRequest())
    await stack.fanout_stub.GetDelivery(fanout_pb2.GetDeliveryRequest(post_id=taken.post_id))
    await stack.fanout_stub.GetAuthor(fanout_pb2.GetAuthorRequest(user_id="alice"))
    await stack.fanout_stub.ListFollowers(fanout_pb2.ListFollowersRequest(user_id="bigshot",
                                                                          page_size=5))
    await stack.posts.ListAuthorPosts(post_pb2.ListAuthorPostsRequest(author_id="alice"))
    await stack.posts.BatchGetPosts(post_pb2.BatchGetPostsRequest(
        post_ids=[taken.post_id, first.post_id]))
    from fanline.post.outbox import Outbox
    await Outbox(stack.store, stack.fanout_stub, 1).drain_once(now_ms=2**62)


async def test_every_command_and_script_stays_in_one_slot(make_stack,
                                                          store_server: StoreServer) -> None:
    assert isinstance(store_server.server, EmbeddedStore)
    recorder = Recorder(store_server.server.port)
    stack: Stack = await make_stack(fanout_batch_size=4, celebrity_threshold=30,
                                    claim_idle_ms=1)
    await exercise(stack)
    commands = recorder.close(store_server.server.port)
    assert len(commands) > 500

    server = redis.Redis(port=store_server.server.port, decode_responses=True)
    script_slot: int | None = None
    ran: set[str] = set()
    problems: list[str] = []
    checked = 0
    for command in commands:
        if command.name in CHANNEL_COMMANDS:
            keys = command.args[1:2]
        else:
            try:
                keys = [str(k) for k in server.command_getkeys(*command.args)]
            except redis.ResponseError:  # no key arguments (PING, SCRIPT LOAD, INFO, ...)
                keys = []
        slots = {slot_of(k) for k in keys}
        if command.name in ("EVALSHA", "EVAL"):
            ran.add(command.args[1])
            script_slot = next(iter(slots)) if len(slots) == 1 else None
        if len(slots) > 1:
            problems.append(f"{command.args[:6]}: keys in {len(slots)} slots")
        if command.from_script and slots and slots != {script_slot}:
            problems.append(f"{command.args[:4]} inside a script left its slot")
        checked += bool(keys)
    server.close()
    assert not problems, "\n".join(problems[:20])
    assert checked > 500
    missing = {s.name for s in scripts.ALL if s.sha not in ran}
    assert not missing, f"scripts never exercised: {sorted(missing)}"
