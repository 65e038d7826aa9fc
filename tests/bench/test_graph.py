"""The graph generator's shape and reproducibility, and the SNAP reader."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from fanline.bench.graph import DEFAULT_SNAP_PATH, from_snap, parse_edges, synthetic
from fanline.bench.stats import percentile


@pytest.fixture(scope="module")
def graph():
    return synthetic(users=5000, mean_follows=20, celebrities=2, celebrity_followers=8000,
                     celebrity_reach=0.25, seed=7)


def test_same_seed_same_graph_other_seed_other_graph(graph) -> None:
    again = synthetic(users=5000, mean_follows=20, celebrities=2, celebrity_followers=8000,
                      celebrity_reach=0.25, seed=7)
    other = synthetic(users=5000, mean_follows=20, celebrities=2, celebrity_followers=8000,
                      celebrity_reach=0.25, seed=8)
    assert again.following == graph.following
    assert other.following != graph.following


def test_no_self_follows_or_duplicates(graph) -> None:
    for account, followees in graph.following.items():
        assert account not in followees
        assert len(followees) == len(set(followees))


def test_mean_follows_as_requested(graph) -> None:
    organic = [len([f for f in graph.following[u] if f not in graph.celebrities])
               for u in graph.users]
    assert sum(organic) / len(organic) == pytest.approx(20, rel=0.15)


def test_follower_counts_are_heavy_tailed(graph) -> None:
    counts = graph.follower_counts()
    organic = [counts[u] for u in graph.users]
    mean = sum(organic) / len(organic)
    # Most accounts are small, a few are big: median below the mean, a long right tail.
    assert percentile(organic, 50) < 0.8 * mean
    assert percentile(organic, 99) > 5 * mean
    assert max(organic) > 40 * mean
    # The top 1% of accounts hold far more than 1% of the follow edges.
    top = sorted(organic, reverse=True)[: len(organic) // 100]
    assert sum(top) / sum(organic) > 0.15


def test_planted_celebrities_have_the_requested_sizes_and_reach(graph) -> None:
    counts = graph.follower_counts()
    assert [counts[c] for c in graph.celebrities] == [8000, 4000]
    followers_in_users = sum(1 for u in graph.users if "c0" in graph.following[u])
    assert followers_in_users == 1250  # 25% of the 5000 workload users
    # The rest of the biggest celebrity's followers are audience-only accounts.
    assert len(graph.audience) == 8000 - 1250
    assert all(graph.following[a] and set(graph.following[a]) <= set(graph.celebrities)
               for a in graph.audience)
    assert graph.big_accounts(4000) == ["c0", "c1"]


def test_parse_edges_skips_comments_self_loops_and_duplicates() -> None:
    lines = ["# Directed graph", "# FromNodeId\tToNodeId", "0\t0", "0\t1", "0\t1", "2\t1", ""]
    assert parse_edges(lines) == [("0", "1"), ("2", "1")]
    with pytest.raises(ValueError):
        parse_edges(["17"])


def test_from_snap_reads_gzip_edge_lists(tmp_path: Path) -> None:
    path = tmp_path / "tiny.txt.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("# comment\n1\t2\n3\t2\n2\t1\n4\t4\n")
    g = from_snap(path)
    assert g.following == {"s1": ["s2"], "s2": ["s1"], "s3": ["s2"], "s4": []}
    assert g.follower_counts()["s2"] == 2
    assert from_snap(path, max_edges=1).edges == 1


@pytest.mark.skipif(not DEFAULT_SNAP_PATH.exists(), reason="shared SNAP data not present")
def test_real_slashdot_graph_matches_its_documented_shape() -> None:
    g = from_snap(DEFAULT_SNAP_PATH)
    d = g.describe()
    assert d["accounts"] == 82_168
    # 948,464 lines, of which 78,303 are self-loops (following yourself is refused).
    assert d["edges"] == 948_464 - 78_303
    assert d["followers_max"] == 2_552
    assert 140 <= d["followers_p99"] <= 160
