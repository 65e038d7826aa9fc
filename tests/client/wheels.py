"""Building the repo's two distributions as wheels, for the packaging tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ROOT = ROOT / "clients" / "python"

# Never part of a distribution: caches, build output, and bench/out (benchmark results).
_JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "dist", "*.egg-info", "out")


def build_wheel(source: Path, parts: Iterable[str], work: Path) -> Path:
    """The wheel of the distribution at `source`, built from a copy of `parts` of it (files or
    folders) in `work`: setuptools builds in the source tree, so a stale build/ folder there
    (or another build running at the same time) would otherwise leak into the wheel."""
    tree = work / "src"
    for part in parts:
        src = source / part
        if src.is_dir():
            shutil.copytree(src, tree / part, ignore=_JUNK)
        else:
            (tree / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tree / part)
    out = work / "wheel"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "--no-build-isolation", str(tree), "-w", str(out)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, f"pip wheel {source} failed:\n{built.stdout}\n{built.stderr}"
    (wheel,) = out.glob("*.whl")
    return wheel


def server_wheel(work: Path) -> Path:
    return build_wheel(ROOT, ["pyproject.toml", "README.md", "services", "bench"], work)


def client_wheel(work: Path) -> Path:
    return build_wheel(CLIENT_ROOT, ["pyproject.toml", "README.md", "src"], work)


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def wheel_text(wheel: Path, suffix: str) -> str:
    """The text of the one file in the wheel whose name ends with `suffix`."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(suffix)]
        return archive.read(name).decode()
