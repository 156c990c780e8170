"""The monthly life of a lake, measured: landing and running the last month alone on a lake
that holds every month before it, then running that month again with nothing new landed.

The generated landing holds all months in every file, so the measurement first splits it
(untimed): the hourly datasets' rows of the last month go to files of their own, staged
aside, the rest to a landing of the earlier months; the other datasets are linked as they
are. A lake of the earlier months is built from that landing (untimed). Then:

- `incremental_month_s`: move the staged files into the landing and `run` the last month
  (its ingest takes only the new files, its stages read only that month);
- `noop_run_s`: `run` the last month again (nothing new: the ingest reads no file).
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from carbon_core.config import Config
from carbon_core.schemas import MONTH_PARTITIONED

Log = Callable[[str], None]


def split_last_month(
    spark: SparkSession, landing: Path, earlier: Path, staged: Path, last: dt.date
) -> None:
    """earlier/<dataset>/: the landing without the hourly rows of `last`; staged/<dataset>/:
    those rows (Parquet, file by file as generated, so that schemas stay apart)."""
    for dataset in sorted(p.name for p in landing.iterdir() if p.is_dir()):
        source = landing / dataset
        if dataset not in MONTH_PARTITIONED:
            (earlier / dataset).parent.mkdir(parents=True, exist_ok=True)
            (earlier / dataset).symlink_to(source.resolve(), target_is_directory=True)
            continue
        column = MONTH_PARTITIONED[dataset]
        for file in sorted(source.rglob("*.parquet")):
            if file.name.startswith(("_", ".")):
                continue
            rows = spark.read.parquet(str(file))
            month = F.trunc(F.to_date(F.col(column)), "month")
            in_last = F.coalesce(month == F.lit(last), F.lit(False))
            name = file.relative_to(source).as_posix().replace("/", "_").removesuffix(".parquet")
            rows.where(~in_last).write.parquet(str(earlier / dataset / name))
            rows.where(in_last).write.parquet(str(staged / dataset / name))


def _land(staged: Path, landing: Path) -> None:
    """Move the staged folders into the landing (what an operator's delivery does)."""
    for dataset_dir in sorted(p for p in staged.iterdir() if p.is_dir()):
        for part in sorted(p for p in dataset_dir.iterdir() if p.is_dir()):
            target = landing / dataset_dir.name / f"{part.name}-last-month"
            part.rename(target)


def measure_incremental(
    spark: SparkSession, config: Config, landing: Path, work: Path, months: list[dt.date], log: Log
) -> dict[str, Any]:
    """incremental_month_s and noop_run_s on a copy of the world (module docstring)."""
    from carbon_core.pipeline import label_jobs, run_pipeline

    last = months[-1]
    shutil.rmtree(work, ignore_errors=True)
    earlier, staged, lake = work / "landing", work / "staged", work / "lake"
    label_jobs(spark, "bench/incremental_setup")
    started = time.monotonic()
    split_last_month(spark, landing, earlier, staged, last)
    setup = config.with_overrides(lake=str(lake), landing=str(earlier))
    run_pipeline(spark, setup, month_from=months[0], month_to=months[-2], log=log)
    setup_s = time.monotonic() - started

    label_jobs(spark, "bench/incremental_month")
    started = time.monotonic()
    _land(staged, earlier)
    month = run_pipeline(spark, setup, month_from=last, month_to=last, log=log)
    incremental_s = time.monotonic() - started
    new_rows = month.ingest.rows_in if month.ingest is not None else 0

    label_jobs(spark, "bench/noop_run")
    started = time.monotonic()
    noop = run_pipeline(spark, setup, month_from=last, month_to=last, log=log)
    noop_s = time.monotonic() - started
    noop_rows = noop.ingest.rows_in if noop.ingest is not None else 0
    shutil.rmtree(work, ignore_errors=True)
    return {
        "incremental_month": last.isoformat(),
        "incremental_setup_s": round(setup_s, 2),
        "incremental_month_s": round(incremental_s, 2),
        "incremental_rows_ingested": new_rows,
        "noop_run_s": round(noop_s, 2),
        "noop_rows_ingested": noop_rows,
    }
