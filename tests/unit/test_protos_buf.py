"""The API's hygiene, checked with buf (buf.yaml at the repo root, docs/api-releases.md).

- `buf lint` (STANDARD) passes on protos/;
- `buf breaking` (FILE) finds nothing breaking between protos/ and the last release, whose
  image is checked in as protos/releases/<tag>.binpb, so a clone without tags can compare;
- each snapshot is what its git tag's protos build to, when the tag is here;
- and the check does catch breaks: a few edits of a copy of protos/ must fail it.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sysconfig
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
RELEASES = PROTOS / "releases"
BUF_CONFIG = ROOT / "buf.yaml"

Buf = Callable[..., subprocess.CompletedProcess[str]]


def _version(snapshot: Path) -> tuple[int, ...]:
    match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", snapshot.stem)
    assert match, f"{snapshot.name}: snapshots are named after their tag, vMAJOR.MINOR.PATCH.binpb"
    return tuple(int(part) for part in match.groups())


SNAPSHOTS = sorted(RELEASES.glob("*.binpb"), key=_version)
LATEST = SNAPSHOTS[-1]


def _buf_executable() -> str:
    # buf-bin installs the Go binary itself as a script of the environment (.venv/bin/buf).
    found = shutil.which("buf", path=sysconfig.get_path("scripts")) or shutil.which("buf")
    if found is None:
        pytest.fail("buf is not installed: it comes with the dev extras (pip install -e '.[dev]')")
    return found


@pytest.fixture(scope="module")
def buf(tmp_path_factory: pytest.TempPathFactory) -> Buf:
    """Runs buf (in the repo root unless `cwd`); fails the test with buf's output unless the
    exit status is 0 (or `check=False`)."""
    executable = _buf_executable()
    env = {**os.environ, "BUF_CACHE_DIR": str(tmp_path_factory.mktemp("buf-cache"))}

    def run(*args: str, cwd: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([executable, *args], cwd=cwd, env=env, capture_output=True,
                                text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            pytest.fail(f"buf {' '.join(args)} exited with {result.returncode}:\n"
                        f"{result.stdout}{result.stderr}", pytrace=False)
        return result

    return run


def test_protos_pass_buf_lint(buf: Buf) -> None:
    buf("lint")


def test_no_breaking_change_since_the_last_release(buf: Buf) -> None:
    buf("breaking", "--against", str(LATEST.relative_to(ROOT)))


def _copy_with(tmp_path: Path, proto: str, old: str, new: str) -> Path:
    """A copy of the buf workspace (buf.yaml and the .proto files) with one edit."""
    shutil.copy(BUF_CONFIG, tmp_path / BUF_CONFIG.name)
    shutil.copytree(PROTOS, tmp_path / "protos", ignore=shutil.ignore_patterns("releases"))
    path = tmp_path / "protos" / "feed" / "v1" / proto
    text = path.read_text()
    assert text.count(old) == 1, f"{proto} no longer has {old!r}: pick another edit"
    path.write_text(text.replace(old, new))
    return tmp_path


@pytest.mark.parametrize(("proto", "old", "new", "reported"), [
    pytest.param("post.proto", "string text = 3;", "string text = 5;",
                 'Previously present field "3" with name "text" on message "Post" was deleted',
                 id="field-renumbered"),
    pytest.param("fanout.proto", "  int64 queue_reclaimed = 9;\n", "",
                 'Previously present field "9" with name "queue_reclaimed"', id="field-removed"),
    # The same bytes on the wire, but code using the field stops compiling: FILE catches it.
    pytest.param("post.proto", "string text = 3;", "string body = 3;",
                 'Field "3" on message "Post" changed name from "text" to "body"',
                 id="field-renamed"),
    pytest.param("timeline.proto",
                 "rpc GetTimeline(GetTimelineRequest) returns (GetTimelineResponse);", "",
                 'Previously present RPC "GetTimeline" on service "TimelineService" was deleted',
                 id="rpc-removed"),
])
def test_breaking_check_catches_a_break(buf: Buf, tmp_path: Path, proto: str, old: str,
                                        new: str, reported: str) -> None:
    workspace = _copy_with(tmp_path, proto, old, new)
    result = buf("breaking", "--against", str(LATEST), cwd=workspace, check=False)
    # 100: buf ran and found breaking changes (anything else would be buf failing to run).
    assert result.returncode == 100, result.stdout + result.stderr
    assert reported in result.stdout, result.stdout


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=False)


def _api(image: bytes) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """The files of a buf image by name, as descriptors: source info (comments, positions) and
    buf's own extensions left out, so buf versions may differ between the two builds."""
    files = descriptor_pb2.FileDescriptorSet.FromString(image)
    files.DiscardUnknownFields()
    out: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for file in files.file:
        file.ClearField("source_code_info")
        out[file.name] = file
    return out


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=[s.stem for s in SNAPSHOTS])
def test_snapshot_is_the_tagged_release(buf: Buf, tmp_path: Path, snapshot: Path) -> None:
    tag = snapshot.stem
    if shutil.which("git") is None or _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout")
    if _git("rev-parse", "-q", "--verify", f"refs/tags/{tag}").returncode != 0:
        pytest.skip(f"tag {tag} is not in this clone (git fetch --tags to check the snapshot)")
    archive = _git("archive", "--format=tar", tag, "protos")
    assert archive.returncode == 0, archive.stderr.decode()
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tmp_path, filter="data")
    built = tmp_path / "tagged.binpb"
    buf("build", str(tmp_path / "protos"), "-o", str(built))
    tagged, checked_in = _api(built.read_bytes()), _api(snapshot.read_bytes())
    assert sorted(checked_in) == sorted(tagged), f"{snapshot.name} has other files than {tag}"
    differ = [name for name in tagged if tagged[name] != checked_in[name]]
    assert not differ, (f"{snapshot.relative_to(ROOT)} is not what tag {tag} builds to "
                        f"({', '.join(differ)}): rebuild it (docs/api-releases.md)")
