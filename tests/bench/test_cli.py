"""Argument handling of `fanline bench` (no suite started)."""

from __future__ import annotations

import pytest

from fanline.bench.cli import REAL_GRAPH_THRESHOLD, SYNTHETIC_THRESHOLD, config_from_args
from fanline.bench.run import expand_strategies
from fanline.cli import build_parser


def config(*argv: str):
    return config_from_args(build_parser().parse_args(["bench", *argv]))


def test_default_thresholds_depend_on_the_graph() -> None:
    assert config().threshold == SYNTHETIC_THRESHOLD
    assert config("--graph", "x.txt.gz").threshold == REAL_GRAPH_THRESHOLD


def test_several_thresholds_make_several_hybrid_runs() -> None:
    c = config("--threshold", "100,500", "--strategies", "push,hybrid,pull")
    runs = expand_strategies(c)
    assert [(s.key, s.threshold) for s in runs] == [
        ("push", 10**12), ("hybrid", 100), ("hybrid-500", 500), ("pull", 0)]
    assert runs[2].label == "hybrid (T=500)"


@pytest.mark.parametrize("bad", ["abc", "-5", ","])
def test_bad_thresholds_are_refused(bad: str) -> None:
    with pytest.raises(SystemExit):
        config("--threshold", bad)


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(SystemExit):
        config("--strategies", "push,fanout")


def test_subcommands_set_their_own_handler() -> None:
    parser = build_parser()
    assert parser.parse_args(["bench", "engine"]).func.__name__ == "cmd_engine"
    assert parser.parse_args(["bench", "reads"]).func.__name__ == "cmd_reads"
    assert parser.parse_args(["bench", "--duration", "5"]).func.__name__ == "cmd_bench"
    assert parser.parse_args(["plan"]).func.__name__ == "cmd_plan"
