"""The checked-in stubs must be exactly what `make protos` generates from protos/."""

from pathlib import Path

from fanline.common import protogen


def test_generated_stubs_match_protos(tmp_path: Path) -> None:
    protogen.generate(tmp_path)
    fresh = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    checked_in = {
        p.relative_to(protogen.GEN_ROOT): p.read_text()
        for p in protogen.GEN_ROOT.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert fresh.keys() == checked_in.keys(), "run `make protos`"
    stale = [str(k) for k in fresh if fresh[k] != checked_in[k]]
    assert not stale, f"stubs drifted from protos/ (run `make protos`): {stale}"
