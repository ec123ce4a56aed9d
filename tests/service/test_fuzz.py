"""Schemathesis against the service's own OpenAPI schema, served by a real uvicorn subprocess.

Every operation gets a bounded number of generated cases (positive and negative); each answer
must not be a 5xx, must have a documented status and content type, and must match the response
schema. The robustness benchmark runs the same checks with a few hundred cases per operation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from uservec.bench.server import ServerProcess
from uservec.service.app import create_app
from uservec.service.settings import Settings

schemathesis = pytest.importorskip("schemathesis")  # dev extra; skipped where not installed

#: checks every answer must pass (no positive/negative acceptance checks: the service's limits
#: come from settings, so schema-valid bodies may still be refused, e.g. > max_users)
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance")


@pytest.fixture(scope="module")
def server(main_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    with ServerProcess(main_bundle, log, core=None, max_batch_wait_ms=0.5) as running:
        yield running


# the schema the server publishes, built without starting anything (no bundle needed)
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_within_its_schema(case: Any, server: ServerProcess) -> None:
    checks = [getattr(schemathesis.checks, name) for name in CHECKS]
    case.call_and_validate(base_url=f"http://127.0.0.1:{server.port}", checks=checks,
                           timeout=30)
