from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from fanline.launcher import Suite
from tests.conftest import suite_kwargs
from tests.e2e.helpers import Clients

# A low threshold so a handful of follows makes a celebrity.
THRESHOLD = 5


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory, suite_store_mode: str) -> Iterator[Suite]:
    """The module's suite, on a single node or on a 3-master cluster (each module runs in
    both)."""
    logs = tmp_path_factory.mktemp("suite-logs")
    # With auth on, as in production: the helpers act as the user each call names.
    env = {"FANLINE_CELEBRITY_THRESHOLD": str(THRESHOLD), "FANLINE_AUTH": "jwt",
           "FANLINE_JWT_SECRETS": "e2e-suite-jwt-secret-0123456789abcdef",
           "FANLINE_PAGE_TOKEN_SECRETS": "e2e-suite-page-secret-0123456789abcdef"}
    with Suite(workers=1, extra_env=env, log_dir=str(logs),
               **suite_kwargs(suite_store_mode)) as running:
        yield running


@pytest.fixture(scope="module")
def api(suite: Suite) -> Clients:
    return Clients.of(suite)


@pytest.fixture
def uid(request: pytest.FixtureRequest) -> str:
    """A prefix unique to the test, so tests sharing a suite never share users."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[-40:]
