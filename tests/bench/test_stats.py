"""Percentiles and summaries on data whose answers are known."""

from __future__ import annotations

import pytest

from fanline.bench.run import peak_rate
from fanline.bench.stats import percentile, rate, summarize


def test_percentiles_of_1_to_100() -> None:
    data = list(range(1, 101))
    # Linear interpolation between closest ranks (numpy's default): rank = (n-1) q / 100.
    assert percentile(data, 0) == 1
    assert percentile(data, 50) == pytest.approx(50.5)
    assert percentile(data, 95) == pytest.approx(95.05)
    assert percentile(data, 99) == pytest.approx(99.01)
    assert percentile(data, 100) == 100


def test_percentile_ignores_input_order_and_interpolates() -> None:
    assert percentile([4, 1, 3, 2], 50) == pytest.approx(2.5)
    assert percentile([10, 0], 25) == pytest.approx(2.5)
    assert percentile([7], 99) == 7


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1, 2], 101)


def test_summary_of_a_skewed_sample() -> None:
    data = [1.0] * 98 + [100.0, 1000.0]
    s = summarize(data)
    assert s is not None
    assert (s.count, s.p50, s.max) == (100, 1.0, 1000.0)
    assert s.mean == pytest.approx(11.98)
    assert s.p99 == pytest.approx(100 + 0.01 * 900)
    assert summarize([]) is None


def test_rate_and_peak_rate() -> None:
    assert rate(10, 0) == 0.0
    assert rate(50, 2) == 25
    # 0.25 s samples: quiet, then 1000 writes in one second, then quiet.
    writes = [0, 0, 0, 0, 250, 500, 750, 1000, 1000, 1000, 1000]
    samples = [(i * 0.25, w, 0, 0) for i, w in enumerate(writes)]
    assert peak_rate(samples) == pytest.approx(1000)
    assert peak_rate(samples[:2]) == 0.0
