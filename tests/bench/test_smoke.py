"""`fanline bench` end to end on a tiny graph: three fresh suites, real gRPC, seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fanline.bench.graph import synthetic
from fanline.cli import main

pytestmark = pytest.mark.e2e

GRAPH_ARGS = ["--users", "60", "--mean-follows", "4", "--celebrities", "1",
              "--celebrity-followers", "50", "--celebrity-reach", "0.5", "--seed", "4"]


def test_bench_reports_consistent_numbers_for_each_strategy(tmp_path: Path, capsys) -> None:
    code = main(["bench", *GRAPH_ARGS, "--threshold", "30", "--duration", "2",
                 "--posts-per-s", "15", "--reads-per-s", "25", "--celebrity-post-share", "0.2",
                 "--seed-posts", "1", "--no-progress", "--out", str(tmp_path),
                 "--name", "smoke"])
    assert code == 0
    out = capsys.readouterr().out
    assert "push-only" in out and "hybrid (T=30)" in out and "pull-only" in out
    assert "real gRPC API" in out  # a graph this small is loaded through the API
    report = json.loads((tmp_path / "smoke.json").read_text())
    assert (tmp_path / "smoke.png").stat().st_size > 10_000
    by = {r["strategy"]: r for r in report["strategies"]}
    assert list(by) == ["push", "hybrid", "pull"]

    graph = synthetic(users=60, mean_follows=4, celebrities=1, celebrity_followers=50,
                      celebrity_reach=0.5, seed=4)
    counts = graph.follower_counts()
    for r in by.values():
        assert r["load"]["method"] == "grpc"
        assert r["posts"]["errors"] == {} and r["reads"]["errors"] == {}
        assert r["drained"] and r["posts"]["created"] == r["posts"]["delivered"] > 10
        assert r["reads"]["ok"] > 20
        assert r["timeline_ms"]["p50"] > 0

    push = by["push"]
    # Push-only: every post costs its author's followers (all active) plus the own inbox.
    assert push["posts"]["pull"] == 0
    assert push["writes_match_expected"] == 1.0
    assert push["write_amplification"]["mean"] == pytest.approx(push["expected_writes_mean"])
    assert push["write_amplification"]["max"] == counts["c0"] + 1  # the celebrity posted
    assert push["inbox_writes_total"] == sum(push["raw"]["writes_per_post"])
    assert push["reads"]["pull_entry_share"] == 0

    pull = by["pull"]
    assert pull["posts"]["push"] == 0
    assert pull["write_amplification"]["max"] == 0 and pull["inbox_writes_total"] == 0
    assert pull["reads"]["pull_entry_share"] == 1.0

    hybrid = by["hybrid"]
    # Only the celebrity (50 followers >= 30) is pulled; everyone else costs followers + 1.
    assert hybrid["writes_match_expected"] == 1.0
    assert hybrid["posts"]["pull"] == hybrid["posts"]["by_celebrities"] > 0
    assert hybrid["write_amplification"]["max"] < counts["c0"]
    assert hybrid["write_amplification"]["mean"] < push["write_amplification"]["mean"]
    assert 0 < hybrid["reads"]["pull_entry_share"] < 1


def test_reads_scenario_mixes_inbox_and_pulled_entries(tmp_path: Path, capsys) -> None:
    code = main(["bench", "reads", "--push-authors", "6", "--pull-authors", "2",
                 "--posts-per-author", "3", "--threshold", "12", "--readers", "3",
                 "--reads", "30", "--out", str(tmp_path)])
    assert code == 0
    assert "p50" in capsys.readouterr().out
    result = json.loads((tmp_path / "reads-6-2-p20.json").read_text())
    assert len(result["latencies_ms"]) == 30
    assert result["entries_mean"] == 20  # 8 authors x 3 posts = 24 >= one page
    assert 0 < result["pull_entry_share"] < 1  # the two celebrities are pulled
    assert result["partial"] == 0
