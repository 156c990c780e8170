"""The one place that builds a SparkSession with Delta Lake configured."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import SparkSession

from carbon_core.config import DELTA_SESSION_CONF, SparkSettings
from carbon_core.errors import ConfigError, DeltaJarsMissingError
from carbon_core.hadoop import delta_classes_loaded, has_scheme, unpersist_rdds_except

DELTA_ARTIFACT = "io.delta:delta-spark_2.13"
_REPO_ROOT = Path(__file__).resolve().parent.parent
_LOCAL_LOG4J = Path(__file__).resolve().parent / "resources" / "log4j2.properties"
# The JVM never JIT-compiles a method over 8,000 bytes of bytecode; Spark's generated
# code for the ingest's validation (every value parsed and checked in one fused stage)
# exceeds that and would then run interpreted, at about half the speed. Clusters need
# the same flag in spark.executor.extraJavaOptions (docs/operations.md).
JIT_HUGE_METHODS_OPTION = "-XX:-DontCompileHugeMethods"


def delta_version() -> str:
    """Version of the delta-spark pip package; the JVM JARs must match it."""
    return importlib.metadata.version("delta-spark")


def delta_packages_coordinate() -> str:
    """Maven coordinate for spark-submit --packages."""
    return f"{DELTA_ARTIFACT}:{delta_version()}"


def _cached_delta_jars() -> list[str]:
    """JARs fetched by scripts/setup (or a folder named by $CARBONLAKE_DELTA_JARS)."""
    folder = Path(os.environ.get("CARBONLAKE_DELTA_JARS", _REPO_ROOT / ".cache" / "delta-jars"))
    main_jar = folder / f"delta-spark_2.13-{delta_version()}.jar"
    if not main_jar.is_file():
        return []
    return sorted(str(p) for p in folder.glob("*.jar"))


def _extra_jars(entries: tuple[str, ...]) -> list[str]:
    """`spark.extra_jars` as spark.jars entries: a local folder stands for its *.jar files,
    a URI (hdfs://, s3a://, https://) is passed on for Spark to fetch."""
    jars: list[str] = []
    for entry in entries:
        if has_scheme(entry):
            jars.append(entry)
            continue
        path = Path(entry).expanduser()
        found = sorted(path.glob("*.jar")) if path.is_dir() else [path] if path.is_file() else []
        if not found:
            raise ConfigError(f"spark.extra_jars: no JAR file at {entry}")
        jars.extend(str(p.resolve()) for p in found)
    return jars


def _missing_jars_message() -> str:
    return (
        "Delta Lake JARs are not available to Spark: run scripts/setup (fetches "
        f"{delta_packages_coordinate()} once with Maven into .cache/delta-jars), set "
        "CARBONLAKE_DELTA_JARS to a folder holding them, or on a cluster give spark-submit "
        "--jars '.cache/delta-jars/*.jar' (scripts/delta-jars) or --packages "
        f"{delta_packages_coordinate()}, with spark.delta_jars: provided"
    )


# Small, fixed settings that make local mode and tests fast and numbers reproducible.
_BASE_CONF: dict[str, str] = {
    **DELTA_SESSION_CONF,
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.adaptive.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.databricks.delta.schema.autoMerge.enabled": "false",
    # Partition overwrites must only ever happen through replaceWhere.
    "spark.sql.sources.partitionOverwriteMode": "static",
    "spark.sql.legacy.timeParserPolicy": "CORRECTED",
    # Python workers fit one small model per series (the forecast); BLAS threads on top
    # of Spark's task slots oversubscribe the cores and slow every fit.
    "spark.executorEnv.OPENBLAS_NUM_THREADS": "1",
    "spark.executorEnv.OMP_NUM_THREADS": "1",
    # Spark deletes a shuffle's files only once a driver GC finds its plan gone, and
    # forces that GC every 30 minutes by default: at scale one dataset's shuffle files
    # would sit on disk through the next dataset's ingest.
    "spark.cleaner.periodicGC.interval": "5min",
}


_LOCAL_STATUS_RETENTION: dict[str, str] = {
    "spark.ui.retainedJobs": "50",
    "spark.ui.retainedStages": "50",
    "spark.ui.retainedTasks": "2000",
    "spark.sql.ui.retainedExecutions": "20",
    "spark.ui.dagGraph.retainedRootRDDs": "50",
}


def build_spark_session(settings: SparkSettings) -> SparkSession:
    """Build (or reuse) the SparkSession with Delta; fail in one line if Delta is missing."""
    builder = SparkSession.builder.appName(settings.app_name)
    if settings.master:
        builder = builder.master(settings.master)
    conf = dict(_BASE_CONF)
    conf["spark.sql.shuffle.partitions"] = str(settings.shuffle_partitions)
    if settings.master and settings.master.startswith("local"):
        conf["spark.ui.enabled"] = "false"
        # With the UI off nobody reads the status store, yet by default it keeps 1,000
        # jobs, stages and SQL plans in the heap: a session that serves many runs (tests,
        # a notebook) once filled its heap with them until a small broadcast failed.
        conf.update(_LOCAL_STATUS_RETENTION)
        # Start-up warnings (loopback hostname, native Hadoop) are noise on a laptop;
        # in local mode the driver's JVM runs the tasks, so it gets the JIT option too.
        conf["spark.driver.extraJavaOptions"] = (
            f"-Dlog4j2.configurationFile={_LOCAL_LOG4J} {JIT_HUGE_METHODS_OPTION}"
        )
        if settings.driver_memory:
            conf["spark.driver.memory"] = settings.driver_memory
        # Python workers (the forecast's applyInPandas) must use the driver's
        # interpreter, which has pandas and statsmodels, not whatever python3 is on PATH.
        # (PySpark reads the variable when the context starts; the conf key is not enough.)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if settings.delta_jars == "auto":
        jars = _cached_delta_jars()
        if jars:
            conf["spark.jars"] = ",".join(jars)
        else:
            conf["spark.jars.packages"] = delta_packages_coordinate()
    elif settings.delta_jars == "packages":
        conf["spark.jars.packages"] = delta_packages_coordinate()
    extra = _extra_jars(settings.extra_jars)
    if extra:
        conf["spark.jars"] = ",".join([*filter(None, [conf.get("spark.jars")]), *extra])
    conf.update(settings.conf)
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as error:  # the JVM did not start: Ivy could not resolve the JARs
        raise DeltaJarsMissingError(_missing_jars_message()) from error
    if not delta_classes_loaded(spark):
        raise DeltaJarsMissingError(_missing_jars_message())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def release_persisted_since(spark: SparkSession, before: frozenset[int]) -> None:
    """Unpersist the RDDs persisted after `before` was taken.

    `catalog.clearCache()` drops cached DataFrames but not local checkpoints, whose
    blocks stay in the block manager until the JVM happens to collect their RDDs; a
    long-lived session (tests, a notebook, several runs) would fill its heap with them.
    """
    unpersist_rdds_except(spark, before)


@contextmanager
def temporary_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    """A runtime SQL setting for the block, the session's own setting restored after."""
    before = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


# The tag prefix of label_jobs under Spark Connect (a tag may not contain a comma).
STAGE_TAG = "carbonlake-stage:"


def is_connect(spark: SparkSession) -> bool:
    """True for a Spark Connect session: no JVM and no SparkContext in this process."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def label_jobs(spark: SparkSession, group: str, description: str | None = None) -> None:
    """Label the Spark jobs that follow with a stage's name (Spark UI, REST API, benchmark).

    A classic session sets the job group. Spark Connect has no SparkContext: the session's
    operations get the tag `carbonlake-stage:<group>` instead, replacing the previous
    stage's (docs/operations.md §2.6).
    """
    if is_connect(spark):
        for tag in list(spark.getTags()):
            if tag.startswith(STAGE_TAG):
                spark.removeTag(tag)
        spark.addTag(STAGE_TAG + group.replace(",", ";"))
        return
    spark.sparkContext.setJobGroup(group, description or f"carbonlake {group}")
