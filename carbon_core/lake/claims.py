"""Claims on months (and on the lake's single-writer steps) in control/run_claims.

A run claims `month:YYYY-MM` for each of its months before it writes anything, and the
keys `ingest` (bronze and its ledger) and `derived` (the views rebuilt whole) while it
writes those. A claim is one row per key, taken with a MERGE: two runs claiming at once
cannot both commit (Delta's optimistic concurrency makes the loser retry and then see
the winner). A claim expires `lease` after its last renewal, so a killed run blocks
nobody for longer than that (docs/operations.md §9.2).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from carbon_core import schemas
from carbon_core.errors import MonthsClaimedError
from carbon_core.lake import tables
from carbon_core.lake.delta_io import read_table, retry_on_conflict, sql_text
from carbon_core.lake.runs import utc_now

INGEST_KEY = "ingest"
DERIVED_KEY = "derived"


def month_key(month: dt.date) -> str:
    return f"month:{month:%Y-%m}"


def _holder_name() -> str:
    return f"{socket.gethostname()} pid {os.getpid()}"


def _process_gone(holder: str | None) -> bool:
    """True when `holder` ("<host> pid <n>") was a process on this host that has ended."""
    host, _, pid = (holder or "").rpartition(" pid ")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@dataclass(frozen=True)
class Holder:
    """A live claim of another run on some of the keys asked for."""

    run_id: str
    keys: tuple[str, ...]
    months: tuple[dt.date, ...]
    expires_at: dt.datetime
    holder: str

    def describe(self) -> str:
        months = ", ".join(f"{m:%Y-%m}" for m in self.months) or "none"
        keys = ", ".join(self.keys)
        return (
            f"run {self.run_id} ({self.holder}) holds {keys} (its months: {months}) until "
            f"{self.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        )


@dataclass
class RunClaims:
    """The claims of one run on one lake."""

    spark: SparkSession
    lake: str
    run_id: str
    lease: dt.timedelta
    holder: str = field(default_factory=_holder_name)
    held: set[str] = field(default_factory=set)
    months: tuple[dt.date, ...] = ()
    sleep: Callable[[float], None] = time.sleep
    _lost: BaseException | None = None
    _dead: set[str] = field(default_factory=set)

    @functools.cached_property
    def _uri(self) -> str:
        """Created on first use, once per run (not at every read and commit)."""
        return tables.ensure_lake_table(self.spark, self.lake, tables.RUN_CLAIMS)

    def claim_months(self, months: Sequence[dt.date]) -> None:
        """Claim the run's months, or MonthsClaimedError (nothing claimed) when another
        live run holds one of them."""
        self.months = tuple(sorted(set(months)))
        self.acquire([month_key(m) for m in self.months], wait=None)

    def acquire(self, keys: Iterable[str], *, wait: dt.timedelta | None) -> None:
        """Claim keys; while another live run holds one, wait up to `wait` (None: refuse
        at once) and then raise MonthsClaimedError naming it."""
        wanted = sorted(set(keys) - self.held)
        if not wanted:
            return
        deadline = time.monotonic() + (wait.total_seconds() if wait is not None else 0)
        pause = 1.0
        while True:
            others = self._holders(wanted)
            if not others:
                self._merge(wanted)
                others = self._holders(wanted)
                if not others:
                    self.held.update(wanted)
                    return
                # Another run's claim landed beside ours: ours goes, the earlier stays.
                self._delete(wanted)
            if time.monotonic() >= deadline:
                raise MonthsClaimedError(
                    f"run {self.run_id} refused: " + "; ".join(h.describe() for h in others)
                )
            self.sleep(pause)
            pause = min(pause * 2, 15.0)

    def renew(self) -> None:
        """Push the expiry of every held key a lease ahead; MonthsClaimedError if another
        run took one over after it expired (the run must not commit)."""
        if self._lost is not None:
            raise MonthsClaimedError(f"run {self.run_id}: renewing its claims failed: {self._lost}")
        held = set(self.held)
        if not held:
            return
        now = utc_now()
        retry_on_conflict(
            lambda: DeltaTable.forPath(self.spark, self._uri).update(
                condition=self._mine(held),
                set={"expires_at": F.lit(now + self.lease).cast("timestamp")},
            )
        )
        lost = sorted(held - self._keys_held_by_me(held))
        if lost:
            raise MonthsClaimedError(
                f"run {self.run_id}: its claim on {', '.join(lost)} expired and was taken by "
                "another run; nothing more is committed (raise run.claim_lease_minutes)"
            )

    @contextlib.contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Renew the held claims in the background every third of a lease (a stage can
        outlast a lease); the next `renew` reports a claim lost meanwhile."""
        stop = threading.Event()
        interval = max(self.lease.total_seconds() / 3, 1.0)

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    self.renew()
                except Exception as error:  # the main thread's next renew() raises it
                    self._lost = error
                    return

        thread = threading.Thread(target=beat, name=f"claims {self.run_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=interval)

    def release_quietly(self, log: Callable[[str], None]) -> None:
        """release(), logging instead of raising (the claims expire with their lease)."""
        try:
            self.release()
        except Exception as error:  # never hides the run's own outcome
            log(f"warning: run {self.run_id} could not release its claims: {error}")

    def release(self, keys: Iterable[str] | None = None) -> None:
        """Give keys (default: all held) back."""
        chosen = set(self.held if keys is None else keys) & self.held
        if chosen:
            # Out of `held` first: the heartbeat must not renew, or miss, a key going back.
            self.held -= chosen
            self._delete(sorted(chosen))

    # --- the table ---

    def _holders(self, keys: Sequence[str]) -> list[Holder]:
        """Other runs' live claims on keys. A claim is dead once expired, or at once when
        its holder was a process on this host that no longer exists (a killed run)."""
        now = utc_now()
        rows = (
            read_table(self.spark, self._uri)
            .where(F.col("claim_key").isin(list(keys)) & (F.col("run_id") != self.run_id))
            .collect()
        )
        self._dead = {
            r["run_id"] for r in rows if r["expires_at"] <= now or _process_gone(r["holder"])
        }
        by_run: dict[str, list[Any]] = {}
        for row in rows:
            if row["run_id"] not in self._dead:
                by_run.setdefault(row["run_id"], []).append(row)
        return [
            Holder(
                run_id,
                tuple(sorted(r["claim_key"] for r in claimed)),
                tuple(sorted(claimed[0]["months"] or [])),
                max(r["expires_at"] for r in claimed),
                str(claimed[0]["holder"]),
            )
            for run_id, claimed in sorted(by_run.items())
        ]

    def _keys_held_by_me(self, keys: set[str]) -> set[str]:
        rows = read_table(self.spark, self._uri).where(self._mine(keys)).collect()
        return {r["claim_key"] for r in rows}

    def _mine(self, keys: Iterable[str]) -> str:
        listed = ", ".join(sql_text(k) for k in sorted(keys))
        return f"run_id = {sql_text(self.run_id)} AND claim_key IN ({listed})"

    def _merge(self, keys: Sequence[str]) -> None:
        """One MERGE taking each key that is free, expired or already ours."""
        now = utc_now()
        rows = [(k, self.run_id, list(self.months), now, now + self.lease, self.holder) for k in keys]

        def merge() -> None:
            source = self.spark.createDataFrame(rows, schemas.RUN_CLAIMS)
            (
                DeltaTable.forPath(self.spark, self._uri)
                .alias("t")
                .merge(source.alias("s"), "t.claim_key = s.claim_key")
                .whenMatchedUpdateAll(condition=self._takeable())
                .whenNotMatchedInsertAll()
                .execute()
            )

        retry_on_conflict(merge)

    def _takeable(self) -> str:
        """A matched claim the MERGE may overwrite: ours, expired, or of a dead process."""
        dead = ", ".join(sql_text(r) for r in sorted(self._dead))
        return "t.run_id = s.run_id OR t.expires_at <= s.claimed_at" + (
            f" OR t.run_id IN ({dead})" if dead else ""
        )

    def _delete(self, keys: Sequence[str]) -> None:
        retry_on_conflict(
            lambda: DeltaTable.forPath(self.spark, self._uri).delete(self._mine(keys))
        )
