"""The `fanline` command line: its version, and arguments refused with a clear usage error."""

from __future__ import annotations

import argparse

import pytest

from fanline.cli import build_parser, version


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
    (["bench", "--users", "1"], "--users: 1 is below the minimum, 2"),
    (["bench", "--celebrity-reach", "1.5"], "--celebrity-reach: 1.5 is out of range"),
    (["bench", "soak", "--minutes", "2"], "--minutes: 2 is below the minimum, 3"),
    (["bench", "soak", "--load", "0"], "--load: 0 is out of range (must be above 0 up to 1)"),
    (["bench", "chaos", "--post-rate", "nan"], "--post-rate: nan is out of range"),
    (["bench", "engine", "--pipeline", "0"], "--pipeline: 0 is below the minimum, 1"),
    (["plan", "--peak-factor", "0.5"], "--peak-factor: 0.5 is out of range (must be from 1)"),
    (["plan", "--workers", "-1"], "--workers: -1 is below the minimum, 1"),
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


def commands(parser: argparse.ArgumentParser, path: str = "fanline"
             ) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += commands(sub, f"{path} {name}")
    return found


def test_every_command_says_what_it_does_and_every_option_its_meaning_and_default() -> None:
    every = commands(build_parser())
    assert len(every) >= 15  # fanline, its commands, the bench subcommands
    for path, parser in every:
        assert parser.description, f"{path}: no description"
        text = parser.format_help()
        options = text[text.index("options:"):]  # below the usage line
        for action in parser._actions:
            if not action.option_strings or action.dest == "help" or \
                    isinstance(action, argparse._VersionAction):
                continue
            assert action.help, f"{path} {action.option_strings[0]}: no help"
            if action.default not in (None, False):
                entry = options[options.index(action.option_strings[-1]):]
                assert "default" in entry[:400], f"{path} {action.option_strings[0]}: no default"
