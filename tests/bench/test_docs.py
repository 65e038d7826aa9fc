"""The published prose is derived from the figures: it must follow them both ways."""

from __future__ import annotations

from typing import Any

from fanline.bench.docs import findings, headline, verdict


def strategy(key: str, wa_mean: float, wa_max: float, p50: float, p99: float, lag99: float,
             celeb: bool = True) -> dict[str, Any]:
    return {
        "strategy": key, "label": key,
        "write_amplification": {"mean": wa_mean, "max": wa_max},
        "timeline_ms": {"p50": p50, "p99": p99},
        "fanout_lag_ms": {"p99": lag99},
        "celebrity_post_lag_ms": {"max": lag99 * 2} if celeb else None,
        "timeline_ms_celebrity_followers": {"p99": p99 * 1.1} if celeb else None,
        "posts": {"by_celebrities": 2 if celeb else 0, "created": 100},
        "raw": {"writes_per_post": [1000, 1000, *([10] * 98)] if celeb else [10] * 100,
                "post_by_celebrity": [True, True, *([False] * 98)] if celeb else
                [False] * 100},
        "reads": {"partial": 3}, "not_sent": 0,
    }


def report(hybrid_p99: float, celeb: bool = True) -> dict[str, Any]:
    return {
        "graph": {"followers_max": 100_000},
        "strategies": [
            strategy("push", 29.6, 100_001, 10, 80, 4000, celeb),
            strategy("hybrid", 9.6, 90, 5, hybrid_p99, 30, celeb),
            strategy("pull", 0, 0, 300, 700, 20, celeb),
        ],
    }


def test_headline_takes_push_and_first_hybrid() -> None:
    h = headline(report(40))
    assert (h["wa_push_mean"], h["wa_hybrid_mean"], h["p99_push"], h["p99_hybrid"]) == (
        29.6, 9.6, 80, 40)


def test_verdict_follows_the_median_read() -> None:
    faster = verdict("G", report(hybrid_p99=400), engine_rate=100_000)  # p50 5 vs 10
    assert faster.endswith("hybrid wins.")
    assert "~1.00 s of one worker's time" in faster and "67.6% fewer" in faster
    assert "133.3x lower than" in faster  # fan-out lag p99 30 vs 4000 ms
    slow = report(hybrid_p99=40)
    slow["strategies"][1]["timeline_ms"]["p50"] = 15
    slower = verdict("G", slow, engine_rate=100_000)
    assert "better setting" in slower and "wins" not in slower


def test_findings_state_ratios_in_the_right_direction() -> None:
    text = " ".join(findings(report(40)))
    assert "3.1x lower than push-only" in text  # 9.6 vs 29.6 writes per post
    assert "(2.0x lower than push-only), p99 40.0 against 80.0 ms" in text  # p50 5 vs 10
    assert "celebrity fan-outs" in text
    assert "67.1%" in text  # 2000 of 2980: share of push-only writes made by the two big posts
    slow = report(160)
    slow["strategies"][1]["timeline_ms"]["p50"] = 20
    slower = " ".join(findings(slow))
    assert "(2.0x higher than push-only)" in slower and "merges the lists" in slower
    # A 100,001-write fan-out is not "too small to slow reads down".
    assert "too small" not in slower


def test_findings_leave_out_missing_celebrity_figures() -> None:
    text = " ".join(findings(report(40, celeb=False)))
    assert " - ms" not in text and "slowest celebrity post" not in text
