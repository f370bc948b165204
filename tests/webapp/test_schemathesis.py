"""Schemathesis against the app in-process: every operation of the OpenAPI schema gets generated requests, valid
and invalid (positive and negative modes), and must answer with no server error and a response its schema
documents. The bounded run fits CI (tens of examples per operation, a fixed seed, no shrinking); the `slow` one
runs many more. Both drive the ASGI app directly (no socket) with the tests' fake robot session."""

from __future__ import annotations

import pytest
import schemathesis
from auth_client import bearer
from episode_factory import record_episode
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import response_schema_conformance

CHECKS = [not_a_server_error, response_schema_conformance]
# POST /api/models/import takes the archive itself as an application/gzip body: sent as raw bytes, as for
# application/octet-stream (schemathesis has no serializer of its own for the type).
schemathesis.serializer.alias("application/gzip", "application/octet-stream")


def _run_settings(max_examples: int) -> hypothesis_settings:
    """Deterministic (derandomize: the same examples on every run) and bounded: no shrinking, no example database,
    no deadline (a loaded 2-core machine must not fail a test by being slow)."""
    return hypothesis_settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def auth_headers(app) -> dict[str, str]:
    """What each generated request carries to be signed in: a fresh admin API token (an admin may call every
    operation, so the run covers the ones behind the role checks; fresh, because a generated DELETE
    /api/auth/tokens/{id} may revoke an earlier one)."""
    return bearer(app, "alice", "admin")


@pytest.fixture
def api_schema(app, robot, store):
    """The schema of an app with two recorded episodes, so generated ids 1 and 2 reach the real routes; the admin
    holds the control lease, so the robot commands run too (until a generated lease break ends it)."""
    for _ in range(2):
        record_episode(store)
    robot.acquire_lease("schemathesis", "alice")
    yield schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan (the fake loop)
    asgi.shutdown_lifespans()  # schemathesis keeps a started app running until exit otherwise


def _failures(schema, app, max_examples: int) -> dict[str, str]:
    """{operation: first failure} over every operation of the schema.

    One loop rather than schemathesis' pytest integration (`from_fixture` + `parametrize`), which reads a pytest
    internal that pytest 9.2 no longer has; the failure text is schemathesis' own (it ends with a curl line)."""
    failures = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @_run_settings(max_examples)
        @given(case=operation.as_strategy())
        def check(case) -> None:
            case.call_and_validate(headers=auth_headers(app), checks=CHECKS)

        try:
            check()
        except (Exception, BaseExceptionGroup) as error:  # a FailureGroup (a BaseExceptionGroup), or an app error
            failures[operation.label] = str(error)
    return failures


def test_every_operation_answers_with_no_server_error_and_as_documented(api_schema, app) -> None:
    failures = _failures(api_schema, app, max_examples=15)
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


@pytest.mark.slow
def test_every_operation_answers_as_documented_many_examples(api_schema, app) -> None:
    failures = _failures(api_schema, app, max_examples=300)
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
