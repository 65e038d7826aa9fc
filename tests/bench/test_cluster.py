"""`fanline bench cluster`: the figures it reports, and a tiny run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fanline.bench.cluster import Balance, format_comparison, run_cluster_comparison


def test_balance_deviation_is_the_largest_gap_to_an_even_share() -> None:
    assert Balance.deviation([100, 100, 100]) == 0.0
    assert Balance.deviation([90, 100, 110]) == pytest.approx(0.1)
    assert Balance.deviation([0, 0]) == 0.0


@pytest.mark.e2e
def test_a_tiny_comparison_runs_on_one_node_and_on_a_cluster(tmp_path: Path) -> None:
    result = run_cluster_comparison(followers=600, repeats=1, reads=20, out_dir=tmp_path,
                                    progress=False, zadd_requests=2_000)
    assert set(result.engine) == set(result.reads) == {"single", "cluster"}
    assert "cluster of 3 masters" in result.engine["cluster"].store
    assert result.writes_ratio > 0 and result.p99_ratio > 0
    balance = result.balance
    assert len(balance.masters) == 3
    # 600 followers + the author, each an inbox write somewhere: all of them counted once.
    assert sum(balance.writes) >= 601 and all(k > 0 for k in balance.keys)
    saved = json.loads((tmp_path / "cluster.json").read_text())
    assert saved["writes_ratio"] == pytest.approx(result.writes_ratio)
    text = format_comparison(result)
    assert "inbox writes per master" in text and "GetTimeline p99" in text
