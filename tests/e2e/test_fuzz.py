"""Schemathesis against the running guard's own OpenAPI document.

Every operation gets generated requests (valid and invalid) with an all-scopes token; none may
answer 5xx, with a status the document does not declare, or with a body that breaks the declared
schema. The guard runs as `guard serve` on the simulated cluster with a real Prometheus, so what
the fuzz submits is judged and refused there, and touches nothing real.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack, StackSettings

EXAMPLES = 15
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,  # resends without the token: an operation that still answers ignores auth
]


@pytest.fixture(scope="module")
def fuzzed_guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardProcess]:
    root = tmp_path_factory.mktemp("fuzz")
    with SimulatedStack(StackSettings(), root / "stack") as stack:
        config = stack.write_guard_config(root / "guard.yaml", root / "data")
        with GuardProcess(config, root / "guard.log") as guard:
            yield guard


def test_api_honours_its_schema(fuzzed_guard: GuardProcess) -> None:
    """Each operation in positive and negative mode; failures are collected, then reported."""
    headers = {"Authorization": f"Bearer {fuzzed_guard.token}"}
    schema = schemathesis.openapi.from_url(f"{fuzzed_guard.url}/openapi.json", headers=headers)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def check(case: Any) -> None:
                case.call_and_validate(
                    base_url=fuzzed_guard.url, headers=headers, checks=CHECKS, timeout=30
                )

            try:
                check()
            except Unsatisfiable:  # no parameters, so no invalid request to make
                assert mode is GenerationMode.NEGATIVE
            except Exception as exc:  # one operation's failure must not hide the others'
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures) + "\n" + fuzzed_guard.log_tail()


def test_schema_is_served_only_with_a_token(fuzzed_guard: GuardProcess, tmp_path: Path) -> None:
    import httpx

    assert httpx.get(f"{fuzzed_guard.url}/openapi.json", timeout=10).status_code == 401
    with fuzzed_guard.client() as client:
        assert client.get("/openapi.json").status_code == 200
