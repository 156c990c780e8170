"""Reconcile frequencies into calendar months (METHODOLOGY section 2).

A period ``[start, end)`` is spread over the calendar months it touches in
proportion to the overlap in seconds; hourly rows fall into the month of their
hour. All times are UTC (the session time zone).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

MONTH = "month"
MONTH_SCHEMA = T.StructType([T.StructField(MONTH, T.DateType(), False)])
_ONE_MONTH_SQL = "INTERVAL 1 MONTH"


def month_of(col: str | Column) -> Column:
    """The first day (DateType) of the UTC calendar month of a timestamp or date."""
    return F.trunc(F.col(col) if isinstance(col, str) else col, "month")


def month_end(month: str | Column) -> Column:
    """The exclusive end (midnight UTC of the next month's first day) of a month, as a timestamp."""
    start = F.col(month) if isinstance(month, str) else month
    return F.add_months(start, 1).cast(T.TimestampType())


def spread_over_months(
    df: DataFrame,
    *,
    value_columns: Sequence[str],
    start: str = "period_start",
    end: str = "period_end",
) -> DataFrame:
    """Add `month`; each value column times overlap(period, month) / period length, in seconds.

    One output row per input row and calendar month the period touches; rows whose
    period is empty or inverted (end <= start) or has a null bound produce no row.
    """
    start_col, end_col = F.col(start), F.col(end)
    valid_period = start_col.isNotNull() & end_col.isNotNull() & (end_col > start_col)
    # Microseconds keep the fraction exact for sub-second bounds as well.
    period_us = F.unix_micros(end_col) - F.unix_micros(start_col)
    month_start_ts = F.col(MONTH).cast(T.TimestampType())
    overlap_us = F.unix_micros(F.least(end_col, month_end(MONTH))) - F.unix_micros(
        F.greatest(start_col, month_start_ts)
    )
    # trunc(end) may be a month the exclusive end does not reach; its overlap is 0 and
    # the row is filtered below.
    touched = F.sequence(month_of(start_col), month_of(end_col), F.expr(_ONE_MONTH_SQL))
    exploded = df.filter(valid_period).withColumn(MONTH, F.explode(touched))
    weighted = exploded.withColumn("_overlap_us", overlap_us).filter(F.col("_overlap_us") > 0)
    fraction = F.col("_overlap_us").cast(T.DoubleType()) / period_us.cast(T.DoubleType())
    others = [c for c in df.columns if c not in value_columns and c != MONTH]
    return weighted.select(
        *others,
        MONTH,
        *[(F.col(c).cast(T.DoubleType()) * fraction).alias(c) for c in value_columns],
    )


def months_frame(spark: SparkSession, months: Iterable[dt.date]) -> DataFrame:
    """A one-column DataFrame (`month`, DateType) of the distinct first days of `months`."""
    firsts = sorted({dt.date(m.year, m.month, 1) for m in months})
    return spark.createDataFrame([(m,) for m in firsts], MONTH_SCHEMA)
