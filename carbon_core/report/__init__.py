"""The self-contained HTML report: small Spark aggregates -> Plotly charts -> one file."""

from __future__ import annotations

import os
from pathlib import Path

from pyspark.sql import SparkSession

from carbon_core.errors import InputError
from carbon_core.ids import is_path_safe
from carbon_core.report.data import ReportData, ReportRequest, UnknownPayerError, gather_report_data
from carbon_core.report.page import render_html
from carbon_core.report.payers import gather_payer_reports


def _write_page(data: ReportData, target: Path) -> None:
    """Write the page beside its place and rename it there: a killed write leaves the
    previous page, never half of one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(render_html(data), encoding="utf-8")
    os.replace(partial, target)


def write_report(
    spark: SparkSession, lake: str | Path, out: str | Path, request: ReportRequest
) -> ReportData:
    """Gather the report's data from the lake and write the HTML page to `out`."""
    data = gather_report_data(spark, lake, request)
    _write_page(data, Path(out))
    return data


def write_payer_reports(
    spark: SparkSession, lake: str | Path, folder: str | Path, request: ReportRequest
) -> list[Path]:
    """Write `<folder>/<payer>.html` for every payer with rows in the requested months
    (each page as `write_report` with that payer writes it); the pages written."""
    written = []
    for data in gather_payer_reports(spark, lake, request):
        if not is_path_safe(data.payer):  # ingest's id guard lets no such id into gold
            raise InputError(f"payer id {data.payer!r} cannot name a report file")
        target = Path(folder) / f"{data.payer}.html"
        _write_page(data, target)
        written.append(target)
    return written


__all__ = [
    "ReportData",
    "ReportRequest",
    "UnknownPayerError",
    "gather_payer_reports",
    "gather_report_data",
    "write_payer_reports",
    "write_report",
]
