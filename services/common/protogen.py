"""The one command that generates the protobuf/gRPC stubs: `python -m fanline.common.protogen`.

Protos live under `protos/` with `package feed.v1`; protoc emits absolute imports
(`from feed.v1 import post_pb2`), which we rewrite so the stubs live inside our own package
(`fanline.gen.feed.v1`) instead of claiming a top-level `feed` package.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "protos"
GEN_ROOT = ROOT / "services" / "gen"
GEN_PACKAGE = "fanline.gen"

_IMPORT = re.compile(r"^from feed\.v1 import ", re.MULTILINE)


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Generate stubs for every proto into `out_root` (a `services/gen`-shaped tree)."""
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
            text = _IMPORT.sub(f"from {GEN_PACKAGE}.feed.v1 import ", src.read_text())
            dest.write_text(text)
            written.append(dest)
    for pkg in {out_root, *(p.parent for p in written)}:
        current = pkg
        while current != out_root.parent and current.is_relative_to(out_root):
            (current / "__init__.py").touch()
            current = current.parent
    return written


def main() -> int:
    files = generate(GEN_ROOT)
    print(f"generated {len(files)} files under {GEN_ROOT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
