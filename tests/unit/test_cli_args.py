"""The `fanline` command line: its version, and arguments refused with a clear usage error."""

from __future__ import annotations

import pytest

from services.cli import build_parser, version


def test_version_is_the_installed_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"fanline {version()}" != "fanline unknown"


@pytest.mark.parametrize(("argv", "complaint"), [
    (["up", "--workers", "-2"], "--workers: -2 is below the minimum, 0"),
    (["up", "--cluster", "three"], "--cluster: 'three' is not a whole number"),
    (["up", "--replicas", "-1"], "--replicas: -1 is below the minimum, 0"),
    (["token", "alice", "--ttl", "0"], "--ttl: 0 is below the minimum, 1"),
    (["serve", "gateway"], "invalid choice: 'gateway'"),
])
def test_bad_arguments_are_usage_errors(argv: list[str], complaint: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(argv)
    assert done.value.code == 2
    assert complaint in capsys.readouterr().err


def test_good_arguments_parse() -> None:
    args = build_parser().parse_args(["up", "--workers", "0", "--cluster", "3", "--replicas", "1"])
    assert (args.workers, args.cluster, args.replicas) == (0, 3, 1)
