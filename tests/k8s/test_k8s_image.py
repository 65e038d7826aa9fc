"""The image's command line and the Deployments' args start real roles of the real CLI.

No container engine runs in CI, so the Dockerfile is checked as text: its final stage's
ENTRYPOINT is the installed console script, and ENTRYPOINT + CMD, ENTRYPOINT + each
Deployment's args, and each command in the docs parse with `fanline.cli.build_parser()`.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Rendered

ROOT = Path(__file__).resolve().parents[2]
ROLES = {"post", "fanout", "worker", "timeline"}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        keyword, _, args = text.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions(ROOT / "Dockerfile")
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def exec_form(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    (args,) = [a for k, a in stage if k == keyword]
    value = json.loads(args)  # exec form: signals reach the server, not a shell
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def parse_with_cli(argv: list[str]) -> None:
    """Fail the test (instead of exiting) if the real CLI parser rejects argv."""
    from fanline.cli import build_parser

    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"`fanline {' '.join(argv)}` is rejected by the CLI (exit {exc.code})")


def test_entrypoint_is_the_installed_console_script() -> None:
    stage = final_stage()
    entrypoint = exec_form(stage, "ENTRYPOINT")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["fanline"]
    assert entrypoint[0] in scripts


def test_base_image_matches_the_supported_python() -> None:
    (base,) = re.findall(r"ARG PYTHON_IMAGE=(\S+)", (ROOT / "Dockerfile").read_text())
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_image_runs_as_the_uid_the_manifests_expect() -> None:
    (user,) = [a for k, a in final_stage() if k == "USER"]
    assert user == "10001:10001"  # numeric, so runAsNonRoot can be verified


def test_image_exposes_every_container_port(overlay: Rendered) -> None:
    exposed = {int(p) for k, a in final_stage() if k == "EXPOSE" for p in a.split()}
    for _, container, role in overlay.fanline_containers():
        assert {p["containerPort"] for p in container["ports"]} <= exposed, role


def test_default_command_starts_a_role() -> None:
    stage = final_stage()
    cmd = exec_form(stage, "CMD")
    assert cmd[:1] == ["serve"] and cmd[1] in ROLES
    parse_with_cli(cmd)


def test_every_deployment_args_start_a_role(overlay: Rendered) -> None:
    for _, container, role in overlay.fanline_containers():
        assert role in ROLES
        parse_with_cli(container["args"])


def test_documented_role_commands_parse() -> None:
    docs = (ROOT / "docs" / "deploy.md").read_text()
    documented = set(re.findall(r"fanline serve (\w+)", docs))
    assert documented == ROLES
    for role in sorted(documented):
        parse_with_cli(["serve", role])


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins, `!` re-includes; parents count too."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern[1:] if negate else pattern
        glob = glob.rstrip("/")
        # `**/` may match no directory at all.
        globs = {glob, glob.replace("**/", "")}
        if any(fnmatch.fnmatchcase(c, g) for c in candidates for g in globs):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_build_inputs_and_drops_local_state() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = [
        "pyproject.toml",
        "README.md",
        "services/cli.py",
        "services/common/protogen.py",
        "services/gen/__init__.py",
        "protos/feed/v1/post.proto",
    ]
    for path in needed:
        assert not dockerignored(path, patterns), f"{path} would be missing from the build"
    for path in [
        ".venv/bin/python",
        ".git/config",
        "tests/k8s/conftest.py",
        "services/gen/feed/v1/post_pb2.py",
        "services/__pycache__/cli.cpython-311.pyc",
    ]:
        assert dockerignored(path, patterns), f"{path} would be sent to the build"
