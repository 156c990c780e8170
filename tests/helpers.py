"""Test helpers (no tests here): frames built inline with an explicit schema, bronze tables,
UTC times, and one assertion that compares frames.

Test modules import them as `from helpers import ...`: tests/ is not a package, so pytest
(default "prepend" import mode) puts this folder on sys.path when it loads
tests/conftest.py, whichever way pytest is started.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from carbon_core import schemas

INGESTED_AT = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)

# The session's generated world (generate_world's arguments; conftest runs it once): two
# months, both methodology versions, 1 % malformed rows.
SESSION_WORLD: dict[str, Any] = {
    "scale": 20_000,
    "seed": 11,
    "malformed_share": 0.01,
    "start_month": "2024-12",
    "months": 2,
}


def ts(text: str) -> dt.datetime:
    """'2025-01-15' or '2025-01-15 13:00' as a UTC datetime."""
    fmt = "%Y-%m-%d %H:%M" if " " in text else "%Y-%m-%d"
    return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.timezone.utc)


def d(text: str) -> dt.date:
    """'2025-01-15' as a date."""
    return dt.date.fromisoformat(text)


def frame(
    spark: SparkSession,
    schema: T.StructType | str,
    rows: Iterable[Mapping[str, Any] | Sequence[Any]],
    *,
    defaults: Mapping[str, Any] | None = None,
) -> DataFrame:
    """A DataFrame with an explicit schema (a StructType or a DDL string such as
    "month DATE NOT NULL, site_id STRING, kwh DOUBLE").

    A row is a dict by column name (a column it does not name is `defaults`' value, else
    null; a name the schema does not have is an error) or a tuple in the schema's order.
    Spark checks every value against its field's type and nullability.
    """
    struct = T.StructType.fromDDL(schema) if isinstance(schema, str) else schema
    assert isinstance(struct, T.StructType), f"not a row schema: {schema!r}"
    names = struct.fieldNames()
    fill = dict(defaults or {})
    tuples = []
    for row in rows:
        if isinstance(row, Mapping):
            unknown = (set(row) | set(fill)) - set(names)
            assert not unknown, f"columns not in the schema: {sorted(unknown)}"
            values = {**fill, **row}
            tuples.append(tuple(values.get(n) for n in names))
        else:
            tuples.append(tuple(row))
    return spark.createDataFrame(tuples, struct)


def bronze(
    spark: SparkSession, dataset: schemas.Dataset, rows: Iterable[Mapping[str, Any]]
) -> DataFrame:
    """A bronze table: the dataset's columns plus _source_file and _ingested_at."""
    full = [{"_source_file": f"{dataset.name}.csv", "_ingested_at": INGESTED_AT, **r} for r in rows]
    return frame(spark, schemas.bronze_schema(dataset), full)


_FLOATS = (T.FloatType, T.DoubleType)
_NAN = "NaN"  # what a NaN is compared as: equal to a NaN only (schemas are checked first)


def assert_frames_equal(
    actual: DataFrame,
    expected: DataFrame,
    *,
    rtol: float = 1e-9,
    atol: float = 1e-12,
    ordered: bool = False,
    ignore_nullable: bool = True,
    ignore_column_order: bool = False,
) -> None:
    """Assert that two frames hold the same rows, through `assertDataFrameEqual`.

    Defaults, and what each option changes:

    - schema: the same column names, in the same order (`ignore_column_order=True`: any
      order), with the same types; nullability is not compared (`ignore_nullable=False`
      compares it), since a computed column is nullable where the expected frame's schema
      may declare a key NOT NULL.
    - floats and decimals: `abs(a - e) <= atol + rtol * abs(e)` with rtol=1e-9 and
      atol=1e-12, no looser than `pytest.approx(e)` (`max(1e-6 * abs(e), 1e-12)`) for
      e == 0 or abs(e) >= 1e-6. To hold a test's `approx(e, rel=r)`, pass rtol=r and
      atol=0 (a zero must then be exactly zero). A NaN equals only a NaN
      (`assertDataFrameEqual` alone lets a NaN pass for any float). Every other value
      (strings, dates, integers, booleans, nulls) must be equal.
    - row order: ignored (`ordered=False`): both sides are sorted by their non-float
      columns first, then numerically by their floats, so rows pair by key and never by
      a float's text; `ordered=True` compares the rows in the order collected (order
      `actual` with `orderBy` first).
    - the number of rows must be equal (a duplicated row is a difference).
    """
    __tracebackhide__ = True
    assertSchemaEqual(
        actual.schema,
        expected.schema,
        ignoreNullable=ignore_nullable,
        ignoreColumnOrder=ignore_column_order,
    )
    if ignore_column_order:
        expected = expected.select(*actual.columns)
    fields = actual.schema.fields
    float_at = [i for i, f in enumerate(fields) if isinstance(f.dataType, _FLOATS)]
    other_at = [i for i in range(len(fields)) if i not in float_at]
    actual_rows, expected_rows = actual.collect(), expected.collect()
    if not ordered:

        def key(row: Row) -> tuple[tuple[int, Any], ...]:
            return tuple(_sort_value(row[i]) for i in (*other_at, *float_at))

        actual_rows.sort(key=key)
        expected_rows.sort(key=key)
    assertDataFrameEqual(
        [_nan_marked(r) for r in actual_rows],
        [_nan_marked(r) for r in expected_rows],
        checkRowOrder=True,  # ordered above unless the caller's order counts
        rtol=rtol,
        atol=atol,
    )


def _sort_value(value: Any) -> tuple[int, Any]:
    """A sort key for one value: nulls first, then NaN, then values of the column's type."""
    if value is None:
        return (0, 0)
    if isinstance(value, float) and math.isnan(value):
        return (1, 0)
    if isinstance(value, bool | int | float | Decimal | str | bytes | dt.date):
        return (2, value)
    return (3, repr(value))  # arrays, maps and structs: by their text


def _nan_marked(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return _NAN
    if isinstance(value, Row):
        marked = [_nan_marked(v) for v in value]
        names = getattr(value, "__fields__", None)
        return Row(*names)(*marked) if names else Row(*marked)
    if isinstance(value, list):
        return [_nan_marked(v) for v in value]
    if isinstance(value, dict):
        return {k: _nan_marked(v) for k, v in value.items()}
    return value


def assert_conforms(actual: T.StructType, declared: T.StructType) -> None:
    """A computed frame's schema against its table's declaration: the same column names,
    order and types, and every nullable field nullable. Key (non-nullable) fields may come
    out nullable: Spark cannot always prove a computed key non-null, and the Delta table's
    NOT NULL constraint refuses a null key at write."""
    assert [(f.name, f.dataType) for f in actual.fields] == [
        (f.name, f.dataType) for f in declared.fields
    ]
    not_nullable = [
        f.name
        for f, a in zip(declared.fields, actual.fields, strict=True)
        if f.nullable and not a.nullable
    ]
    assert not_nullable == [], f"declared nullable, computed non-nullable: {not_nullable}"
