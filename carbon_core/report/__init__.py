"""The self-contained HTML report: small Spark aggregates -> Plotly charts -> one file."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from carbon_core.report.data import ReportData, ReportRequest, UnknownPayerError, gather_report_data
from carbon_core.report.page import render_html


def write_report(
    spark: SparkSession, lake: str | Path, out: str | Path, request: ReportRequest
) -> ReportData:
    """Gather the report's data from the lake and write the HTML page to `out`."""
    data = gather_report_data(spark, lake, request)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(data), encoding="utf-8")
    return data


__all__ = ["ReportData", "ReportRequest", "UnknownPayerError", "gather_report_data", "write_report"]
