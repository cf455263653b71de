"""The ORM base shared by every table, so the rollout store and the alert outbox can live in
separate modules yet commit in one transaction."""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import DateTime, TypeDecorator, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.sql.dml import Insert


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


def insert_rows(session: Session, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """Insert now, in the session's transaction, as plain Core: the ORM's bulk path spent more
    per row than the insert itself, and a hand-off or a tick writes rows nobody reads back."""
    session.connection().execute(_insert(model.__tablename__), rows)


@functools.cache
def _insert(table: str) -> Insert:
    """Built once per table: building the statement cost a third of a one-row insert."""
    return insert(Base.metadata.tables[table])


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

    JSON has no infinity: orjson writes one as null, and the bare token `Infinity` that Python
    writes is refused by PostgreSQL's JSON type. So a value whose JSON does not read back equal
    (an infinity or NaN, a tuple) is written again with {"__float__": "inf"} in their place,
    read back as floats. Checking the round trip costs a fifth of walking every value first,
    and a tick writes every analysed rollout's state.
    """
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    if orjson.loads(text) != value:
        text = orjson.dumps(_tag(value), option=orjson.OPT_NON_STR_KEYS)
    return text.decode()


def loads_json(text: str | bytes) -> Any:
    """The inverse of `dumps_json`.

    Only text that holds a tag needs the walk back: a tick reads every unfinished rollout's
    JSON columns.
    """
    value = orjson.loads(text)
    tagged = _TAG_BYTES in text if isinstance(text, bytes) else FLOAT_TAG in text
    return _untag(value) if tagged else value


def _tag(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {FLOAT_TAG: repr(value)}
    if isinstance(value, dict):
        return {key: _tag(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_tag(item) for item in value]
    return value


def _untag(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get(FLOAT_TAG), str):
            return float(value[FLOAT_TAG])
        return {key: _untag(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_untag(item) for item in value]
    return value
