"""Tenant isolation: no payer's export file or report shows another payer's accounts or
business units (docs/operations.md §7.1).

    python -m carbonlake_tools.isolation --payers 1000      # scripts/isolation

generates a world with that many payers, runs it, exports every month, writes every
payer's report (`carbonlake report --every-payer`) and reads every file back. The test
suite runs `tenant_leaks` on its own small world.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from pyspark.sql import SparkSession

from carbon_core.lake import tables

# Runs of id characters, whole and cut at `.`, `:` and `-`: an id inside a longer token
# ("310000000001-x") is still found, and so is one with those characters in it.
_ID_RUNS = (re.compile(r"[A-Za-z0-9_.:-]+"), re.compile(r"[A-Za-z0-9_]+"))


@dataclass(frozen=True)
class Tenancy:
    """Who owns what: each account's payer and each account's business unit."""

    payer_of: dict[str, str]  # account id -> payer account id
    unit_of: dict[str, str]  # account id -> business unit (mapped accounts only)
    _accounts: dict[str, frozenset[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One index instead of a scan of every account per file checked.
        grouped: dict[str, set[str]] = {}
        for account, payer in self.payer_of.items():
            grouped.setdefault(payer, set()).add(account)
        index = {payer: frozenset(accounts) for payer, accounts in grouped.items()}
        object.__setattr__(self, "_accounts", index)

    def accounts_of(self, payer: str) -> frozenset[str]:
        return self._accounts.get(payer, frozenset())

    def foreign_units(self, payer: str) -> set[str]:
        own = {self.unit_of.get(a) for a in self.accounts_of(payer)}
        return {u for u in self.unit_of.values() if u not in own}


def read_tenancy(spark: SparkSession, lake: str) -> Tenancy:
    """From bronze accounts and business units (the check's whole input, a few per payer)."""
    accounts = tables.read_lake_table(spark, lake, tables.bronze("accounts"))
    units = tables.read_lake_table(spark, lake, tables.bronze("business_units"))
    return Tenancy(
        payer_of={r[0]: r[1] for r in accounts.select("account_id", "payer_account_id").collect()},
        unit_of={r[0]: r[1] for r in units.select("account_id", "business_unit").collect()},
    )


def _tokens(text: str) -> set[str]:
    return {token for pattern in _ID_RUNS for token in pattern.findall(text)}


@cache
def _plotly_bundle() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _without_plotly(html: str) -> str:
    """The page but for the embedded plotly.js bundle (library code, megabytes of it)."""
    return html.replace(_plotly_bundle(), "", 1)


def export_leaks(tenancy: Tenancy, files: Iterable[Path]) -> list[str]:
    """What export files (<payer>/<month>/carbon_*.csv) show of other payers."""
    leaks = []
    for file in files:
        payer = file.parts[-3]
        own = tenancy.accounts_of(payer)
        with file.open(newline="", encoding="utf-8") as handle:
            text = handle.read()
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        payers = {r["payer_account_id"] for r in rows}
        if payers - {payer}:
            leaks.append(f"{file}: rows of payers {sorted(payers - {payer})}")
        usage = {r["usage_account_id"] for r in rows} - own
        if usage:
            leaks.append(f"{file}: rows of accounts {sorted(usage)}")
        shown = (_tokens(text) & tenancy.payer_of.keys()) - own
        if shown:
            leaks.append(f"{file}: names accounts {sorted(shown)}")
    return leaks


def report_leaks(tenancy: Tenancy, pages: Iterable[Path]) -> list[str]:
    """What payer reports (<payer>.html) show of other payers' accounts and units (as a
    cell or label, >unit<, or a chart's data, "unit": a payer's own name may hold another
    unit's word)."""
    leaks = []
    for page in pages:
        payer = page.name.removesuffix(".html")
        html = _without_plotly(page.read_text(encoding="utf-8"))
        shown = (_tokens(html) & tenancy.payer_of.keys()) - tenancy.accounts_of(payer)
        if shown:
            leaks.append(f"{page}: names accounts {sorted(shown)}")
        units = [
            u for u in sorted(tenancy.foreign_units(payer)) if f">{u}<" in html or f'"{u}"' in html
        ]
        if units:
            leaks.append(f"{page}: names business units {units}")
    return leaks


def tenant_leaks(spark: SparkSession, lake: str, exports: Path, reports: Path) -> list[str]:
    """Every export file under `exports` and every page under `reports`, checked."""
    tenancy = read_tenancy(spark, lake)
    return [
        *export_leaks(tenancy, sorted(exports.glob("*/*/carbon_*.csv"))),
        *report_leaks(tenancy, sorted(reports.glob("*.html"))),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/isolation", description=__doc__.split("\n")[0])
    parser.add_argument("--payers", type=int, default=1000)
    parser.add_argument("--scale", type=int, default=100_000, help="usage rows (generator)")
    parser.add_argument("--months", type=int, default=2)
    parser.add_argument("--work", type=Path, help="folder for the world (default: a temp one)")
    args = parser.parse_args(argv)

    from carbon_core.calendar import shift_month
    from carbon_core.config import SparkSettings, config_from_mapping
    from carbon_core.export import export_lake
    from carbon_core.pipeline import run_pipeline
    from carbon_core.report import ReportRequest, write_payer_reports
    from carbon_core.session import build_spark_session
    from carbonlake_tools.generate import generate_world

    work = args.work or Path(tempfile.mkdtemp(prefix="carbonlake-isolation-"))
    spark = build_spark_session(SparkSettings(master="local[*]", app_name="isolation"))
    config = config_from_mapping(
        {
            "lake": str(work / "lake"),
            "landing": str(work / "landing"),
            "exports": str(work / "exports"),
        }
    )
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {line}", flush=True)

    generate_world(
        spark, work / "landing", scale=args.scale, seed=5, start_month="2025-01",
        months=args.months, payers=args.payers,
    )  # fmt: skip
    say(f"generated {args.payers} payers, {args.scale} usage rows")
    run_pipeline(spark, config, log=lambda _line: None)
    say("run committed")
    first = dt.date(2025, 1, 1)
    last = shift_month(first, args.months - 1)
    export_lake(
        spark, config.lake, work / "exports", month_from=first, month_to=last, log=lambda _: None
    )
    say("exported")
    pages = write_payer_reports(spark, config.lake, work / "reports", ReportRequest())
    say(f"{len(pages)} payer reports written")
    leaks = tenant_leaks(spark, config.lake, work / "exports", work / "reports")
    files = len(list((work / "exports").glob("*/*/carbon_*.csv")))
    say(f"checked {files} export files and {len(pages)} reports: {len(leaks)} leaks")
    for leak in leaks[:20]:
        print(f"  {leak}")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
