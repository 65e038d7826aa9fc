"""Store credentials travel in FANLINE_REDIS_URL, and are never printed."""

from __future__ import annotations

import pytest
import redis

from fanline.cli import _store_unreachable
from fanline.common.config import load_settings
from fanline.common.embedded import EmbeddedCluster, EmbeddedStore
from fanline.common.store import Store

PASSWORD = "s3cret/with:odd@chars"


@pytest.mark.parametrize("mode", ["single", "cluster"])
async def test_the_store_is_used_with_the_password_in_the_url(mode: str) -> None:
    server = (EmbeddedCluster(3, password=PASSWORD) if mode == "cluster"
              else EmbeddedStore(password=PASSWORD))
    with server:
        assert PASSWORD not in server.url  # URL-quoted, so odd characters survive
        port = int(server.url.split(",")[0].rsplit(":", 1)[1].split("/")[0])
        with redis.Redis(port=port) as anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        store = await Store.open(mode, server.url, 64, 8, 1000)
        try:
            assert await store.client.healthy()
            created = await store.posts.create("alice", "behind a password", "", 0)
            assert created.post is not None
        finally:
            await store.close()


def test_a_wrong_or_missing_password_is_one_line_that_does_not_show_it() -> None:
    with EmbeddedStore(password=PASSWORD) as server:
        for url in (f"redis://127.0.0.1:{server.port}/0",
                    f"redis://:not-it@127.0.0.1:{server.port}/0"):
            problem = _store_unreachable(load_settings({"FANLINE_REDIS_URL": url}))
            assert problem is not None and "\n" not in problem
            assert "not-it" not in problem and PASSWORD not in problem
            assert f"127.0.0.1:{server.port}" in problem
