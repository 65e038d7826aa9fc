from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.telemetry.otlp import Collector, start_receiver


@pytest.fixture
def collector() -> Iterator[Collector]:
    """An OTLP/gRPC receiver on a free port; point OTEL_EXPORTER_OTLP_ENDPOINT at .endpoint."""
    received, server = start_receiver()
    yield received
    server.stop(0).wait()
