"""PrometheusClient: a value, no data, a query error, or no Prometheus at all.

query_vector (the batched queries) retries an unreachable Prometheus with backoff;
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import pytest

from guard.prometheus import PrometheusClient, QueryStatus, VectorResult

AT = datetime(2026, 11, 23, 14, 0, 0, tzinfo=UTC)
QUERY = 'sum(rate(http_requests_total{namespace="shop"}[30s]))'

Handler = Callable[[httpx.Request], httpx.Response]


def success(result_type: str, result: object) -> Handler:
    body = {"status": "success", "data": {"resultType": result_type, "result": result}}
    return lambda request: httpx.Response(200, json=body)


def vector(*values: str) -> Handler:
    series = [
        {"metric": {"pod": f"checkout-abc-{i}"}, "value": [AT.timestamp(), v]}
        for i, v in enumerate(values)
    ]
    return success("vector", series)


# --- query_vector ---------------------------------------------------------------------------

BATCH = 'sum by (namespace, pod_template_hash) (increase(x{namespace=~"a|b"}[30s]))'


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the backoff delays instead of sleeping them."""
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, *args: Any, **kwargs: Any) -> Any:
        slept.append(delay)
        return await real_sleep(0)

    monkeypatch.setattr("guard.prometheus.asyncio.sleep", fake_sleep)
    return slept


def run_vector(
    handler: Handler, **client_options: Any
) -> tuple[VectorResult, PrometheusClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    async def go() -> tuple[VectorResult, PrometheusClient]:
        client = PrometheusClient(
            "http://prometheus.test:9090/",
            transport=httpx.MockTransport(recording),
            **client_options,
        )
        try:
            return await client.query_vector(BATCH, at=AT), client
        finally:
            await client.close()

    result, client = asyncio.run(go())
    return result, client, seen


def labelled(*series: tuple[dict[str, str], str]) -> Handler:
    return success("vector", [{"metric": m, "value": [AT.timestamp(), v]} for m, v in series])


def test_vector_returns_every_series_with_its_labels() -> None:
    a = {"namespace": "a", "pod_template_hash": "h1"}
    b = {"namespace": "b", "pod_template_hash": "h2"}
    result, client, seen = run_vector(labelled((a, "12"), (b, "3.5")))
    assert result.status is QueryStatus.OK
    assert result.series == ((a, 12.0), (b, 3.5))
    assert result.query == BATCH
    assert result.error == ""
    assert len(seen) == 1
    assert parse_qs(seen[0].content.decode()) == {
        "query": [BATCH],
        "time": [f"{AT.timestamp():.3f}"],
    }
    assert client.queries_sent == 1
    assert client.query_errors == 0


def test_vector_drops_nan_series() -> None:
    a = {"pod_template_hash": "h1"}
    b = {"pod_template_hash": "h2"}
    result, _, _ = run_vector(labelled((a, "NaN"), (b, "1")))
    assert result.series == ((b, 1.0),)
    only_nan, _, _ = run_vector(labelled((a, "NaN")))
    assert only_nan.status is QueryStatus.NO_DATA


def test_empty_vector_is_no_data_not_an_error() -> None:
    result, client, _ = run_vector(vector())
    assert result.status is QueryStatus.NO_DATA
    assert result.series == ()
    assert client.query_errors == 0


def test_vector_query_of_the_wrong_type_is_a_query_error() -> None:
    result, _, _ = run_vector(success("scalar", [AT.timestamp(), "1"]))
    assert result.status is QueryStatus.QUERY_ERROR
    assert "expected a vector, got scalar" in result.error


def test_vector_bad_data_is_a_query_error_and_not_retried(delays: list[float]) -> None:
    body = {"status": "error", "errorType": "bad_data", "error": "parse error"}
    result, client, seen = run_vector(lambda request: httpx.Response(400, json=body))
    assert result.status is QueryStatus.QUERY_ERROR
    assert result.error == "bad_data: parse error"
    assert len(seen) == 1
    assert delays == []
    assert client.query_errors == 1


def test_vector_timeout_from_prometheus_is_a_query_error() -> None:
    body = {"status": "error", "errorType": "timeout", "error": "query timed out"}
    result, _, _ = run_vector(lambda request: httpx.Response(503, json=body))
    assert result.status is QueryStatus.QUERY_ERROR
    assert result.error == "timeout: query timed out"


def test_vector_503_from_a_proxy_is_unreachable() -> None:
    result, client, _ = run_vector(lambda request: httpx.Response(503, text="<html>down</html>"))
    assert result.status is QueryStatus.UNREACHABLE
    assert result.error.startswith("HTTP 503")
    assert client.query_errors == 1


def test_vector_connection_refused_is_retried_with_backoff_then_unreachable(
    delays: list[float],
) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    errors: list[QueryStatus] = []
    result, client, seen = run_vector(refused, on_error=errors.append)
    assert result.status is QueryStatus.UNREACHABLE
    assert result.error == "ConnectError: [Errno 111] Connection refused"
    assert result.series == ()
    assert len(seen) == 3  # first try and two retries
    assert client.queries_sent == 3
    assert client.query_errors == 1  # one failed query, however many attempts
    assert errors == [QueryStatus.UNREACHABLE]
    assert len(delays) == 2
    assert 0.1 <= delays[0] <= 0.3  # 0.2 s, jittered by 0.5-1.5x
    assert 0.2 <= delays[1] <= 0.6  # doubled


def test_vector_recovers_when_a_retry_succeeds(delays: list[float]) -> None:
    attempts = []

    def flaky(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        if len(attempts) < 3:
            raise httpx.ReadTimeout("timed out", request=request)
        return labelled(({"pod_template_hash": "h1"}, "7"))(request)

    result, client, _ = run_vector(flaky)
    assert result.status is QueryStatus.OK
    assert result.series == (({"pod_template_hash": "h1"}, 7.0),)
    assert client.queries_sent == 3
    assert client.query_errors == 0
    assert len(delays) == 2


def test_on_error_callback_sees_query_errors_too() -> None:
    body = {"status": "error", "errorType": "execution", "error": "many-to-many"}
    errors: list[QueryStatus] = []
    run_vector(lambda request: httpx.Response(422, json=body), on_error=errors.append)
    assert errors == [QueryStatus.QUERY_ERROR]


# --- large answers, parsed a chunk of series at a time ---------------------------------------

ODD_LABEL = 'a ,{"metric": in a value, and ünïcode'


def large_vector(dumps: Callable[[Any], bytes]) -> tuple[Handler, tuple[Any, ...]]:
    """Ten series (one NaN, one whose label holds the separator's text) and a warning."""
    series = [
        {"metric": {"pod": f"p-{i}", "note": ODD_LABEL if i == 4 else ""}, "value": [1.5, v]}
        for i, v in enumerate(["1", "2", "NaN", "4", "5", "6", "7", "8", "9", "10"])
    ]
    body = {
        "status": "success",
        "data": {"resultType": "vector", "result": series},
        "warnings": ["some series were dropped"],
    }
    content = dumps(body)
    expected = tuple((s["metric"], float(s["value"][1])) for i, s in enumerate(series) if i != 2)
    return (lambda request: httpx.Response(200, content=content)), expected


@pytest.mark.parametrize(
    ("written_as", "dumps", "parses"),
    [
        ("compactly, as Prometheus writes", orjson.dumps, 4),
        ("with spaces", lambda body: json.dumps(body).encode(), 1),
    ],
)
def test_a_large_vector_gives_the_same_series_however_it_is_parsed(
    monkeypatch: pytest.MonkeyPatch, written_as: str, dumps: Callable[[Any], bytes], parses: int
) -> None:
    monkeypatch.setattr("guard.prometheus.SERIES_PER_PARSE", 3)
    loads = orjson.loads
    calls: list[int] = []

    def counted(data: bytes) -> Any:
        calls.append(len(data))
        return loads(data)

    monkeypatch.setattr("guard.prometheus.orjson.loads", counted)
    handler, expected = large_vector(dumps)

    result, _, _ = run_vector(handler)

    assert result.status is QueryStatus.OK, written_as
    assert result.series == expected
    assert len(calls) == parses  # compact: first, last and two middle chunks of 3 series
