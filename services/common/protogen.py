"""The one command that generates the protobuf/gRPC stubs: `python -m fanline.common.protogen`.

Protos live under `protos/` with `package feed.v1`; protoc emits absolute imports
(`from feed.v1 import post_pb2`), which we rewrite so the stubs live inside our own package
(`fanline.gen.feed.v1`) instead of claiming a top-level `feed` package.

The same command also refreshes the client distribution (`clients/python`, import name
`fanline_client`): its own copy of the stubs (`fanline_client._gen.feed.v1`, so it needs
nothing of the server) and of the .proto files (shipped as package data, for users who
generate stubs in other languages or want to read the API). Tests fail when either drifts.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "protos"
GEN_ROOT = ROOT / "services" / "gen"
GEN_PACKAGE = "fanline.gen"

# The client distribution's package: generated stubs under _gen/, protos under protos/.
CLIENT_PACKAGE_ROOT = ROOT / "clients" / "python" / "src" / "fanline_client"
CLIENT_GEN_DIR = "_gen"
CLIENT_GEN_PACKAGE = "fanline_client._gen"
CLIENT_PROTO_DIR = "protos"

_IMPORT = re.compile(r"^from feed\.v1 import ", re.MULTILINE)


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_root: Path, package: str = GEN_PACKAGE) -> list[Path]:
    """Generate stubs for every proto into `out_root` (a `services/gen`-shaped tree), their
    imports rewritten to `package` (the import name of `out_root`)."""
    import grpc_tools
    from grpc_tools import protoc

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    with tempfile.TemporaryDirectory() as raw:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={raw}",
            f"--pyi_out={raw}",
            f"--grpc_python_out={raw}",
            *(str(p) for p in proto_files()),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed")
        written: list[Path] = []
        for src in sorted(Path(raw).rglob("*.py*")):
            rel = src.relative_to(raw)
            dest = out_root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            text = _IMPORT.sub(f"from {package}.feed.v1 import ", src.read_text())
            dest.write_text(text)
            written.append(dest)
    for pkg in {out_root, *(p.parent for p in written)}:
        current = pkg
        while current != out_root.parent and current.is_relative_to(out_root):
            (current / "__init__.py").touch()
            current = current.parent
    return written


def copy_protos(out_root: Path) -> list[Path]:
    """Copy every .proto into `out_root`, keeping their paths (feed/v1/post.proto)."""
    written: list[Path] = []
    for src in proto_files():
        dest = out_root / src.relative_to(PROTO_ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        written.append(dest)
    return written


def generate_client(package_root: Path) -> list[Path]:
    """The generated part of the client package, written into `package_root` (a
    `fanline_client`-shaped folder): `_gen/` stubs and `protos/` copies."""
    return [*generate(package_root / CLIENT_GEN_DIR, CLIENT_GEN_PACKAGE),
            *copy_protos(package_root / CLIENT_PROTO_DIR)]


def main() -> int:
    files = generate(GEN_ROOT)
    print(f"generated {len(files)} files under {GEN_ROOT.relative_to(ROOT)}")
    # A build context without the client (the server's image) needs only the server's stubs.
    if (CLIENT_PACKAGE_ROOT.parents[1] / "pyproject.toml").is_file():
        client = generate_client(CLIENT_PACKAGE_ROOT)
        print(f"generated {len(client)} files under {CLIENT_PACKAGE_ROOT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
