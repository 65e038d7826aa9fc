"""`fanline bench chaos`: the kill plan (pure), and a short run with real SIGKILLs."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from fanline.bench.chaos import MAX_KILLS_PER_WINDOW, VICTIMS, WINDOW_S, format_chaos, kill_plan, run_chaos


@pytest.mark.parametrize("seed", range(5))
def test_kill_plan_is_seeded_spaced_and_never_a_crash_loop(seed: int) -> None:
    plan = kill_plan(600, seed, (1.0, 2.0))
    assert plan == kill_plan(600, seed, (1.0, 2.0))
    times = [t for t, _ in plan]
    assert times == sorted(times) and all(0 < t < 600 for t in times)
    # At least the shorter pause apart (longer where every victim had its share of kills).
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))
    assert set(v for _, v in plan) == set(VICTIMS)
    for at, _ in plan:  # never more kills of one victim in a window than the limit
        window = Counter(v for t, v in plan if at <= t < at + WINDOW_S)
        assert max(window.values()) <= MAX_KILLS_PER_WINDOW


@pytest.mark.e2e
def test_a_short_chaos_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    # Six kills in 30 s; seed 6's plan: both workers, post, fan-out and the store.
    result = run_chaos(minutes=0.5, post_rate=6, read_rate=20, seed=6, out_dir=tmp_path,
                       progress=False, every_s=(3.0, 6.0))
    report = format_chaos(result)
    victims = {k.victim for k in result.kills}
    assert "store" in victims and victims & {"worker-0", "worker-1"}, report
    assert all(k.back_s is not None for k in result.kills), report
    assert result.posts_acked > 60 and result.expected_entries > 1000, report
    assert result.passed, report
    assert json.loads((tmp_path / "chaos.json").read_text())["passed"] is True
