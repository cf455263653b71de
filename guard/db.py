"""The ORM base shared by every table, so the rollout store and the alert outbox can live in
separate modules yet commit in one transaction."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase


class UtcDateTime(TypeDecorator[datetime]):
    """SQLite forgets time zones; store UTC and hand back aware datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC).replace(tzinfo=None) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    pass


def engine_url(url: str) -> str:
    """`postgresql://` (as PostgreSQL and most tools write it) means the psycopg 3 driver.

    SQLAlchemy would pick psycopg2 for a bare `postgresql://`, which the guard does not ship.
    """
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


FLOAT_TAG = "__float__"
_TAG_BYTES = FLOAT_TAG.encode()  # PostgreSQL's driver hands JSON over as bytes


def dumps_json(value: Any) -> str:
    """JSON for the store's JSON columns, keeping infinities (a histogram's +Inf bucket).

    Python writes them as the bare token `Infinity`, which SQLite keeps but PostgreSQL's JSON
    type refuses, so they are written as {"__float__": "inf"} and read back as floats. Such
    values are rare, so the value is written as it is first and walked for them only if that
    fails: every hand-off and every transition writes several JSON columns.
    """
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(_tag(value), allow_nan=False)


def loads_json(text: str | bytes) -> Any:
    """The inverse of `dumps_json`.

    Only text that holds a tag needs the hook: without it `json.loads` reuses its one decoder
    instead of building one per call and calling back per object, and a tick reads every
    unfinished rollout's JSON columns.
    """
    tagged = _TAG_BYTES in text if isinstance(text, bytes) else FLOAT_TAG in text
    if not tagged:
        return json.loads(text)
    return json.loads(text, object_hook=_untag)


def _tag(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {FLOAT_TAG: repr(value)}
    if isinstance(value, dict):
        return {key: _tag(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_tag(item) for item in value]
    return value


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and isinstance(obj.get(FLOAT_TAG), str):
        return float(obj[FLOAT_TAG])
    return obj
