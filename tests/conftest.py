"""One local SparkSession with Delta for the whole test session."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

import carbon_core.session
from carbon_core.config import SparkSettings
from carbon_core.session import build_spark_session, release_persisted_since

# The settings of the one session every test uses, CLI commands under test included.
TEST_SPARK = SparkSettings(
    master="local[2]",
    app_name="carbonlake-tests",
    shuffle_partitions=2,
    driver_memory="3g",
    conf={
        "spark.default.parallelism": "2",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
    },
)


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """The session, which a CLI command run by a test (`carbon_core.cli.main`) reuses as is.

    A command builds its session from its own config (conf/local.yaml or the defaults:
    8 shuffle partitions), and `getOrCreate` applies a builder's settings to the running
    session, so every later test would run with them. For as long as this fixture lives,
    `build_spark_session` hands out this session, built from TEST_SPARK, instead; a test
    that runs a command requests `spark` (directly or through a fixture) to be covered.
    """
    session = build_spark_session(TEST_SPARK)

    def shared_session(settings: SparkSettings) -> SparkSession:
        assert isinstance(settings, SparkSettings), settings
        return session

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(carbon_core.session, "build_spark_session", shared_session)
        yield session
    session.stop()


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
