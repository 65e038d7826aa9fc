from fanline.fanout.policy import Mode, active_since, classify, demote_mark


def test_promotes_at_threshold() -> None:
    assert classify(9_999, Mode.PUSH, 10_000, 0.8) is Mode.PUSH
    assert classify(10_000, Mode.PUSH, 10_000, 0.8) is Mode.PULL


def test_demotes_only_below_the_lower_mark() -> None:
    assert demote_mark(10_000, 0.8) == 8_000
    assert classify(8_000, Mode.PULL, 10_000, 0.8) is Mode.PULL
    assert classify(7_999, Mode.PULL, 10_000, 0.8) is Mode.PUSH


def test_push_author_between_marks_stays_push() -> None:
    assert classify(9_000, Mode.PUSH, 10_000, 0.8) is Mode.PUSH


def test_threshold_zero_makes_everyone_pull() -> None:
    assert classify(0, Mode.PUSH, 0, 0.8) is Mode.PULL


def test_active_since() -> None:
    assert active_since(1_000_000.0, 1) == 1_000_000 - 86_400
