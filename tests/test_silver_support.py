"""Helpers (no tests) for the silver tests: bronze DataFrames and UTC times built inline."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from carbon_core import schemas

INGESTED_AT = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)


def ts(text: str) -> dt.datetime:
    """'2025-01-15' or '2025-01-15 13:00' as a UTC datetime."""
    fmt = "%Y-%m-%d %H:%M" if " " in text else "%Y-%m-%d"
    return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.timezone.utc)


def d(text: str) -> dt.date:
    """'2025-01-15' as a date."""
    return dt.date.fromisoformat(text)


def frame(
    spark: SparkSession, schema: T.StructType, rows: Iterable[Mapping[str, Any]]
) -> DataFrame:
    """Rows given as dicts (missing keys are null) with an explicit schema."""
    names = schema.fieldNames()
    return spark.createDataFrame([tuple(r.get(n) for n in names) for r in rows], schema)


def bronze(
    spark: SparkSession, dataset: schemas.Dataset, rows: Iterable[Mapping[str, Any]]
) -> DataFrame:
    """A bronze table: the dataset's columns plus _source_file and _ingested_at."""
    full = [{"_source_file": f"{dataset.name}.csv", "_ingested_at": INGESTED_AT, **r} for r in rows]
    return frame(spark, schemas.bronze_schema(dataset), full)
