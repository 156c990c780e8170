"""The run's months as a small DataFrame: month start, next month start, methodology version."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from carbon_core.config import MethodologySettings
from carbon_core.errors import CarbonlakeError
from carbon_core.months import add_months

CALENDAR_SCHEMA = T.StructType(
    [
        T.StructField("month", T.DateType(), False),
        T.StructField("month_end", T.DateType(), False),
        T.StructField("model_version", T.StringType(), True),
    ]
)


def month_frame(
    spark: SparkSession,
    months: Sequence[dt.date],
    methodology: MethodologySettings | None = None,
) -> DataFrame:
    """(month, month_end, model_version) per run month; month_end is exclusive."""
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
        rows.append((month, add_months(month, 1), version))
    return spark.createDataFrame(rows, CALENDAR_SCHEMA)
