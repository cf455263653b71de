"""The ORM base shared by every table, so the rollout store and the alert outbox can live in
separate modules yet commit in one transaction."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Column, DateTime, Table, TypeDecorator, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.schema import ColumnDefault


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
    """Insert now, in the session's transaction, as a statement compiled once and run by the
    driver's `executemany`.

    A hand-off and a tick write rows nobody reads back. Through SQLAlchemy's execution (the
    compiled-statement cache, parameter processing, a result set up for each statement) a
    hand-off's three inserts cost it 0.1 ms more under the store's writer lock, a sixth of its
    hold. SQLAlchemy still compiles each statement, for the connection's dialect, and its column
    types still turn each value into the driver's. Engine events do not see these statements.
    """
    if not rows:
        return
    connection = session.connection()
    statement = _insert(model.__tablename__, connection.dialect, frozenset(rows[0]))
    cursor = connection.connection.cursor()
    try:
        parameters: list[Any] = [statement.parameters(row) for row in rows]
        cursor.executemany(statement.sql, parameters)
    finally:
        cursor.close()


class _Insert:
    """An INSERT of `keys`, and of the columns with a Python-side default, into `table`."""

    def __init__(self, table: Table, dialect: Dialect, keys: frozenset[str]) -> None:
        unknown = keys - set(table.columns.keys())
        if unknown:
            raise KeyError(f"{table.name} has no column {', '.join(sorted(unknown))}")
        columns = [c for c in table.columns if c.key in keys or c.default is not None]
        compiled = insert(table).compile(dialect=dialect, column_keys=[c.key for c in columns])
        self.sql = str(compiled)
        self._positional = compiled.positional
        self._keys = [c.key for c in columns]
        self._fill = [_default_of(c) for c in columns]
        self._process = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns]

    def parameters(self, row: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        values = []
        for key, fill, process in zip(self._keys, self._fill, self._process, strict=True):
            value = row[key] if key in row else fill()
            values.append(process(value) if process is not None else value)
        return tuple(values) if self._positional else dict(zip(self._keys, values, strict=True))


def _default_of(column: Column[Any]) -> Callable[[], Any]:
    """What an insert that leaves `column` out writes in it, as Core's would."""
    default = column.default
    if isinstance(default, ColumnDefault) and default.is_scalar:
        return lambda: default.arg
    if isinstance(default, ColumnDefault) and default.is_callable:
        return lambda: default.arg(None)  # Core wraps a callable to take an execution context
    if default is not None:
        raise TypeError(f"{column}: insert_rows computes only Python-side defaults")

    def missing() -> Any:
        raise KeyError(f"{column}: a row has no value for it, and it has no default")

    return missing


@functools.cache
def _insert(table: str, dialect: Dialect, keys: frozenset[str]) -> _Insert:
    """Built once per table, dialect and set of columns: building and compiling the statement
    cost more than running it."""
    return _Insert(Base.metadata.tables[table], dialect, keys)


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
