"""One local SparkSession with Delta for the whole test session."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from carbon_core.config import SparkSettings
from carbon_core.session import build_spark_session, release_persisted_since


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = build_spark_session(
        SparkSettings(
            master="local[2]",
            app_name="carbonlake-tests",
            shuffle_partitions=2,
            driver_memory="3g",
            conf={
                "spark.default.parallelism": "2",
                "spark.sql.adaptive.coalescePartitions.enabled": "true",
            },
        )
    )
    yield session
    session.stop()


@pytest.fixture(autouse=True)
def keep_shuffle_partitions() -> Iterator[None]:
    """Restore the shared session's shuffle partitions after each test: a test that runs
    a job through the command line builds its session from conf/local.yaml, and
    getOrCreate applies that file's 8 partitions to the session every later test uses."""
    session = SparkSession.getActiveSession()
    before = session.conf.get("spark.sql.shuffle.partitions") if session else None
    yield
    session = SparkSession.getActiveSession()
    if session is not None and before is not None:
        session.conf.set("spark.sql.shuffle.partitions", before)


@pytest.fixture(autouse=True, scope="module")
def release_spark_memory() -> Iterator[None]:
    """After each module, drop what its tests cached or checkpointed and let the JVM
    collect it: one session serves ~130 tests, and leftovers once filled the driver's
    heap until a small broadcast failed with "Not enough memory"."""
    yield
    session = SparkSession.getActiveSession()
    if session is None:
        return
    session.catalog.clearCache()
    release_persisted_since(session, frozenset())
    gc.collect()  # Python's references keep the JVM objects (and their broadcasts) alive
    session.sparkContext._jvm.System.gc()
