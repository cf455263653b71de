"""Batched measurement: one query per metric per tick for all rollouts, fanned out correctly."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from analyzers.base import Observation
from guard.config import AnalysisConfig, Queries
from guard.measure import Measurer, MeasureRequest, render, selector_for, track_queries
from guard.prometheus import PrometheusClient, QueryStatus
from strategies.base import AnalysisTarget, Track

AT = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
CONFIG = AnalysisConfig()
QUERIES = Queries()
BOUNDS = ("0.1", "0.5", "1", "+Inf")

Handler = Callable[[httpx.Request], httpx.Response]


# --- rendering ------------------------------------------------------------------------------


def test_one_version_gets_exact_matchers() -> None:
    assert selector_for(QUERIES, [("shop", "7d9f8b6c5")]) == (
        'namespace="shop",pod_template_hash="7d9f8b6c5"'
    )


def test_several_versions_get_sorted_regex_alternations() -> None:
    keys = [("shop", "b2"), ("shop", "a1"), ("pay", "c3"), ("shop", "a1")]
    assert selector_for(QUERIES, keys) == ('namespace=~"pay|shop",pod_template_hash=~"a1|b2|c3"')


def test_regex_metacharacters_are_escaped_for_the_regex_and_the_string() -> None:
    selector = selector_for(QUERIES, [("ns-1", "a.b"), ("shop", "a+b")])
    # re.escape makes "." and "+" literal; the backslash is then escaped for the PromQL string.
    assert selector == 'namespace=~"ns\\\\-1|shop",pod_template_hash=~"a\\\\+b|a\\\\.b"'


def test_quotes_and_backslashes_are_escaped_in_exact_matchers() -> None:
    assert selector_for(QUERIES, [('x"y', "c\\d")]) == (
        'namespace="x\\"y",pod_template_hash="c\\\\d"'
    )


def test_quotes_are_escaped_in_alternations() -> None:
    selector = selector_for(QUERIES, [('x"y', "a"), ("shop", "a")])
    assert selector == 'namespace=~"shop|x\\"y",pod_template_hash="a"'


def test_custom_label_names_are_used() -> None:
    queries = Queries(namespace_label="kubernetes_namespace", revision_label="rev")
    assert selector_for(queries, [("shop", "abc")]) == 'kubernetes_namespace="shop",rev="abc"'


def test_track_queries_render_the_default_templates_for_one_version() -> None:
    queries = track_queries(QUERIES, 30, ("shop", "abc"))
    selector = 'namespace="shop",pod_template_hash="abc"'
    assert queries == {
        "requests": "sum by (namespace, pod_template_hash) "
        f"(increase(http_requests_total{{{selector}}}[30s]))",
        "errors": "sum by (namespace, pod_template_hash) "
        f'(increase(http_requests_total{{{selector},code=~"5.."}}[30s]))',
        "latency_buckets": "sum by (namespace, pod_template_hash, le) "
        f"(increase(http_request_duration_seconds_bucket{{{selector}}}[30s]))",
    }


def test_fractional_windows_render_in_milliseconds() -> None:
    assert "[2500ms]" in track_queries(QUERIES, 2.5, ("shop", "abc"))["requests"]


def test_render_leaves_label_braces_and_unknown_names_alone() -> None:
    rendered = render(
        'x{{selector},code=~"5.."}[{window}] {other} {}', selector="a", group_by="b", window="1m"
    )
    assert rendered == 'x{a,code=~"5.."}[1m] {other} {}'


# --- a fake Prometheus ----------------------------------------------------------------------

Key = tuple[str, str]


class FakePrometheus:
    """Answers the batched queries from per-version counts and records what was asked."""

    def __init__(
        self,
        requests: dict[Key, float],
        errors: dict[Key, float],
        buckets: dict[Key, dict[str, float]],
    ) -> None:
        self.requests, self.errors, self.buckets = requests, errors, buckets
        self.queries: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        query = parse_qs(request.content.decode())["query"][0]
        self.queries.append(query)
        wanted = _selected(query)
        if "_bucket" in query:
            result = [
                _series(key, value, le=le)
                for key, by_le in self.buckets.items()
                if wanted(key)
                for le, value in by_le.items()
            ]
        else:
            values = self.errors if 'code=~"5.."' in query else self.requests
            result = [_series(key, value) for key, value in values.items() if wanted(key)]
        body = {"status": "success", "data": {"resultType": "vector", "result": result}}
        return httpx.Response(200, json=body)


def _series(key: Key, value: float, **extra: str) -> dict[str, Any]:
    metric = {"namespace": key[0], "pod_template_hash": key[1], **extra}
    return {"metric": metric, "value": [AT.timestamp(), str(value)]}


def _selected(query: str) -> Callable[[Key], bool]:
    """Apply the query's namespace and hash matchers, as Prometheus would."""
    matchers = dict(re.findall(r'(namespace|pod_template_hash)=~?"((?:[^"\\]|\\.)*)"', query))

    def pattern(label: str) -> re.Pattern[str]:
        text = matchers[label].replace('\\"', '"').replace("\\\\", "\\")
        return re.compile(text if "=~" in query else re.escape(text))

    ns, rev = pattern("namespace"), pattern("pod_template_hash")
    return lambda key: bool(ns.fullmatch(key[0]) and rev.fullmatch(key[1]))


def measure(
    handler: Handler, requests: list[MeasureRequest], **client: Any
) -> tuple[dict[str, Observation], PrometheusClient]:
    async def go() -> tuple[dict[str, Observation], PrometheusClient]:
        prometheus = PrometheusClient(
            "http://prometheus.test:9090", transport=httpx.MockTransport(handler), **client
        )
        try:
            return await Measurer(prometheus).measure(requests, AT), prometheus
        finally:
            await prometheus.close()

    return asyncio.run(go())


def rollout(i: int, config: AnalysisConfig = CONFIG) -> MeasureRequest:
    return MeasureRequest(
        rollout_id=f"r-{i}",
        namespace=f"team-{i % 7}",
        target=AnalysisTarget(
            candidate=Track(f"svc-{i}", f"new{i}"), baseline=Track(f"svc-{i}", f"old{i}")
        ),
        config=config,
    )


def fleet(n: int) -> FakePrometheus:
    """Candidate i: 100 + i requests, i errors (none reported for every fifth: no 5xx series);
    baseline i: 1000 + i requests, 2 errors."""
    requests: dict[Key, float] = {}
    errors: dict[Key, float] = {}
    buckets: dict[Key, dict[str, float]] = {}
    for i in range(n):
        ns = f"team-{i % 7}"
        new, old = (ns, f"new{i}"), (ns, f"old{i}")
        requests[new], requests[old] = 100.0 + i, 1000.0 + i
        if i % 5:
            errors[new] = float(i)
        errors[old] = 2.0
        buckets[new] = {"0.1": 50.0 + i, "0.5": 90.0 + i, "1": 99.0 + i, "+Inf": 100.0 + i}
        buckets[old] = {"0.1": 900.0, "0.5": 990.0, "1": 999.0, "+Inf": 1000.0 + i}
    # A version nobody asked about, which the selector's cross product may also match.
    requests[("team-0", "new1")] = 5.0
    return FakePrometheus(requests, errors, buckets)


# --- batching -------------------------------------------------------------------------------


def test_fifty_rollouts_cost_exactly_three_queries_and_each_gets_its_own_samples() -> None:
    fake = fleet(50)
    observations, client = measure(fake, [rollout(i) for i in range(50)])
    assert len(fake.queries) == 3
    assert client.queries_sent == 3
    assert sorted(observations) == sorted(f"r-{i}" for i in range(50))
    for i in range(50):
        observation = observations[f"r-{i}"]
        assert observation.at == AT
        assert observation.window_seconds == CONFIG.window_seconds
        assert observation.unavailable == ()
        candidate, baseline = observation.candidate, observation.baseline
        assert candidate is not None and baseline is not None
        assert candidate.requests == 100 + i
        assert candidate.errors == (i if i % 5 else 0)
        assert candidate.latency_buckets == (
            (0.1, 50.0 + i),
            (0.5, 90.0 + i),
            (1.0, 99.0 + i),
            (float("inf"), 100.0 + i),
        )
        assert baseline.requests == 1000 + i
        assert baseline.errors == 2
        assert baseline.latency_buckets is not None
        assert baseline.latency_buckets[-1] == (float("inf"), 1000.0 + i)
        ns = f"team-{i % 7}"
        assert candidate.queries == track_queries(QUERIES, CONFIG.window_seconds, (ns, f"new{i}"))
        assert f'pod_template_hash="old{i}"' in baseline.queries["errors"]


def test_the_batched_query_names_every_version_once() -> None:
    fake = fleet(50)
    measure(fake, [rollout(i) for i in range(50)])
    requests_query = next(q for q in fake.queries if "code" not in q and "_bucket" not in q)
    hashes = re.search(r'pod_template_hash=~"([^"]*)"', requests_query)
    assert hashes is not None
    assert sorted(hashes.group(1).split("|")) == sorted(
        [f"new{i}" for i in range(50)] + [f"old{i}" for i in range(50)]
    )
    assert "sum by (namespace, pod_template_hash)" in requests_query


def test_query_count_does_not_grow_with_rollouts() -> None:
    for n in (1, 5, 200):
        fake = fleet(n)
        measure(fake, [rollout(i) for i in range(n)])
        assert len(fake.queries) == 3


def test_rollouts_with_different_queries_are_batched_per_configuration() -> None:
    other = CONFIG.model_copy(update={"window_seconds": 60.0})
    fake = fleet(10)
    requests = [rollout(i, CONFIG if i % 2 else other) for i in range(10)]
    observations, _ = measure(fake, requests)
    assert len(fake.queries) == 6
    assert sum("[60s]" in q for q in fake.queries) == 3
    assert observations["r-0"].window_seconds == 60
    assert observations["r-1"].window_seconds == CONFIG.window_seconds


def test_a_rollout_without_a_baseline_gets_none() -> None:
    fake = fleet(1)
    request = MeasureRequest("r-0", "team-0", AnalysisTarget(Track("svc-0", "new0")), CONFIG)
    observations, _ = measure(fake, [request])
    assert observations["r-0"].candidate is not None
    assert observations["r-0"].baseline is None
    assert "old0" not in fake.queries[0]


# --- missing series -------------------------------------------------------------------------


def test_missing_errors_series_means_zero_errors() -> None:
    fake = FakePrometheus({("team-0", "new0"): 40.0}, {}, {})
    request = MeasureRequest("r-0", "team-0", AnalysisTarget(Track("svc", "new0")), CONFIG)
    observations, client = measure(fake, [request])
    candidate = observations["r-0"].candidate
    assert candidate is not None
    assert candidate.requests == 40
    assert candidate.errors == 0
    assert candidate.latency_buckets is None
    assert observations["r-0"].unavailable == ()
    assert client.query_errors == 0


def test_missing_requests_series_means_no_sample() -> None:
    fake = FakePrometheus({}, {("team-0", "new0"): 3.0}, {})
    observations, _ = measure(fake, [rollout(0)])
    assert observations["r-0"].candidate is None
    assert observations["r-0"].baseline is None
    assert observations["r-0"].unavailable == ()


def test_errors_above_requests_are_capped() -> None:
    # increase() extrapolates each series alone; errors can read higher than requests.
    fake = FakePrometheus({("team-0", "new0"): 10.0}, {("team-0", "new0"): 10.4}, {})
    request = MeasureRequest("r-0", "team-0", AnalysisTarget(Track("svc", "new0")), CONFIG)
    observations, _ = measure(fake, [request])
    candidate = observations["r-0"].candidate
    assert candidate is not None
    assert candidate.errors == 10


def test_buckets_are_sorted_and_made_monotonic() -> None:
    key = ("team-0", "new0")
    raw = {"+Inf": 100.0, "1": 97.0, "0.1": 60.2, "0.5": 59.8}  # 0.5 read below 0.1
    fake = FakePrometheus({key: 100.0}, {}, {key: raw})
    request = MeasureRequest("r-0", "team-0", AnalysisTarget(Track("svc", "new0")), CONFIG)
    observations, _ = measure(fake, [request])
    candidate = observations["r-0"].candidate
    assert candidate is not None
    assert candidate.latency_buckets == (
        (0.1, 60.2),
        (0.5, 60.2),
        (1.0, 97.0),
        (float("inf"), 100.0),
    )


# --- Prometheus trouble ---------------------------------------------------------------------


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the backoff delays instead of sleeping them."""
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, *args: Any, **kwargs: Any) -> Any:
        delays.append(delay)
        return await real_sleep(0)

    monkeypatch.setattr("guard.prometheus.asyncio.sleep", fake_sleep)
    return delays


def test_unreachable_prometheus_makes_every_observation_unavailable_after_retries(
    no_sleep: list[float],
) -> None:
    calls: list[str] = []

    def refused(request: httpx.Request) -> httpx.Response:
        calls.append(parse_qs(request.content.decode())["query"][0])
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    errors: list[QueryStatus] = []
    observations, client = measure(refused, [rollout(i) for i in range(50)], on_error=errors.append)
    assert len(calls) == 9  # 3 queries, each tried 3 times (2 retries)
    assert len(set(calls)) == 3
    assert client.queries_sent == 9
    assert client.query_errors == 3
    assert errors == [QueryStatus.UNREACHABLE] * 3
    # Backoff: two sleeps per query, the second about twice the first (0.2 s base, jittered).
    assert len(no_sleep) == 6
    assert all(0.1 <= d <= 0.3 for d in sorted(no_sleep)[:3])
    assert all(0.2 <= d <= 0.6 for d in sorted(no_sleep)[3:])
    for observation in observations.values():
        assert observation.candidate is None
        assert observation.baseline is None
        assert len(observation.unavailable) == 3
        assert {query for query, _ in observation.unavailable} == set(calls)
        assert all(
            error == "ConnectError: [Errno 111] Connection refused"
            for _, error in observation.unavailable
        )


def test_a_retry_that_succeeds_is_not_unavailable(no_sleep: list[float]) -> None:
    fake = fleet(3)
    attempts: dict[str, int] = {}

    def flaky(request: httpx.Request) -> httpx.Response:
        query = parse_qs(request.content.decode())["query"][0]
        attempts[query] = attempts.get(query, 0) + 1
        if attempts[query] == 1:
            raise httpx.ConnectError("refused", request=request)
        return fake(request)

    observations, client = measure(flaky, [rollout(i) for i in range(3)])
    assert client.queries_sent == 6
    assert client.query_errors == 0
    assert len(no_sleep) == 3
    assert all(o.unavailable == () for o in observations.values())
    assert observations["r-2"].candidate is not None


def test_one_failing_query_makes_the_interval_unavailable() -> None:
    fake = fleet(2)

    def bad_buckets(request: httpx.Request) -> httpx.Response:
        if "_bucket" in parse_qs(request.content.decode())["query"][0]:
            body = {"status": "error", "errorType": "bad_data", "error": "parse error"}
            return httpx.Response(400, json=body)
        return fake(request)

    observations, client = measure(bad_buckets, [rollout(0), rollout(1)])
    assert client.queries_sent == 3  # a query error is not retried
    for observation in observations.values():
        assert observation.candidate is None
        [(query, error)] = observation.unavailable
        assert "_bucket" in query
        assert error == "bad_data: parse error"


def test_no_data_at_all_is_not_unavailable() -> None:
    observations, client = measure(FakePrometheus({}, {}, {}), [rollout(0)])
    assert observations["r-0"].unavailable == ()
    assert observations["r-0"].candidate is None
    assert client.query_errors == 0


# --- hostile values -------------------------------------------------------------------------

_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)(=~?)"((?:[^"\\\n]|\\\\|\\"|\\x[0-9a-f]{2})*)"')


def _unquote(text: str) -> str:
    """PromQL's (Go's) unescaping of the escapes `_escape` writes."""
    return re.sub(
        r'\\(\\|"|x[0-9a-f]{2})',
        lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "x" else m.group(1),
        text,
    )


def _parse_selector(selector: str) -> list[tuple[str, str, str]]:
    """Split a selector into (label, op, value); fails unless the whole text is matchers."""
    matchers, position = [], 0
    while position < len(selector):
        found = _MATCHER.match(selector, position)
        assert found is not None, f"not a matcher at {selector[position:]!r}"
        matchers.append((found.group(1), found.group(2), _unquote(found.group(3))))
        position = found.end()
        if position < len(selector):
            assert selector[position] == ",", selector
            position += 1
    return matchers


HOSTILE = [
    'shop"} or vector(1) or {a="',
    "shop\\",
    'x\\"}',
    "line\nbreak",
    "tab\tcarriage\rnull\x00",
    '"',
    '\\\\"',
]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_value_stays_inside_its_exact_matcher(value: str) -> None:
    selector = selector_for(QUERIES, [(value, "abc123")])
    assert "\n" not in selector and "\r" not in selector
    assert _parse_selector(selector) == [
        ("namespace", "=", value),
        ("pod_template_hash", "=", "abc123"),
    ]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_value_stays_inside_its_regex_alternation(value: str) -> None:
    selector = selector_for(QUERIES, [(value, "a1"), ("shop", "b2")])
    matchers = _parse_selector(selector)
    assert [(label, op) for label, op, _ in matchers] == [
        ("namespace", "=~"),
        ("pod_template_hash", "=~"),
    ]
    assert re.fullmatch(matchers[0][2], value) and re.fullmatch(matchers[0][2], "shop")
    assert not re.fullmatch(matchers[0][2], "other")


def test_a_value_longer_than_any_kubernetes_name_is_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        selector_for(QUERIES, [("a" * 254, "abc")])


def test_single_measurements_asked_together_share_one_batch() -> None:
    """Pre-flights started in the same tick each ask for one version; they cost one batch."""
    fake = fleet(30)

    async def go() -> list[Observation]:
        prometheus = PrometheusClient(
            "http://prometheus.test:9090", transport=httpx.MockTransport(fake)
        )
        try:
            measurer = Measurer(prometheus)
            return list(
                await asyncio.gather(*(measurer.measure_one(rollout(i), AT) for i in range(30)))
            )
        finally:
            await prometheus.close()

    observations = asyncio.run(go())
    assert len(fake.queries) == 3
    for i, observation in enumerate(observations):
        assert observation.candidate is not None
        assert observation.candidate.requests == 100 + i
