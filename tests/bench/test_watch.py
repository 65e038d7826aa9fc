"""`fanline bench watch` end to end on a tiny scale: real suite, real streams, seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fanline.bench.watch import WatchResult, WatchScenario, _followed, doc_section
from fanline.cli import main

pytestmark = pytest.mark.e2e


def test_every_watcher_gets_every_post_of_the_authors_it_follows(tmp_path: Path, capsys) -> None:
    code = main(["bench", "watch", "--watchers", "30", "--baseline", "3", "--authors", "5",
                 "--posts", "10", "--rate", "40", "--repeats", "1", "--out", str(tmp_path)])
    assert code == 0  # nothing missing, nothing twice
    out = capsys.readouterr().out
    assert "p99 with 30 watchers / with 3" in out
    report = json.loads((tmp_path / "watch.json").read_text())
    few, many = report["phases"]
    assert (few["watchers"], many["watchers"]) == (3, 30)
    # Each post reaches the watchers following its author: 2 authors per watcher out of 5.
    assert many["expected"] == many["delivered"] == 30 * 2 * 10 // 5
    assert 0 < many["p50_ms"] <= many["p99_ms"] <= many["max_ms"]
    assert many["rss_watching_mb"] > 0


def test_watchers_follow_distinct_authors_spread_evenly() -> None:
    scenario = WatchScenario(watchers=100, authors=20, follows=2)
    follows = [_followed(w, scenario) for w in range(100)]
    assert all(len(f) == 2 for f in follows)
    per_author = [sum(a in f for f in follows) for a in range(20)]
    assert max(per_author) - min(per_author) <= 1


def test_the_doc_section_states_medians_and_the_goal() -> None:
    from fanline.bench.watch import Phase
    result = WatchResult(WatchScenario(watchers=10, baseline=2, repeats=1),
                         [Phase(2, 4, 4, 0, 5.0, 9.0, 9.5), Phase(10, 20, 20, 0, 8.0, 30.0, 31.0)])
    text = "\n".join(doc_section(result))
    assert "p99 30 ms" in text and "3.3x the p99 with 2 watchers" in text
    assert "at most 1 s" in text
