"""The checked-in stubs must be exactly what `make protos` generates from protos/: the
server's (services/gen) and the client distribution's own copy (stubs and .proto files in
clients/python/src/fanline_client)."""

import re
import tomllib
from pathlib import Path

from fanline.common import protogen


def files_under(root: Path) -> dict[Path, str]:
    return {p.relative_to(root): p.read_text() for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def assert_same(fresh: dict[Path, str], checked_in: dict[Path, str], what: str) -> None:
    assert fresh.keys() == checked_in.keys(), f"{what}: run `make protos`"
    stale = [str(k) for k in fresh if fresh[k] != checked_in[k]]
    assert not stale, f"{what} drifted from protos/ (run `make protos`): {stale}"


def test_generated_stubs_match_protos(tmp_path: Path) -> None:
    protogen.generate(tmp_path)
    assert_same(files_under(tmp_path), files_under(protogen.GEN_ROOT), "server stubs")


def test_client_stubs_and_protos_match_protos(tmp_path: Path) -> None:
    protogen.generate_client(tmp_path)
    checked_in = {
        rel: text for part in (protogen.CLIENT_GEN_DIR, protogen.CLIENT_PROTO_DIR)
        for rel, text in ((Path(part) / r, t) for r, t in
                          files_under(protogen.CLIENT_PACKAGE_ROOT / part).items())
    }
    assert_same(files_under(tmp_path), checked_in, "client stubs and protos")
    assert "fanline.gen" not in "".join(checked_in.values()), "the client must not import the server"


def test_client_requires_the_runtimes_its_stubs_were_generated_for() -> None:
    """protoc's gencode refuses an older protobuf runtime, gRPC's an older grpcio: the client's
    dependency floors must be at least the generator's versions."""
    gen = protogen.CLIENT_PACKAGE_ROOT / protogen.CLIENT_GEN_DIR / "feed" / "v1"
    grpc_version = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'",
                             (gen / "post_pb2_grpc.py").read_text())
    protobuf_version = re.search(r"# Protobuf Python Version: ([\d.]+)", (gen / "post_pb2.py").read_text())
    assert grpc_version and protobuf_version
    project = tomllib.loads((protogen.ROOT / "clients" / "python" / "pyproject.toml").read_text())
    floors = dict(re.fullmatch(r"([\w-]+)>=([\d.]+)(?:,.*)?", d).groups()  # type: ignore[union-attr]
                  for d in project["project"]["dependencies"])
    assert set(floors) == {"grpcio", "protobuf"}, "the client depends on nothing else"

    def version(text: str) -> tuple[int, ...]:
        return tuple(int(x) for x in text.split("."))

    assert version(floors["grpcio"]) >= version(grpc_version.group(1))
    assert version(floors["protobuf"]) >= version(protobuf_version.group(1))
