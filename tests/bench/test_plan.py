"""`fanline plan` against the textbook worked example, and its threshold logic."""

from __future__ import annotations

import math

import pytest

from fanline.bench.plan import BoundedPareto, Model, Traffic, plan
from fanline.cli import main

WORKED = Traffic(posts_per_day=1_000_000, mean_followers=500, bytes_per_entry=150,
                 replication=3, peak_factor=5)


def test_worked_example_figures() -> None:
    r = plan(WORKED, Model())
    assert r.inserts_per_day == 500_000_000
    assert r.inserts_per_s == pytest.approx(5_787, abs=1)  # "about 5,800 a second"
    assert r.inserts_per_s_peak == pytest.approx(28_935, abs=1)  # "about 29,000 at peak"
    assert r.storage_per_day_bytes == 75e9
    assert r.storage_per_day_replicated_bytes == 225e9
    assert r.storage_per_year_replicated_bytes == pytest.approx(82.1e12, rel=1e-3)


def test_plan_command_prints_the_worked_example(capsys) -> None:
    assert main(["plan", "--posts-per-day", "1000000", "--mean-followers", "500",
                 "--bytes-per-entry", "150", "--replication", "3", "--peak-factor", "5"]) == 0
    out = capsys.readouterr().out
    for figure in ("500,000,000", "~5,800", "~29,000", "75.0 GB", "225.0 GB", "82.1 TB",
                   "Recommended threshold"):
        assert figure in out


def test_follower_distribution_has_the_requested_mean() -> None:
    d = BoundedPareto(mean=500, alpha=2.0, high=50_000_000)
    assert d.mean == pytest.approx(500, rel=1e-6)
    assert d.tail(d.low) == pytest.approx(1.0)
    assert d.partial_moment(1, d.low) / d.mean == pytest.approx(1.0)
    assert 0 < d.tail(10_000) < d.tail(1_000) < 1


def test_read_heavy_traffic_pushes_up_to_the_lag_target() -> None:
    r = plan(WORKED, Model(lag_target_s=5, worker_rate=40_000))
    rec = r.recommended
    assert rec is not None and r.push_all_cost < r.pull_all_cost
    assert rec.meets_lag and rec.meets_reads
    # The next larger candidate would break the lag target: this is the largest that fits.
    larger = [c for c in r.candidates if c.threshold > rec.threshold]
    assert not larger[0].meets_lag
    # A faster fan-out engine lets the same traffic push to bigger accounts.
    faster = plan(WORKED, Model(lag_target_s=5, worker_rate=400_000)).recommended
    assert faster is not None and faster.threshold > rec.threshold


def test_write_heavy_traffic_pulls_down_to_the_read_budget() -> None:
    traffic = Traffic(posts_per_day=1_000_000, mean_followers=500, reads_per_day=1_000_000,
                      followees_per_read=50)
    r = plan(traffic, Model())
    rec = r.recommended
    assert rec is not None and r.push_all_cost > r.pull_all_cost
    smaller = [c for c in r.candidates if c.threshold < rec.threshold]
    assert smaller and not smaller[-1].meets_reads
    assert not math.isinf(rec.threshold)
    assert rec.inserts_per_day < r.inserts_per_day


def test_plan_json_has_no_infinity(capsys) -> None:
    assert main(["plan", "--json"]) == 0
    out = capsys.readouterr().out
    assert "Infinity" not in out and '"threshold": null' in out
