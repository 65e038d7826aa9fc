"""The server distribution as pip builds it: one top-level package, `fanline`, holding every
module of services/ and bench/ under its mapped name, and the `fanline` command.

The package list in pyproject.toml ([tool.setuptools] packages) is written by hand, so a new
subpackage that is not added there would be silently missing from the wheel: this test says
which."""

from __future__ import annotations

from pathlib import Path

from tests.client.wheels import ROOT, server_wheel, wheel_files, wheel_text

# services/ is installed as `fanline`, bench/ as `fanline.bench` ([tool.setuptools] package-dir).
MAPPED = {"services": "fanline", "bench": "fanline/bench"}


def modules_in_repo() -> set[str]:
    out: set[str] = set()
    for folder, installed in MAPPED.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder)
            if "__pycache__" in rel.parts or rel.parts[0] == "out":  # bench/out: results
                continue
            out.add(f"{installed}/{rel.as_posix()}")
    return out


def test_server_wheel_is_one_package_with_every_module(tmp_path: Path) -> None:
    wheel = server_wheel(tmp_path)
    files = wheel_files(wheel)
    top_level = {name.split("/")[0] for name in files if ".dist-info/" not in name}
    assert top_level == {"fanline"}, "the wheel must claim no generic top-level names"
    missing = sorted(modules_in_repo() - files)
    assert not missing, (f"not in the wheel (add their packages to [tool.setuptools] packages in "
                         f"pyproject.toml): {missing}")
    entry_points = wheel_text(wheel, ".dist-info/entry_points.txt")
    assert "[console_scripts]\nfanline = fanline.cli:main" in entry_points
