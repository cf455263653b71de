"""render_query: placeholders substituted and escaped for a PromQL double-quoted string."""

from __future__ import annotations

import pytest

from guard.config import Queries
from guard.engine import render_query

VALUES = {
    "namespace": "shop",
    "workload": "checkout",
    "revision": "7d9f8b6c5",
    "window": "30s",
    "quantile": "0.99",
}


def test_substitutes_every_placeholder() -> None:
    template = "{namespace}|{workload}|{revision}|{window}|{quantile}"
    assert render_query(template, VALUES) == "shop|checkout|7d9f8b6c5|30s|0.99"


def test_substitutes_a_placeholder_each_time_it_occurs() -> None:
    assert render_query("{window} {window}", VALUES) == "30s 30s"


def test_escapes_double_quotes_and_backslashes() -> None:
    values = {**VALUES, "workload": 'a"b', "namespace": "c\\d"}
    rendered = render_query('up{namespace="{namespace}",job="{workload}"}', values)
    assert rendered == 'up{namespace="c\\\\d",job="a\\"b"}'


def test_escapes_a_backslash_before_a_quote_only_once() -> None:
    # Backslash first, then quote: \" becomes \\\" (escaped backslash, escaped quote).
    assert render_query('"{workload}"', {**VALUES, "workload": '\\"'}) == '"\\\\\\""'


def test_label_matcher_braces_and_unknown_names_are_left_alone() -> None:
    template = 'sum(rate(x{namespace="{namespace}",code=~"5.."}[{window}])) + {other} + {}'
    assert render_query(template, VALUES) == (
        'sum(rate(x{namespace="shop",code=~"5.."}[30s])) + {other} + {}'
    )


def test_default_templates_render_without_leftover_placeholders() -> None:
    queries = Queries()
    error_rate = render_query(queries.error_rate, VALUES)
    assert error_rate == (
        '(sum(rate(http_requests_total{namespace="shop",pod=~"checkout-7d9f8b6c5-[a-z0-9]+",'
        'code=~"5.."}[30s])) or vector(0)) / sum(rate(http_requests_total'
        '{namespace="shop",pod=~"checkout-7d9f8b6c5-[a-z0-9]+"}[30s]))'
    )
    latency = render_query(queries.latency, VALUES)
    assert latency.startswith("histogram_quantile(0.99, sum by (le) ")
    for name in VALUES:
        assert "{" + name + "}" not in render_query(queries.request_count, VALUES)
        assert "{" + name + "}" not in latency


def test_a_missing_value_is_an_error_not_a_silent_blank() -> None:
    with pytest.raises(KeyError):
        render_query("{namespace}", {})
