"""The store's JSON columns keep infinities whichever form the driver hands the text in."""

from __future__ import annotations

import math

from guard.db import dumps_json, loads_json


def test_json_round_trips_infinities_from_text_and_bytes() -> None:
    value = {"buckets": [[0.5, 3.0], [math.inf, 7.0]], "floor": -math.inf, "name": "x"}
    text = dumps_json(value)
    assert loads_json(text) == value
    assert loads_json(text.encode()) == value


def test_json_without_infinities_reads_back_unchanged() -> None:
    value = {"images": {"app": "registry/app:1.1"}, "steps": [5, 25, 50], "labels": {}}
    assert loads_json(dumps_json(value)) == value
    assert loads_json(dumps_json(value).encode()) == value


def test_nan_tuples_and_none_survive_the_round_trip() -> None:
    value = {"nan": math.nan, "pair": (1.0, math.inf), "missing": None}
    back = loads_json(dumps_json(value))
    assert math.isnan(back["nan"])
    assert back["pair"] == [1.0, math.inf]
    assert back["missing"] is None
