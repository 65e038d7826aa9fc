"""The client distribution (clients/python, `fanline-client`) as a user gets it: its wheel
holds the client, its own stubs, the .proto files and the typing marker, depends on grpcio and
protobuf only, and its own test suite passes in a fresh virtualenv that has nothing but that
wheel and pytest, against a real suite with authentication and mutual TLS on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from fanline.common import protogen
from fanline.common.auth import Keys
from fanline.common.tls import make_dev_certs
from fanline.launcher import Suite
from tests.client.wheels import CLIENT_ROOT, client_wheel, wheel_files, wheel_text

SECRET = "client-suite-jwt-secret-0123456789abcdef"
PAGE_SECRET = "client-suite-page-secret-0123456789abcdef"
ALICE, BOB = "client-alice", "client-bob"
# The live tests of the client's suite: they must run (not be skipped for want of a suite).
LIVE_TESTS = {
    "test_create_is_idempotent_and_posts_read_back",
    "test_a_follower_reads_the_post_then_it_is_deleted",
    "test_bad_calls_raise_invalid_argument",
    "test_missing_or_wrong_token_is_unauthenticated",
    "test_async_client_core_flow",
    "test_a_watcher_sees_a_new_post_of_a_followed_author",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return client_wheel(tmp_path_factory.mktemp("client-wheel"))


def test_client_wheel_holds_the_client_its_stubs_and_protos(wheel: Path) -> None:
    files = wheel_files(wheel)
    version = re.search(r'__version__ = "([^"]+)"',
                        (CLIENT_ROOT / "src" / "fanline_client" / "_version.py").read_text())
    assert version and wheel.name == f"fanline_client-{version.group(1)}-py3-none-any.whl"
    assert {n.split("/")[0] for n in files} == {"fanline_client",
                                                f"fanline_client-{version.group(1)}.dist-info"}
    assert "fanline_client/py.typed" in files
    protos = {f"fanline_client/protos/{p.relative_to(protogen.PROTO_ROOT).as_posix()}"
              for p in protogen.proto_files()}
    assert protos <= files
    stubs = {f"fanline_client/_gen/feed/v1/{p.stem}_pb2{suffix}"
             for p in protogen.proto_files() for suffix in (".py", ".pyi")}
    assert stubs <= files
    metadata = wheel_text(wheel, ".dist-info/METADATA")
    assert "Name: fanline-client\n" in metadata
    requires = {re.split(r"[<>=!~ ;]", line.removeprefix("Requires-Dist: "))[0]
                for line in metadata.splitlines() if line.startswith("Requires-Dist: ")}
    assert requires == {"grpcio", "protobuf"}


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would leak the main venv or its settings into
    the client's venv (PYTHONPATH, VIRTUAL_ENV, FANLINE_*, PYTEST_ADDOPTS)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "FANLINE_", "PYTEST_"))}
    return {**env, "PYTHONDONTWRITEBYTECODE": "1", **extra}


@pytest.mark.e2e
def test_client_tests_pass_in_a_venv_with_only_the_wheel(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    # No pip inside (ensurepip is most of venv's time): this process's pip installs into it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    install = subprocess.Popen(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", str(wheel),
         "pytest"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=_clean_env())
    certs = make_dev_certs(tmp_path / "certs")
    env = {"FANLINE_AUTH": "jwt", "FANLINE_JWT_SECRETS": SECRET,
           "FANLINE_PAGE_TOKEN_SECRETS": PAGE_SECRET,
           "FANLINE_TLS_CERT": str(certs["tls.crt"]), "FANLINE_TLS_KEY": str(certs["tls.key"]),
           "FANLINE_TLS_CA": str(certs["ca.crt"])}
    logs = tmp_path / "logs"
    logs.mkdir()
    # The suite starts while pip installs.
    with Suite(workers=1, extra_env=env, log_dir=str(logs)) as suite:
        output, _ = install.communicate(timeout=300)
        assert install.returncode == 0, f"installing the client wheel failed:\n{output}"

        probe = subprocess.run(
            [str(python), "-c", "import fanline_client, sys; print(fanline_client.__file__); "
             "import importlib.util as u; sys.exit(u.find_spec('fanline') is not None)"],
            capture_output=True, text=True, cwd=tmp_path, env=_clean_env(), timeout=60)
        assert probe.returncode == 0, f"the client venv can import the server:\n{probe}"
        assert probe.stdout.startswith(str(venv)), probe.stdout

        keys = Keys([SECRET])
        report = tmp_path / "client-tests.xml"
        run = subprocess.run(
            [str(venv / "bin" / "pytest"), "-q", "-rs", "-p", "no:cacheprovider",
             f"--junitxml={report}", str(CLIENT_ROOT / "tests")],
            capture_output=True, text=True, cwd=tmp_path, timeout=300,
            env=_clean_env(
                FANLINE_TEST_POST=suite.post_addr, FANLINE_TEST_FANOUT=suite.fanout_addr,
                FANLINE_TEST_TIMELINE=suite.timeline_addr,
                FANLINE_TEST_ALICE=ALICE, FANLINE_TEST_BOB=BOB,
                FANLINE_TEST_TOKEN_ALICE=keys.mint(ALICE, ttl_s=600),
                FANLINE_TEST_TOKEN_BOB=keys.mint(BOB, ttl_s=600),
                FANLINE_TEST_CA=str(certs["ca.crt"]), FANLINE_TEST_CERT=str(certs["tls.crt"]),
                FANLINE_TEST_KEY=str(certs["tls.key"])))
    assert run.returncode == 0, f"the client's tests failed:\n{run.stdout}\n{run.stderr}"

    outcomes: dict[str, str] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        skipped = case.find("skipped")
        outcomes[case.get("name", "")] = ("passed" if skipped is None
                                          else f"skipped: {skipped.get('message', '')}")
    assert {name: outcomes.get(name) for name in LIVE_TESTS} == dict.fromkeys(LIVE_TESTS, "passed")
    others = {n: o for n, o in outcomes.items() if o != "passed"}
    assert not others, others
