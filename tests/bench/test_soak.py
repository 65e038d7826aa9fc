"""`fanline bench soak`: the verdict (pure), and a short run of the tool against a real suite."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from fanline.bench.soak import Minute, SoakResult, format_soak, run_soak


def soak(*minutes: tuple[float, dict[str, float], int]) -> SoakResult:
    result = SoakResult(len(minutes), 0.8, 1000.0, 800.0, 100)
    for i, (p99, rss, errors) in enumerate(minutes):
        result.per_minute.append(Minute(i, 100, Counter({"UNAVAILABLE": errors} if errors else {}),
                                        0, p99 / 2, p99, rss))
    return result


def test_the_verdict_holds_each_goal() -> None:
    steady = {"timeline": 80.0, "store": 50.0}
    assert soak((30, steady, 0), (20, steady, 0), (24, steady, 0)).passed
    # The store may grow: it keeps what the soak writes.
    assert soak((30, steady, 0), (20, steady, 0), (24, {**steady, "store": 90.0}, 0)).passed
    # Growth is measured from the end of minute 2, not from the cold start.
    assert soak((30, {**steady, "timeline": 40.0}, 0), (20, steady, 0), (24, steady, 0)).passed
    grown = soak((30, steady, 0), (20, steady, 0), (24, {**steady, "timeline": 89.0}, 0))
    assert not grown.passed and "timeline +11.3%" in format_soak(grown)
    assert not soak((30, steady, 0), (20, steady, 0), (26, steady, 0)).passed  # p99 x1.3
    assert not soak((30, steady, 0), (20, steady, 1), (24, steady, 0)).passed  # an error
    assert not soak((30, steady, 0), (20, steady, 0)).passed  # too short to judge


@pytest.mark.e2e
def test_a_short_soak_measures_every_minute_of_a_real_suite(tmp_path: Path) -> None:
    result = run_soak(minutes=3, users=600, out_dir=tmp_path, progress=False, minute_s=3.0)
    report = format_soak(result)
    assert result.capacity_per_s > 0 and result.errors == 0, report
    assert len(result.per_minute) == 3 and all(m.calls > 0 for m in result.per_minute), report
    for minute in result.per_minute:  # every process of the suite, by its own pid
        assert {"store", "post", "fanout", "timeline", "worker-0"} <= set(minute.rss_mb), report
        assert all(mb > 1 for mb in minute.rss_mb.values()), report
    saved = json.loads((tmp_path / "soak.json").read_text())
    assert saved["errors"] == 0 and len(saved["per_minute"]) == 3
