"""One local SparkSession with Delta for the whole test session."""

from __future__ import annotations

import dataclasses
import gc
import os
import shutil
from collections.abc import Callable, Iterator

import object_store
import pytest
from helpers import SESSION_WORLD
from pyspark.sql import SparkSession

import carbon_core.session
from carbon_core.config import Config, SparkSettings, config_from_mapping
from carbon_core.session import build_spark_session, release_persisted_since

# The AWS SDK (the S3A connector's, in the session's JVM) must never look for an EC2
# instance's metadata service: the tests' only object store is the local S3Proxy.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

# The settings of the one session every test uses, CLI commands under test included.
# The S3A connector's JARs (scripts/setup) are on it from the start, for the object-store
# test's s3a:// locations (the `s3_bucket` fixture).
TEST_SPARK = SparkSettings(
    master="local[2]",
    app_name="carbonlake-tests",
    shuffle_partitions=2,
    driver_memory="4g",
    extra_jars=(str(object_store.S3_JARS),) if object_store.s3a_jars_cached() else (),
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


@pytest.fixture(scope="session")
def s3_bucket(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The name of a bucket on a local S3-compatible server that `spark` reaches as
    s3a://<name>/...: S3Proxy on 127.0.0.1 (tests/object_store.py), started on first use
    and stopped at the end of the test session."""
    if not object_store.s3a_jars_cached() or not object_store.s3a_available(spark):
        pytest.fail(
            f"the S3A connector's JARs are not in {object_store.S3_JARS}: run scripts/setup"
        )
    server = object_store.start_s3proxy(tmp_path_factory.mktemp("s3proxy"))
    try:
        bucket = server.create_bucket("carbonlake-test")
        object_store.configure_s3a(spark, object_store.s3a_bucket_settings(server, bucket))
        yield bucket
    finally:
        server.stop()


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


@dataclasses.dataclass(frozen=True)
class GeneratedWorld:
    """A world run once for the session: a landing and the lake of its first run."""

    config: Config  # of a copy (generated_world hands out copies)
    counts: dict[str, int]  # landing rows per dataset
    report: object  # the first run's RunReport


@pytest.fixture(scope="session")
def _pristine_world(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory):
    """Two months (both methodology versions) of a 20,000-row world with 1 % malformed
    rows, generated and run once: every run costs minutes on CI's two cores."""
    from carbon_core.pipeline import run_pipeline
    from carbonlake_tools.generate import generate_world

    root = tmp_path_factory.mktemp("generated-world")
    landing = root / "landing"
    counts = generate_world(spark, landing, **SESSION_WORLD)
    config = config_from_mapping(
        {"lake": str(root / "lake"), "landing": str(landing), "exports": str(root / "exports")}
    )
    report = run_pipeline(spark, config, log=lambda _line: None)
    return config, counts, report


@pytest.fixture(scope="session")
def generated_world(
    _pristine_world, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], GeneratedWorld]:
    """copy(name): the session's world with a lake of its own, as its first run left it,
    for a module whose tests run, fail and kill runs on it. The landing is shared: read it,
    never change it."""
    config, counts, report = _pristine_world

    def copy(name: str) -> GeneratedWorld:
        root = tmp_path_factory.mktemp(name)
        shutil.copytree(config.lake, root / "lake")
        mine = config.with_overrides(lake=str(root / "lake"), exports=str(root / "exports"))
        return GeneratedWorld(mine, dict(counts), report)

    return copy
