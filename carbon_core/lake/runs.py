"""The run protocol: what a run records in gold/run_log, and what readers read.

A run appends `started` when it begins, then either `committed`, with the Delta version
of every table it wrote, or `failed`, with the reason. A killed run leaves `started`
alone. Readers never read a month-partitioned table as it is now: each month is read at
the version recorded by the last committed run covering it (Delta time travel), so the
commits of a run that failed or died half-way are invisible, and a later run of the
same months replaces them (docs/operations.md §9).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carbon_core import schemas
from carbon_core.errors import InputError
from carbon_core.lake import tables
from carbon_core.lake.delta_io import (
    months_predicate,
    read_table,
    retry_on_conflict,
    table_exists,
    write_table,
)

STARTED = "started"
COMMITTED = "committed"
FAILED = "failed"
# A run logged before the protocol: it committed, without recording versions.
LEGACY_SUCCEEDED = "succeeded"


def commit_tag(run_id: str) -> str:
    """The userMetadata of every Delta commit the run makes (in each table's history)."""
    return f"carbonlake run {run_id}"


def utc_now() -> dt.datetime:
    """Naive UTC, as the lake's timestamps are written."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class RunRecord:
    """One gold/run_log row."""

    run_id: str
    status: str
    started_at: dt.datetime
    months: Sequence[dt.date] = ()
    input_versions: Mapping[str, int] = field(default_factory=dict)
    invariants: str = "[]"
    message: str = ""
    table_versions: Mapping[str, int] = field(default_factory=dict)


def append_run_record(spark: SparkSession, lake: str, record: RunRecord) -> None:
    """One append commit to gold/run_log (a blind append: it never conflicts with another
    run's). A lake logged before `table_versions` existed gets the column in the same
    commit."""
    ended = None if record.status == STARTED else utc_now()
    row = (
        record.run_id,
        record.started_at,
        ended,
        record.status,
        list(record.months),
        dict(record.input_versions),
        record.invariants,
        record.message,
        dict(record.table_versions),
    )
    frame = spark.createDataFrame([row], schemas.RUN_LOG)
    uri = tables.ensure_lake_table(spark, lake, tables.RUN_LOG)
    retry_on_conflict(lambda: write_table(frame, uri, mode="append", merge_schema=True))


def failure_message(error: BaseException) -> str:
    """The reason a failed run records: the error's type and first line."""
    first = (str(error).strip().splitlines() or [""])[0]
    return json.dumps({"error": type(error).__name__, "reason": first[:2000]})


@dataclass(frozen=True)
class PublishedMonths:
    """Which months readers see as they are now, and which at an earlier version.

    Only runs write the month-partitioned tables, each under a `started` record and only
    in its claimed months. A month whose last writer committed reads as it is now. A month
    written since by a run that has not committed (it failed, died, or is still running)
    is `pinned` to the versions of its last committed run; a month no run committed is
    `hidden`."""

    pinned: Mapping[dt.date, Mapping[str, int] | None]  # None: committed before versions
    hidden: frozenset[dt.date]
    logged: bool  # False: a lake without gold/run_log

    @property
    def excluded(self) -> list[dt.date]:
        """The months not read as they are now."""
        return sorted(self.hidden | set(self.pinned))


def published_months(spark: SparkSession, lake: tables.Lake) -> PublishedMonths:
    """What gold/run_log says readers see (one small read: a row per run and status)."""
    uri = tables.RUN_LOG.uri(lake)
    if not table_exists(spark, uri):
        return PublishedMonths({}, frozenset(), logged=False)
    log = read_table(spark, uri)
    versions_column = F.col("table_versions") if "table_versions" in log.columns else F.lit(None)
    rows = log.select(
        "run_id", "status", "months", "started_at", versions_column.alias("table_versions")
    ).collect()
    done = {r["run_id"] for r in rows if r["status"] in (COMMITTED, LEGACY_SUCCEEDED)}
    # month -> (started_at, table versions) of its last committed run
    last: dict[dt.date, tuple[dt.datetime, Mapping[str, int] | None]] = {}
    for row in sorted(
        (r for r in rows if r["status"] in (COMMITTED, LEGACY_SUCCEEDED)),
        key=lambda r: r["started_at"],
    ):
        versions = None if row["status"] == LEGACY_SUCCEEDED else (row["table_versions"] or {})
        for month in row["months"] or []:
            last[month] = (row["started_at"], versions)
    pinned: dict[dt.date, Mapping[str, int] | None] = {}
    hidden: set[dt.date] = set()
    for row in rows:
        if row["run_id"] in done:
            continue
        for month in row["months"] or []:
            if month not in last:
                hidden.add(month)
            elif row["started_at"] > last[month][0]:
                pinned[month] = last[month][1]
    return PublishedMonths(pinned, frozenset(hidden), logged=True)


def read_published(
    spark: SparkSession,
    lake: tables.Lake,
    table: tables.LakeTable,
    *,
    published: PublishedMonths | None = None,
) -> DataFrame:
    """A month-partitioned table as readers see it (PublishedMonths): the commits of a run
    that has not committed its run-log row are invisible.

    A table without months (a derived view, replaced whole in one commit) reads as is."""
    uri = table.uri(lake)
    if not table_exists(spark, uri):
        raise InputError(f"lake table not found: {uri} (run `carbonlake run` first)")
    current = read_table(spark, uri)
    if table.partition_by[:1] != ("month",):
        return current
    published = published if published is not None else published_months(spark, lake)
    if not published.excluded:
        return current
    parts = [current.where(~F.col("month").isin(*[F.lit(m) for m in published.excluded]))]
    by_version: dict[int, list[dt.date]] = {}
    for month, versions in sorted(published.pinned.items()):
        if versions is None:
            raise InputError(
                f"{table.name}: {month:%Y-%m} was published by a run logged before table "
                "versions were recorded and written since by a run that did not commit; "
                f"re-run {month:%Y-%m}"
            )
        if table.name in versions:
            by_version.setdefault(versions[table.name], []).append(month)
    for as_of, months in sorted(by_version.items()):
        try:
            frame = read_table(spark, uri, version=as_of)
        except (PySparkException, Py4JJavaError) as error:  # a version Delta no longer holds
            raise InputError(
                f"{table.name}: version {as_of}, which holds months "
                f"{', '.join(f'{m:%Y-%m}' for m in months)} as last published, can no "
                f"longer be read ({str(error).splitlines()[0]}); re-run those months"
            ) from None
        parts.append(frame.where(months_predicate(months, "month")))
    return reduce(DataFrame.unionByName, parts)


def published_at(spark: SparkSession, lake: tables.Lake) -> dt.datetime | None:
    """When the last committed run published (None: no run recorded with the protocol)."""
    uri = tables.RUN_LOG.uri(lake)
    if not table_exists(spark, uri):
        return None
    last = (
        read_table(spark, uri)
        .where(F.col("status") == COMMITTED)
        .agg(F.max("ended_at").alias("at"))
        .first()
    )
    return None if last is None else last["at"]
