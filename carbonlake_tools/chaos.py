"""`scripts/chaos`: kill runs at random moments and check that readers never notice.

1. Generates a small world and runs it cleanly (run, then export) into a reference lake
   in this process, noting how long each table commit of the run takes.
2. On a second lake, `--kills` times: starts `carbonlake run` (or, for one kill in ten,
   `carbonlake export`) in a process group of its own and SIGKILLs the whole group, the
   Python driver and its JVM, at a chosen moment: inside each table commit in turn
   (after its "writing" line, part-way through the commit's duration in the clean run),
   between commits (right after a "version" line, before the run log's `committed`),
   or at a random time. After each kill it checks what a reader sees: every table
   readable by Spark and by delta-rs, conservation per month and quantity in the
   published tables, and the exports complete (each manifest row's file in place, one
   file per payer-month folder).
3. Re-runs to completion (in this process) and compares the published gold tables and
   the export files with the reference (relative 1e-9; `last_refresh_timestamp` aside).
4. Concurrency: two runs on disjoint months at once (both must commit), and an
   overlapping pair (the second must exit 3 at once, naming the first); then compares
   with the reference again.

Prints one line on stdout, e.g. `chaos: 20 kills (commit boundaries hit: 18), 0
inconsistent views, 0 differences after re-run; concurrency: disjoint ok, overlap
refused`, and exits non-zero when anything is off.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from carbon_core import schemas
from carbon_core import session as spark_session
from carbon_core.calendar import shift_month
from carbon_core.config import SparkSettings
from carbon_core.lake import read_table, table_exists, tables
from carbon_core.lake.runs import read_published

# The tables the commit stage writes, in its order (the run log's commit comes last).
COMMIT_ORDER: tuple[str, ...] = (
    *(t.name for t in tables.MONTHLY_TABLES),
    tables.quarantine("utility_invoices").name,
)
GOLD = (
    tables.SITE_MONTHLY,
    tables.ACCOUNT_EMISSIONS,
    tables.UNALLOCATED,
    tables.BU_MONTHLY,
    tables.RACK_UTILISATION,
    tables.REGION_BENCHMARKS,
)
REL_TOLERANCE = 1e-9
FIRST_MONTH = dt.date(2024, 11, 1)
REFUSED_EXIT = 3
MARKER = "CARBONLAKE_CHAOS"


@dataclass(frozen=True)
class KillPlan:
    command: str  # "run" or "export"
    target: str  # "inside:<table>", "after:<table>" or "random"


@dataclass
class ChildRun:
    """A `carbonlake` process: its output lines with the time each arrived."""

    process: subprocess.Popen[str]
    stderr_path: Path
    lines: list[tuple[float, str]] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def follow(self) -> None:
        def read(stream: IO[str]) -> None:
            for line in stream:
                self.lines.append((time.monotonic(), line.rstrip("\n")))

        assert self.process.stdout is not None
        self._reader = threading.Thread(target=read, args=(self.process.stdout,), daemon=True)
        self._reader.start()

    def wait_for(self, text: str, timeout: float) -> bool:
        """Until a line containing text arrives (True) or the process ends (False)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            while seen < len(self.lines):
                if text in self.lines[seen][1]:
                    return True
                seen += 1
            if self.process.poll() is not None and seen >= len(self.lines):
                return False
            time.sleep(0.02)
        return False

    def kill(self) -> None:
        """SIGKILL the process group and every descendant (the JVM included)."""
        try:
            family = [
                psutil.Process(self.process.pid),
                *psutil.Process(self.process.pid).children(recursive=True),
            ]
        except psutil.NoSuchProcess:
            family = []
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for member in family:
            with suppress(psutil.NoSuchProcess):
                member.kill()
        self.process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)

    def finish(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=5)
        return code

    def last_commit_marker(self) -> str | None:
        for _, line in reversed(self.lines):
            if line.startswith("commit ") or line.endswith(": committed"):
                return line
        return None


@dataclass
class Chaos:
    work: Path
    python: str
    spark: SparkSession
    log: IO[str]
    landing: Path  # read only: every run of the exercise ingests from it
    problems: list[str] = field(default_factory=list)
    started: int = 0

    def config(self, name: str) -> Path:
        path = self.work / f"{name}.yaml"
        path.write_text(
            "\n".join(
                [
                    f"lake: {self.work / name / 'lake'}",
                    f"landing: {self.landing}",
                    f"exports: {self.work / name / 'exports'}",
                    "spark:",
                    "  master: local[2]",
                    "  shuffle_partitions: 2",
                    "  driver_memory: 2g",
                    "  conf: {spark.ui.enabled: 'false'}",
                    "",
                ]
            )
        )
        return path

    def start(self, name: str, *args: str) -> ChildRun:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **{MARKER: "1"})
        self.started += 1
        stderr_path = self.work / f"{name}-{self.started:03d}-{args[0]}.stderr"
        stderr = stderr_path.open("w")
        process = subprocess.Popen(
            [self.python, "-m", "carbon_core.cli", *args, "--config", str(self.config(name))],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            start_new_session=True,
        )
        child = ChildRun(process, stderr_path=stderr_path)
        child.follow()
        return child

    def in_process(self, name: str, *, export: bool = False) -> list[tuple[float, str]]:
        """`carbonlake run` (or `export`) on this process's session, as the command line
        would; its log lines are kept as a child's are."""
        from carbon_core.config import load_config
        from carbon_core.export import export_lake
        from carbon_core.pipeline import run_pipeline

        config = load_config(str(self.config(name)))
        lines: list[tuple[float, str]] = []

        def keep(line: str) -> None:
            lines.append((time.monotonic(), line))

        if export:
            export_lake(
                self.spark,
                config.lake,
                config.exports,
                fmt=config.export.format,
                history_months=config.export.history_months,
                log=keep,
            )
        else:
            run_pipeline(self.spark, config, log=keep)
        return lines

    # --- what a reader sees ---

    def check_views(self, name: str) -> list[str]:
        """The reader-side checks after a kill; the problems found."""
        lake = str(self.work / name / "lake")
        problems = []
        for table in tables.catalog():
            uri = table.uri(lake)
            if not table_exists(self.spark, uri):
                continue
            try:
                read_table(self.spark, uri).count()
                _delta_rs_rows(uri)
            except Exception as error:  # any unreadable table is the finding
                problems.append(f"{table.name} unreadable: {str(error).splitlines()[0]}")
        if table_exists(self.spark, tables.ACCOUNT_EMISSIONS.uri(lake)):
            problems += _conservation_problems(self.spark, lake)
        problems += _export_problems(self.spark, self.work / name / "exports")
        return problems


def _delta_rs_rows(uri: str) -> int:
    import deltalake

    return int(deltalake.DeltaTable(uri).to_pyarrow_dataset().count_rows())


def _sums(frame: DataFrame) -> DataFrame:
    return frame.groupBy("month").agg(*[F.sum(q).alias(q) for q in schemas.QUANTITIES])


def _conservation_problems(spark: SparkSession, lake: str) -> list[str]:
    """account_emissions + unallocated = site_monthly per month and quantity (Scope 3
    aside: it also holds rack embodied carbon), as published."""
    needed = (tables.ACCOUNT_EMISSIONS, tables.UNALLOCATED, tables.SITE_MONTHLY)
    missing = [t.name for t in needed if not table_exists(spark, t.uri(lake))]
    if missing:
        # A first run killed before it created every table: nothing may be published.
        shown = read_published(spark, lake, tables.ACCOUNT_EMISSIONS).count()
        return [f"{shown} account rows published without {', '.join(missing)}"] if shown else []
    allocated = _sums(
        read_published(spark, lake, tables.ACCOUNT_EMISSIONS)
        .select("month", *schemas.QUANTITIES)
        .unionByName(
            read_published(spark, lake, tables.UNALLOCATED).select("month", *schemas.QUANTITIES)
        )
    ).collect()
    sites = {
        r["month"]: r for r in _sums(read_published(spark, lake, tables.SITE_MONTHLY)).collect()
    }
    problems = []
    for row in allocated:
        site = sites.get(row["month"])
        if site is None:
            problems.append(f"{row['month']:%Y-%m}: allocated but no published site_monthly")
            continue
        for quantity in schemas.QUANTITIES:
            if quantity == "scope3_kg":
                continue
            expected, got = site[quantity] or 0.0, row[quantity] or 0.0
            if abs(got - expected) > 1e-6 * max(1.0, abs(expected)):
                problems.append(
                    f"{row['month']:%Y-%m} {quantity}: allocated {got!r}, sites {expected!r}"
                )
    return problems


def _export_problems(spark: SparkSession, exports: Path) -> list[str]:
    manifest = exports / "_manifest"
    if not manifest.exists():
        return []
    problems = []
    for row in read_table(spark, str(manifest)).collect():
        if not Path(row["file"].removeprefix("file:")).exists():
            problems.append(f"export manifest lists a missing file {row['file']}")
    for folder in exports.glob("*/*"):
        if folder.parts[-2].startswith("_") or not folder.is_dir():
            continue
        carbon = [f for f in folder.iterdir() if f.name.startswith("carbon_")]
        if len(carbon) != 1:
            problems.append(f"{folder}: {len(carbon)} carbon files")
    return problems


def _gold_differences(spark: SparkSession, lake: str, reference: str) -> list[str]:
    differences = []
    for table in GOLD:
        try:
            assertDataFrameEqual(
                read_published(spark, lake, table),
                read_published(spark, reference, table),
                checkRowOrder=False,
                rtol=REL_TOLERANCE,
                atol=1e-9,
            )
        except AssertionError as error:
            differences.append(f"{table.name}: {str(error).splitlines()[0]}")
    return differences


def _export_rows(exports: Path) -> dict[str, list[tuple[str, ...]]]:
    found = {}
    for file in sorted(exports.glob("*/*/carbon_*.csv")):
        with file.open(newline="") as handle:
            rows = [
                tuple(v for k, v in row.items() if k != "last_refresh_timestamp")
                for row in csv.DictReader(handle)
            ]
        found[str(file.relative_to(exports))] = sorted(rows)
    return found


def _export_differences(exports: Path, reference: Path) -> list[str]:
    got, want = _export_rows(exports), _export_rows(reference)
    differences = [f"export file missing: {f}" for f in sorted(set(want) - set(got))]
    differences += [f"export file extra: {f}" for f in sorted(set(got) - set(want))]
    for name in sorted(set(got) & set(want)):
        if len(got[name]) != len(want[name]) or any(
            not _same_row(a, b) for a, b in zip(got[name], want[name], strict=True)
        ):
            differences.append(f"export file differs: {name}")
    return differences


def _same_row(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Equal, a last-digit difference of a 6-decimal value aside (summation order)."""
    for x, y in zip(a, b, strict=True):
        if x == y:
            continue
        try:
            if abs(float(x) - float(y)) > 1.5e-6:
                return False
        except ValueError:
            return False
    return True


def plans(kills: int, rng: random.Random) -> list[KillPlan]:
    """Inside each table commit and after each, in turn; one kill in ten an export; the
    rest at random moments. Fewer kills than targets take a spread of them."""
    boundaries = [
        KillPlan("run", f"{kind}:{t}") for t in COMMIT_ORDER for kind in ("inside", "after")
    ]
    exports = max(1, kills // 10)
    run_kills = kills - exports
    if run_kills <= len(boundaries):
        # A spread from inside gold/account_emissions' commit on, the reproduction that
        # left account_emissions new and unallocated old.
        first = boundaries.index(KillPlan("run", f"inside:{tables.ACCOUNT_EMISSIONS.name}"))
        step = len(boundaries) / max(run_kills, 1)
        chosen = [boundaries[(first + int(i * step)) % len(boundaries)] for i in range(run_kills)]
    else:
        chosen = boundaries + [KillPlan("run", "random")] * (run_kills - len(boundaries))
    chosen += [KillPlan("export", "random")] * exports
    rng.shuffle(chosen)
    return chosen


def _commit_durations(lines: Sequence[tuple[float, str]]) -> dict[str, float]:
    started: dict[str, float] = {}
    durations: dict[str, float] = {}
    for at, line in lines:
        if line.startswith("commit ") and line.endswith(": writing"):
            started[line.split()[1].rstrip(":")] = at
        elif line.startswith("commit ") and ": version " in line:
            table = line.split()[1].rstrip(":")
            if table in started:
                durations[table] = at - started[table]
    return durations


# What a child's run is taken to last when no reference run here measured it (the
# random-moment kills sleep a share of it).
CLEAN_RUN_SECONDS = 180.0


def _reference_run(
    chaos: Chaos, work: Path, scale: int, seed: int, months: int, say: Callable[[str], None]
) -> tuple[float, dict[str, float]]:
    """Generate the world and run it cleanly in process; (a child's run time, estimated,
    and each table commit's duration)."""
    say(f"generating a world of {scale} usage rows, {months} months")
    subprocess.run(
        [
            chaos.python,
            "-m",
            "carbon_core.cli",
            "generate",
            "--out",
            str(work / "landing"),
            "--scale",
            str(scale),
            "--seed",
            str(seed),
            "--months",
            str(months),
            "--start",
            f"{FIRST_MONTH:%Y-%m}",
            "--config",
            str(chaos.config("reference")),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=(work / "generate.stderr").open("w"),
    )
    say("clean reference run")
    started = time.monotonic()
    clean = chaos.in_process("reference")
    # A child takes longer than this warm session: its JVM starts, its code loads.
    return (time.monotonic() - started) * 1.5, _commit_durations(clean)


def run_chaos(
    *,
    kills: int,
    scale: int,
    months: int,
    seed: int,
    work: Path,
    python: str,
    concurrency: bool,
    from_reference: bool = False,
    clean_run: tuple[Path, Path] | None = None,
) -> tuple[str, bool]:
    """The whole exercise; (summary line, ok). With from_reference, the killed runs work on
    a copy of the reference run's lake: re-runs of published months, whose ingest finds
    nothing new (the CI-sized exercise, which cannot afford a first ingest per kill).
    clean_run, (landing, lake) of a finished run of every month, is the reference instead
    of a world generated and run here (the test suite's own world); kills inside a commit
    then wait a fixed half second into it."""
    if clean_run is not None and not from_reference:
        raise ValueError("clean_run is the reference of from_reference: pass both")
    rng = random.Random(seed)
    # Through the module: the test suite hands out its own session there.
    spark = spark_session.build_spark_session(
        SparkSettings(
            master="local[2]", app_name="carbonlake-chaos", shuffle_partitions=2, driver_memory="2g"
        )
    )
    log = (work / "chaos.log").open("a")

    def say(text: str) -> None:
        print(f"chaos: {text}", file=sys.stderr, flush=True)
        log.write(text + "\n")
        log.flush()

    chaos = Chaos(work, python, spark, log, clean_run[0] if clean_run else work / "landing")
    durations: dict[str, float]
    if clean_run is not None:
        say(f"reference: the finished run of {clean_run[0]}")
        shutil.copytree(clean_run[1], work / "reference" / "lake")
        run_seconds, durations = CLEAN_RUN_SECONDS, {}
    else:
        run_seconds, durations = _reference_run(chaos, work, scale, seed, months, say)
    started = time.monotonic()
    chaos.in_process("reference", export=True)
    export_seconds = (time.monotonic() - started) * 1.5
    month_names = [f"{shift_month(FIRST_MONTH, i):%Y-%m}" for i in range(months)]
    say(f"reference: run {run_seconds:.0f} s, export {export_seconds:.0f} s")
    if from_reference:
        say("the killed runs start from a copy of the reference lake")
        shutil.copytree(work / "reference" / "lake", work / "chaos" / "lake")

    inconsistent = 0
    hits = 0
    for number, plan in enumerate(plans(kills, rng), start=1):
        child = chaos.start("chaos", plan.command)
        if plan.target == "random":
            limit = run_seconds if plan.command == "run" else export_seconds
            time.sleep(rng.uniform(0.2, 0.95) * limit)
        else:
            kind, table = plan.target.split(":", 1)
            marker = f"commit {table}: " + ("writing" if kind == "inside" else "version")
            if not child.wait_for(marker, timeout=1800):
                say(
                    f"kill {number}: {plan.target}: the run ended first "
                    f"(exit {child.process.returncode})"
                )
            elif kind == "inside":
                time.sleep(rng.uniform(0.1, 0.8) * durations.get(table, 0.5))
        last = child.last_commit_marker()
        child.kill()
        if last is not None and not last.endswith(": committed"):
            hits += 1
        problems = chaos.check_views("chaos")
        if problems:
            inconsistent += 1
            chaos.problems += [f"after kill {number} ({plan.target}): {p}" for p in problems]
        say(
            f"kill {number}/{kills}: {plan.command} {plan.target}, last line {last!r}: "
            + ("consistent" if not problems else f"{len(problems)} problem(s): {problems[0]}")
        )

    say("re-running to completion")
    chaos.in_process("chaos")
    chaos.in_process("chaos", export=True)
    differences = _gold_differences(
        spark, str(work / "chaos" / "lake"), str(work / "reference" / "lake")
    )
    differences += _export_differences(work / "chaos" / "exports", work / "reference" / "exports")
    chaos.problems += differences

    verdict = "not run"
    if concurrency and len(month_names) >= 2:
        first, second = month_names[0], month_names[-1]
        say(f"concurrency: {first} and {second} at once")
        one = chaos.start("chaos", "run", "--from", first, "--to", first)
        two = chaos.start("chaos", "run", "--from", second, "--to", second)
        codes = (one.finish(1800), two.finish(1800))
        disjoint = "disjoint ok" if codes == (0, 0) else f"disjoint FAILED (exits {codes})"
        say(f"concurrency: overlapping runs of {first}..{second} and {second}")
        wide = chaos.start("chaos", "run", "--from", first, "--to", second, "--skip-ingest")
        claimed = wide.wait_for(": months ", timeout=1800)
        narrow = chaos.start("chaos", "run", "--from", second, "--to", second, "--skip-ingest")
        narrow_code = narrow.finish(600)
        wide_code = wide.finish(1800)
        named = "refused: run " in narrow.stderr_path.read_text()
        overlap = (
            "overlap refused"
            if claimed and narrow_code == REFUSED_EXIT and wide_code == 0 and named
            else f"overlap NOT refused (exits {narrow_code}, {wide_code})"
        )
        verdict = f"{disjoint}, {overlap}"
        after = _gold_differences(
            spark, str(work / "chaos" / "lake"), str(work / "reference" / "lake")
        )
        chaos.problems += [f"after the concurrent runs: {d}" for d in after]
        differences += after
        if "FAILED" in disjoint or "NOT" in overlap:
            chaos.problems.append(verdict)
    summary = (
        f"chaos: {kills} kills (commit boundaries hit: {hits}), {inconsistent} inconsistent "
        f"views, {len(differences)} differences after re-run; concurrency: {verdict}"
    )
    for problem in chaos.problems:
        say(f"problem: {problem}")
    log.close()
    return summary, not chaos.problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--scale", type=int, default=8_000, help="usage rows of the world")
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--no-concurrency", action="store_true")
    parser.add_argument(
        "--from-reference",
        action="store_true",
        help="kill re-runs on a copy of the reference lake instead of first runs",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="carbonlake-chaos-"))
    print(f"chaos: scratch folder {work}", file=sys.stderr)
    ok = False
    try:
        summary, ok = run_chaos(
            kills=args.kills,
            scale=args.scale,
            months=args.months,
            seed=args.seed,
            work=work,
            python=sys.executable,
            concurrency=not args.no_concurrency,
            from_reference=args.from_reference,
        )
        print(summary)
    finally:
        for process in psutil.process_iter(["environ"]):
            try:
                if (process.info.get("environ") or {}).get(MARKER) and process.pid != os.getpid():
                    process.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"chaos: kept {work}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
