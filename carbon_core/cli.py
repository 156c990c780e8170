"""`carbonlake` command line: generate, ingest, run, export, forecast, report, catalog."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from carbon_core.calendar import parse_month
from carbon_core.config import Config, load_config
from carbon_core.errors import CarbonlakeError, DerivedViewError

if TYPE_CHECKING:
    from carbon_core.ingest import IngestReport


def _month(text: str) -> dt.date:
    try:
        return parse_month(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="YAML configuration, a path or URI (default: built-in local)"
    )


def _months(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="month_from", type=_month, metavar="YYYY-MM")
    parser.add_argument("--to", dest="month_to", type=_month, metavar="YYYY-MM")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="carbonlake",
        description="Carbon accounting for data centers and clouds on Spark and Delta Lake.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="write a synthetic landing zone")
    _common(generate)
    generate.add_argument("--out", required=True, help="landing location (path or URI) to write")
    generate.add_argument("--scale", type=int, help="approximate number of usage rows")
    generate.add_argument("--seed", type=int)
    generate.add_argument("--months", type=int, help="number of months to generate")
    generate.add_argument("--start", type=str, metavar="YYYY-MM", help="first generated month")
    generate.add_argument("--malformed-share", type=float, help="share of malformed rows")
    generate.add_argument(
        "--payers", type=int, help="external payers (default: a handful, growing with the scale)"
    )
    generate.add_argument(
        "--format",
        choices=["csv", "parquet"],
        default="csv",
        help="file format of usage and telemetry",
    )
    generate.add_argument(
        "--resume",
        action="store_true",
        help="keep what an interrupted generation of the same world wrote and finish it",
    )

    ingest = commands.add_parser("ingest", help="landing -> bronze + quarantine")
    _common(ingest)
    ingest.add_argument("--landing", type=str)
    ingest.add_argument("--lake", type=str)
    ingest.add_argument("--reference", type=str, help="folder with replacement reference tables")

    run = commands.add_parser("run", help="landing -> bronze -> silver -> gold for months")
    _common(run)
    run.add_argument("--landing", type=str)
    run.add_argument("--lake", type=str)
    run.add_argument("--reference", type=str, help="folder with replacement reference tables")
    run.add_argument("--skip-ingest", action="store_true", help="use the bronze tables as they are")
    _months(run)

    export = commands.add_parser("export", help="per-payer AWS Data Exports carbon files")
    _common(export)
    export.add_argument("--lake", type=str)
    export.add_argument("--out", type=str)
    export.add_argument("--format", choices=["csv", "parquet"])
    _months(export)

    report = commands.add_parser("report", help="self-contained HTML report with charts")
    _common(report)
    report.add_argument("--lake", type=str)
    report.add_argument(
        "--out", type=Path, required=True, help="HTML file to write (--every-payer: a folder)"
    )
    who = report.add_mutually_exclusive_group()
    who.add_argument("--payer", help="report only this payer account's data")
    who.add_argument(
        "--every-payer",
        action="store_true",
        help="one report per payer with rows in the months, as <out>/<payer>.html",
    )
    report.add_argument("--screenshot", type=Path, help="also save a PNG (headless Chromium)")
    _months(report)
    forecast = commands.add_parser(
        "forecast", help="rebuild gold/forecast (to forecast.horizon_end) from the lake"
    )
    _common(forecast)
    forecast.add_argument("--lake", type=str)
    forecast.add_argument("--reference", type=str, help="folder with replacement reference tables")

    catalog = commands.add_parser(
        "catalog", help="register the lake's tables by name in the session's catalog"
    )
    _common(catalog)
    catalog.add_argument("--database", help="database to register in (default: catalog.database)")
    catalog.add_argument("--lake", type=str)

    maintain = commands.add_parser(
        "maintain", help="compact the hourly bronze tables and vacuum every lake table"
    )
    _common(maintain)
    maintain.add_argument("--lake", type=str)

    status = commands.add_parser(
        "status", help="what readers see: the published months, runs in flight or in doubt"
    )
    _common(status)
    status.add_argument("--lake", type=str)
    return parser


def _config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    return config.with_overrides(
        landing=getattr(args, "landing", None),
        lake=getattr(args, "lake", None),
        reference=getattr(args, "reference", None),
    )


def _ingest_total(report: IngestReport) -> str:
    return (
        f"ingest total: {report.rows_in} landing rows = {report.bronze_rows} bronze + "
        f"{report.quarantined_rows} quarantined"
    )


def cmd_generate(args: argparse.Namespace) -> int:
    from carbon_core.session import build_spark_session

    try:
        from carbonlake_tools.generate import generate_world
    except ModuleNotFoundError as error:
        raise CarbonlakeError(
            "generate is a developer tool (package carbonlake_tools) that is not installed "
            "here: install the carbonlake wheel, or run it from a source checkout"
        ) from error

    config = load_config(args.config)
    settings = config.generate
    spark = build_spark_session(config.spark)
    started = time.monotonic()
    counts = generate_world(
        spark,
        args.out,
        scale=args.scale or settings.scale,
        seed=settings.seed if args.seed is None else args.seed,
        malformed_share=(
            settings.malformed_share if args.malformed_share is None else args.malformed_share
        ),
        start_month=args.start or settings.start_month,
        months=args.months or settings.months,
        usage_format=args.format,
        resume=args.resume,
        payers=settings.payers if args.payers is None else args.payers,
    )
    for name, count in counts.items():
        print(f"generate {name}: {count} rows")
    print(f"generate: landing zone written to {args.out} in {time.monotonic() - started:.1f} s")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from carbon_core.ingest import ingest_landing
    from carbon_core.lake.claims import INGEST_KEY, RunClaims
    from carbon_core.reference import load_reference_tables
    from carbon_core.session import build_spark_session

    config = _config(args)
    spark = build_spark_session(config.spark)
    reference = load_reference_tables(spark, config.reference)
    # Bronze has one writer at a time: the ingest key, as a run's ingest takes it.
    claims = RunClaims(
        spark,
        str(config.lake),
        uuid.uuid4().hex,
        lease=dt.timedelta(minutes=config.run.claim_lease_minutes),
    )
    with claims.heartbeat():
        claims.acquire([INGEST_KEY], wait=dt.timedelta(minutes=config.run.wait_minutes))
        try:
            report = ingest_landing(
                spark, config.landing, config.lake, reference=reference, gates=config.ingest
            )
        finally:
            claims.release_quietly(print)
    print(_ingest_total(report))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from carbon_core.lake import tables
    from carbon_core.lake.runs import read_published
    from carbon_core.pipeline import run_pipeline
    from carbon_core.session import build_spark_session
    from carbon_core.summary import format_summary, summarise_months

    config = _config(args)
    spark = build_spark_session(config.spark)
    report = run_pipeline(
        spark,
        config,
        month_from=args.month_from,
        month_to=args.month_to,
        skip_ingest=args.skip_ingest,
    )
    if report.ingest is not None:
        print(_ingest_total(report.ingest))
    checks = len(report.invariants)
    print(
        f"invariants: {checks} checks passed (conservation per month and quantity, "
        "no negatives, known accounts)"
    )
    summaries = summarise_months(
        read_published(spark, config.lake, tables.ACCOUNT_EMISSIONS),
        read_published(spark, config.lake, tables.UNALLOCATED),
        report.months,
    )
    print(format_summary(summaries))
    for failure in report.derived_failures:
        print(f"carbonlake: error: {failure} (the run's accounting is committed)", file=sys.stderr)
    return DerivedViewError.exit_code if report.derived_failures else 0


def cmd_export(args: argparse.Namespace) -> int:
    from carbon_core.export import export_lake
    from carbon_core.session import build_spark_session

    config = load_config(args.config).with_overrides(lake=args.lake, exports=args.out)
    spark = build_spark_session(config.spark)
    export_lake(
        spark,
        config.lake,
        config.exports,
        month_from=args.month_from,
        month_to=args.month_to,
        fmt=args.format or config.export.format,
        history_months=config.export.history_months,
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from carbon_core.extras import REPORT_PACKAGES, require_extra

    require_extra("report", REPORT_PACKAGES)
    from carbon_core.report import ReportRequest, write_payer_reports, write_report
    from carbon_core.session import build_spark_session

    config = load_config(args.config).with_overrides(lake=args.lake)
    spark = build_spark_session(config.spark)
    request = ReportRequest(
        payer=args.payer,
        month_from=args.month_from,
        month_to=args.month_to,
    )
    if args.every_payer:
        if args.screenshot is not None:
            raise CarbonlakeError("--screenshot takes one report: leave it out with --every-payer")
        pages = write_payer_reports(spark, config.lake, args.out, request)
        print(f"report: {len(pages)} payer reports in {args.out}")
        return 0
    data = write_report(spark, config.lake, args.out, request)
    print(
        f"report: {args.out} ({data.month_from:%Y-%m} to {data.month_to:%Y-%m}, "
        f"{data.total_lbm_kg / 1000:,.1f} t CO2e LBM, {data.total_mbm_kg / 1000:,.1f} t MBM)"
    )
    if args.screenshot is not None:
        from carbon_core.report.browser import BrowserError, screenshot

        try:
            print(f"report screenshot: {screenshot(args.out, args.screenshot)}")
        except BrowserError as error:
            # The report itself is written; a missing browser only costs the picture.
            print(f"report screenshot skipped: {error}", file=sys.stderr)
    return 0


def cmd_forecast(args: argparse.Namespace) -> int:
    from carbon_core.extras import FORECAST_PACKAGES, require_extra

    require_extra("forecast", FORECAST_PACKAGES)
    from carbon_core.insight.forecast import summary_line, write_forecast
    from carbon_core.reference import load_reference_tables
    from carbon_core.session import build_spark_session

    config = _config(args)
    spark = build_spark_session(config.spark)
    reference = load_reference_tables(spark, config.reference)
    started = time.monotonic()
    summary = write_forecast(
        spark, config.lake, settings=config.forecast, grid_factors=reference.grid_factors
    )
    print(summary_line(summary))
    print(
        f"forecast: gold/forecast and gold/forecast_backtest written in "
        f"{time.monotonic() - started:.1f} s"
    )
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from carbon_core.lake.register import register_tables
    from carbon_core.session import build_spark_session

    config = load_config(args.config).with_overrides(lake=args.lake)
    spark = build_spark_session(config.spark)
    report = register_tables(spark, config.lake, args.database or config.catalog.database)
    for line in report.lines():
        print(line)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from carbon_core.lake.status import lake_status
    from carbon_core.session import build_spark_session

    config = load_config(args.config).with_overrides(lake=args.lake)
    spark = build_spark_session(config.spark)
    for line in lake_status(spark, config.lake).lines():
        print(line)
    return 0


def cmd_maintain(args: argparse.Namespace) -> int:
    from carbon_core.lake.maintain import maintain_lake
    from carbon_core.session import build_spark_session

    config = load_config(args.config).with_overrides(lake=args.lake)
    spark = build_spark_session(config.spark)
    maintain_lake(spark, config.lake, config.maintenance)
    return 0


def _validate_config_first(args: argparse.Namespace) -> None:
    """Fail on a bad config file before Spark or any heavy import starts."""
    load_config(args.config)


COMMANDS = {
    "generate": cmd_generate,
    "ingest": cmd_ingest,
    "run": cmd_run,
    "export": cmd_export,
    "report": cmd_report,
    "forecast": cmd_forecast,
    "catalog": cmd_catalog,
    "maintain": cmd_maintain,
    "status": cmd_status,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `carbonlake` console script and of jobs/*.py."""
    args = build_parser().parse_args(argv)
    _stop_on_sigterm()
    try:
        _validate_config_first(args)
        return COMMANDS[args.command](args)
    except CarbonlakeError as error:
        print(f"carbonlake: error: {error}", file=sys.stderr)
        return error.exit_code
    except Terminated:
        print("carbonlake: error: stopped by SIGTERM", file=sys.stderr)
        return 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that a run logs `failed` and lets go of its
    claims on the way out (as Ctrl-C does), instead of dying silently."""


def _stop_on_sigterm() -> None:
    def stop(signum: int, frame: object) -> None:
        raise Terminated

    # Not in the main thread (an embedding application): its own handler stays.
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, stop)


if __name__ == "__main__":
    sys.exit(main())
