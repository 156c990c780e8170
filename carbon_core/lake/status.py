"""`carbonlake status`: what readers see, and which runs are in flight or in doubt."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from pyspark.sql import Row, SparkSession
from pyspark.sql import functions as F

from carbon_core.lake import tables
from carbon_core.lake.delta_io import read_table, table_exists
from carbon_core.lake.runs import COMMITTED, FAILED, LEGACY_SUCCEEDED, utc_now


@dataclass(frozen=True)
class MonthStatus:
    month: dt.date
    run_id: str  # the last committed run covering the month
    committed_at: dt.datetime | None
    # A later run of the month that did not commit (failed, or died): re-run to finish it.
    pending_run: str | None = None
    pending_status: str | None = None


@dataclass
class LakeStatus:
    months: list[MonthStatus] = field(default_factory=list)
    # run id -> (status, months, reason) for runs without a committed row
    unfinished: dict[str, tuple[str, list[dt.date], str]] = field(default_factory=dict)
    claims: list[tuple[str, str, dt.datetime]] = field(default_factory=list)  # key, run, expiry

    def lines(self) -> list[str]:
        out = [f"status: {len(self.months)} published month(s)"]
        for m in self.months:
            at = f"{m.committed_at:%Y-%m-%d %H:%M:%S}" if m.committed_at else "unknown time"
            line = f"  {m.month:%Y-%m}: run {m.run_id} committed {at}"
            if m.pending_run:
                line += f"; later run {m.pending_run} {m.pending_status}: not published"
            out.append(line)
        for run_id, (status, months, reason) in sorted(self.unfinished.items()):
            span = ", ".join(f"{m:%Y-%m}" for m in months) or "months not yet known"
            out.append(f"run {run_id}: {status} ({span}){': ' + reason if reason else ''}")
        now = utc_now()
        for key, run_id, expires in self.claims:
            state = "live" if expires > now else "expired"
            out.append(f"claim {key}: run {run_id}, {state} until {expires:%Y-%m-%d %H:%M:%S} UTC")
        return out


def lake_status(spark: SparkSession, lake: tables.Lake) -> LakeStatus:
    """Read gold/run_log and control/run_claims (both a row per run or claim: small)."""
    status = LakeStatus()
    log_uri = tables.RUN_LOG.uri(lake)
    if table_exists(spark, log_uri):
        rows = (
            read_table(spark, log_uri)
            .select("run_id", "status", "months", "started_at", "ended_at", "message")
            .orderBy(F.col("started_at"), F.col("ended_at").asc_nulls_first())
            .collect()
        )
        finished = {r["run_id"] for r in rows if r["status"] in (COMMITTED, LEGACY_SUCCEEDED)}
        last_commit: dict[dt.date, tuple[str, dt.datetime | None, dt.datetime]] = {}
        for row in rows:
            if row["status"] in (COMMITTED, LEGACY_SUCCEEDED):
                for month in row["months"] or []:
                    last_commit[month] = (row["run_id"], row["ended_at"], row["started_at"])
        for row in rows:
            if row["run_id"] in finished:
                continue
            reason = ""
            if row["status"] == FAILED and row["message"]:
                try:
                    reason = str(json.loads(row["message"]).get("reason", ""))
                except (ValueError, AttributeError):
                    reason = row["message"]
            label = "failed" if row["status"] == FAILED else "started, never finished"
            before = status.unfinished.get(row["run_id"])
            months = sorted(set(row["months"] or []) | set(before[1] if before else []))
            if before is not None and row["status"] != FAILED:
                label, reason = before[0], before[2]
            status.unfinished[row["run_id"]] = (label, months, reason)
        for month, (run_id, ended, started) in sorted(last_commit.items()):
            pending = [
                (r, s)
                for r, (s, months, _) in status.unfinished.items()
                if month in months and _started(rows, r) > started
            ]
            status.months.append(
                MonthStatus(
                    month,
                    run_id,
                    ended,
                    pending[-1][0] if pending else None,
                    pending[-1][1] if pending else None,
                )
            )
    claims_uri = tables.RUN_CLAIMS.uri(lake)
    if table_exists(spark, claims_uri):
        for row in read_table(spark, claims_uri).orderBy("claim_key").collect():
            status.claims.append((row["claim_key"], row["run_id"], row["expires_at"]))
    return status


def _started(rows: list[Row], run_id: str) -> dt.datetime:
    return min(r["started_at"] for r in rows if r["run_id"] == run_id)

