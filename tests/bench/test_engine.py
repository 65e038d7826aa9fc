"""The engine micro-benchmark: output parsing, and a tiny run without redis-benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fanline.bench.engine import format_engine, parse_rps, redis_benchmark_commands, run_engine

QUIET_OUTPUT = ("ZADD: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\r"
                "ZADD: 706713.06 requests per second, p50=0.799 msec                    \n")


def test_parse_rps_reads_the_final_figure() -> None:
    assert parse_rps(QUIET_OUTPUT.replace("\r", "\n")) == pytest.approx(706713.06)
    with pytest.raises(ValueError):
        parse_rps("ERR unknown command")


def test_redis_benchmark_commands_cover_one_key_and_many_keys() -> None:
    one, many = redis_benchmark_commands(6399, 100_000, 1_000_000, 32)
    assert one[:1] == ["redis-benchmark"] and one[-2:] == ["-t", "zadd"]
    assert ["-P", "32"] == one[5:7] and "-q" in one
    assert many[many.index("-r") + 1] == "100000"
    assert many[-4:] == ["ZADD", "bench:inbox:__rand_int__", "__rand_int__",
                         "post:__rand_int__"]


def test_redis_benchmark_commands_in_cluster_mode_tag_their_keys() -> None:
    one, many = redis_benchmark_commands(6399, 1000, 10_000, 32, cluster=True)
    assert "--cluster" in one and "--cluster" in many
    assert "bench:{tag}:inbox:__rand_int__" in many  # routed to each master's own slots


@pytest.mark.e2e
def test_engine_run_with_the_python_baseline(tmp_path: Path) -> None:
    result = run_engine(followers=3000, repeats=2, batch_size=500, requests=5000,
                        out_dir=tmp_path, progress=False, force_python_baseline=True)
    assert result.baseline_tool == "python-pipeline"
    assert "understates" in result.baseline_note
    assert len(result.worker_rates) == 2 and min(result.worker_rates) > 0
    assert result.zadd_rate > 0 and 0 < result.ratio
    saved = json.loads((tmp_path / "engine.json").read_text())
    assert saved["ratio"] == pytest.approx(result.ratio)
    text = format_engine(result)
    assert "ratio worker / ZADD" in text and "Python" in text
