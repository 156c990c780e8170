"""Calendar months: month arithmetic on the driver and month columns and frames in Spark.

A month is named by its first day (a ``date``); periods ``[start, end)`` are spread over
the calendar months they touch in proportion to the overlap in seconds, and hourly rows
fall into the month of their hour (docs/methodology.md §2). All times are UTC, the
session time zone.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from carbon_core.errors import CarbonlakeError

if TYPE_CHECKING:
    from carbon_core.config import MethodologySettings

MONTH = "month"
MONTH_SCHEMA = T.StructType([T.StructField(MONTH, T.DateType(), False)])
RUN_CALENDAR_SCHEMA = T.StructType(
    [
        T.StructField(MONTH, T.DateType(), False),
        T.StructField("month_end", T.DateType(), False),
        T.StructField("model_version", T.StringType(), True),
    ]
)
_MONTH_TEXT = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_ONE_MONTH_SQL = "INTERVAL 1 MONTH"

# --- on the driver (a run's month list is small) ------------------------------


def parse_month(text: str) -> dt.date:
    """'YYYY-MM' -> the first day of that month.

    Example::

        parse_month("2025-02")  # datetime.date(2025, 2, 1)
    """
    if not isinstance(text, str) or not _MONTH_TEXT.match(text):
        raise ValueError(f"expected a month as YYYY-MM, got {text!r}")
    year, month = text.split("-")
    return dt.date(int(year), int(month), 1)


def shift_month(month: dt.date, count: int) -> dt.date:
    """The first day of the month `count` months after the month of `month` (negative: before).

    Example::

        shift_month(dt.date(2025, 1, 15), -2)  # datetime.date(2024, 11, 1)
    """
    index = month.year * 12 + (month.month - 1) + count
    return dt.date(index // 12, index % 12 + 1, 1)


def month_range(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every month start from the month of `first` to the month of `last`, inclusive."""
    if last < first:
        raise ValueError(f"month range ends ({last:%Y-%m}) before it starts ({first:%Y-%m})")
    months = []
    current = dt.date(first.year, first.month, 1)
    while current <= last:
        months.append(current)
        current = shift_month(current, 1)
    return months


# --- month columns --------------------------------------------------------------


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


# --- month frames -----------------------------------------------------------------


def months_frame(spark: SparkSession, months: Iterable[dt.date]) -> DataFrame:
    """A one-column DataFrame (`month`, DateType) of the distinct first days of `months`."""
    firsts = sorted({dt.date(m.year, m.month, 1) for m in months})
    return spark.createDataFrame([(m,) for m in firsts], MONTH_SCHEMA)


def run_calendar(
    spark: SparkSession,
    months: Sequence[dt.date],
    methodology: MethodologySettings | None = None,
) -> DataFrame:
    """(month, month_end, model_version) per run month; month_end is exclusive and
    model_version is null without a methodology."""
    rows = []
    for month in sorted(set(months)):
        if month.day != 1:
            raise CarbonlakeError(f"months must be first days of months, got {month.isoformat()}")
        version = None
        if methodology is not None:
            version = methodology.version_for(month)
            if version is None:
                raise CarbonlakeError(
                    f"no methodology version configured for {month:%Y-%m} "
                    "(methodology.versions starts later)"
                )
        rows.append((month, shift_month(month, 1), version))
    return spark.createDataFrame(rows, RUN_CALENDAR_SCHEMA)
