"""Fixtures of the client's own tests.

test_offline.py needs nothing: it runs small fake servers in-process. test_live.py and
test_watch.py run against a running Fanline suite, named by environment variables (they are
skipped when FANLINE_TEST_POST is unset):

    FANLINE_TEST_POST, FANLINE_TEST_FANOUT, FANLINE_TEST_TIMELINE   the three addresses
    FANLINE_TEST_ALICE, FANLINE_TEST_BOB      two user ids (default: alice, bob)
    FANLINE_TEST_TOKEN_ALICE, FANLINE_TEST_TOKEN_BOB
                                              their bearer tokens (`fanline token alice`);
                                              unset: the suite runs FANLINE_AUTH=none and the
                                              authentication tests are skipped
    FANLINE_TEST_CA, FANLINE_TEST_CERT, FANLINE_TEST_KEY
                                              PEM files when the suite uses TLS (CA alone, or
                                              with a client certificate for mutual TLS)

The tests make their own posts (unique texts) and only look for those, so they can run again
against the same suite and users.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import pytest

from fanline_client import AsyncClient, Client, ClientOptions, Targets, Tls, TokenSource

T = TypeVar("T")


@dataclass(frozen=True)
class Live:
    targets: Targets
    alice: str
    bob: str
    alice_token: str
    bob_token: str
    tls: Tls | None

    @property
    def auth(self) -> bool:
        return bool(self.alice_token and self.bob_token)

    def client(self, token: TokenSource | None, options: ClientOptions | None = None) -> Client:
        return Client(self.targets, token=token, tls=self.tls, options=options)

    def async_client(self, token: TokenSource | None) -> AsyncClient:
        return AsyncClient(self.targets, token=token, tls=self.tls)


def eventually(check: Callable[[], T | None], timeout_s: float = 20.0, what: str = "it") -> T:
    """Poll `check` until it returns something other than None or False (delivery is
    asynchronous); fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def live() -> Live:
    post = os.environ.get("FANLINE_TEST_POST", "")
    if not post:
        pytest.skip("no suite to test against: set FANLINE_TEST_POST, _FANOUT, _TIMELINE")
    ca, cert, key = (os.environ.get(f"FANLINE_TEST_{n}", "") for n in ("CA", "CERT", "KEY"))
    tls = Tls.from_files(ca or None, cert or None, key or None) if ca or cert else None
    return Live(
        targets=Targets(post, os.environ["FANLINE_TEST_FANOUT"],
                        os.environ["FANLINE_TEST_TIMELINE"]),
        alice=os.environ.get("FANLINE_TEST_ALICE", "alice"),
        bob=os.environ.get("FANLINE_TEST_BOB", "bob"),
        alice_token=os.environ.get("FANLINE_TEST_TOKEN_ALICE", ""),
        bob_token=os.environ.get("FANLINE_TEST_TOKEN_BOB", ""),
        tls=tls,
    )


@pytest.fixture
def alice(live: Live) -> Iterator[Client]:
    with live.client(live.alice_token or None) as client:
        yield client


@pytest.fixture
def bob(live: Live) -> Iterator[Client]:
    with live.client(live.bob_token or None) as client:
        yield client
