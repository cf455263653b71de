"""The shared wording: titles, versions and evidence lines every channel uses."""

from __future__ import annotations

from alerts.text import description, evidence_line, title, versions
from guard.models import Evidence

from .conftest import rollback_started, rollback_verified


def test_title_and_versions() -> None:
    event = rollback_started()
    assert title(event) == "[critical] Automatic rollback started: shop/checkout"
    assert versions(event) == "checkout: registry/checkout:1.4.1 -> registry/checkout:1.4.3"


def test_evidence_lines_say_which_side_of_the_threshold_a_value_is() -> None:
    healthy = Evidence(
        metric="latency", value=0.41, threshold=1.0, sample_count=556, window_seconds=5
    )
    assert evidence_line(healthy) == "latency 0.41s <= 1s over 556 requests in 5s"
    count = Evidence(metric="request_count", value=555.9, sample_count=555.9, window_seconds=5)
    assert evidence_line(count) == "request_count 555.9 in 5s"
    outage = Evidence(metric="prometheus", note="connection refused")
    assert evidence_line(outage) == "prometheus: connection refused"


def test_description_tells_the_whole_story() -> None:
    text = description(rollback_verified())
    assert text.splitlines() == [
        "What happened: critical: error rate 8.12% > 5.00%",
        "Service: checkout (shop/checkout), strategy rolling, step analysing",
        "Versions: checkout: registry/checkout:1.4.1 -> registry/checkout:1.4.3",
        "Evidence: error_rate 8.12% > 5.00% over 1234 requests in 30s (critical)",
        "Guard action: rolled back to revision 3",
        "Outcome: rollback verified: previous revision fully available again: 4/4 available",
        "Rollback took 12.5s",
        "rollout: https://guard.example.com/v1/rollouts/5f0c8a1e-0000-4000-8000-000000000001",
    ]
