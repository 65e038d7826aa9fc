"""The benchmark charts stay readable on a page: one column, at most 1,000 pixels wide."""

from __future__ import annotations

import struct
from pathlib import Path

from fanline.bench.report import CHART_WIDTH_PX, draw_charts


def test_charts_are_one_readable_column(tmp_path: Path) -> None:
    def strategy(name: str, label: str, base: float) -> dict:
        return {"strategy": name, "label": label,
                "raw": {"timeline_ms": [base, base * 2, base * 3],
                        "timeline_celebrity_follower": [True, False, False],
                        "lag_ms": [1.0, 5.0, 20.0]},
                "write_amplification": {"mean": base, "p99": base * 10, "max": base * 20}}

    report = {"graph": {"source": "synthetic(users=20, " + "x=1, " * 40 + ")"},
              "strategies": [strategy("push", "push-only", 2.0),
                             strategy("hybrid", "hybrid (T=10)", 3.0),
                             strategy("pull", "pull-only", 9.0)]}
    path = draw_charts(report, tmp_path / "chart.png")
    assert path is not None
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    assert width == CHART_WIDTH_PX <= 1000 and height > width  # three panels, stacked
