"""One local SparkSession with Delta for the whole test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from carbon_core.config import SparkSettings
from carbon_core.session import build_spark_session


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = build_spark_session(
        SparkSettings(
            master="local[2]",
            app_name="carbonlake-tests",
            shuffle_partitions=2,
            driver_memory="2g",
            conf={
                "spark.default.parallelism": "2",
                "spark.sql.adaptive.coalescePartitions.enabled": "true",
            },
        )
    )
    yield session
    session.stop()
