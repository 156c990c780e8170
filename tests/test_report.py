"""The HTML report: a hand-made lake, rendered whole and per payer in headless Chromium."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import frame
from pyspark.sql import SparkSession

from carbon_core import schemas
from carbon_core.cli import main as cli_main
from carbon_core.config import TargetSettings
from carbon_core.insight.targets import target_progress
from carbon_core.lake import tables, write_table
from carbon_core.report import (
    ReportRequest,
    aggregates,
    charts,
    gather_payer_reports,
    gather_report_data,
    write_payer_reports,
    write_report,
)
from carbon_core.report.browser import find_chromium, render_marks
from carbon_core.report.data import (
    ReportData,
    TargetProgress,
    payer_targets,
    targets_from_progress,
    with_versions,
)
from carbon_core.report.page import FIGURES_ELEMENT_ID, render_html

JAN, FEB, MAR = dt.date(2025, 1, 1), dt.date(2025, 2, 1), dt.date(2025, 3, 1)
P1, P1_LINKED = "310000000001", "310000000002"
P2, P2_LINKED = "420000000001", "420000000002"
EAST, WEST = "us-east-1", "eu-west-1"
LOCATIONS = {EAST: "US East", WEST: "EU West"}
EC2, S3 = "AmazonEC2", "AmazonS3"
SCOPE1_KG, SCOPE3_KG = 1.0, 2.0  # on every emissions row

# (month, payer, usage account, region, product, scope2 LBM kg, scope2 MBM kg)
EMISSIONS = (
    (JAN, P1, P1, EAST, EC2, 100.0, 80.0),
    (JAN, P1, P1_LINKED, WEST, S3, 40.0, 10.0),
    (JAN, P2, P2_LINKED, EAST, EC2, 200.0, 150.0),
    (FEB, P1, P1, EAST, EC2, 110.0, 90.0),
    (FEB, P2, P2_LINKED, WEST, EC2, 60.0, 20.0),
    (MAR, P1, P1_LINKED, EAST, S3, 30.0, 25.0),
    (MAR, P2, P2_LINKED, EAST, S3, 50.0, 45.0),
)
BUSINESS_UNIT_OF = {P1: "Retail", P2_LINKED: "Research"}  # P1_LINKED: unmapped

RETAIL_TARGET = TargetSettings(
    business_unit="Retail", baseline_year=2025, target_year=2030, reduction_percent=50
)
EVERY_CHART = {
    "scopes",
    "lbm_mbm",
    "regions",
    "services",
    "accounts",
    "business_units",
    "unallocated",
    "coverage_estimated",
    "coverage_levels",
    "efficiency",
    "intensity_0",
    "intensity_1",
    "forecast_mbm",
    "forecast_lbm",
    "target_0",
    "backtest",
}


def _emission_rows() -> list[dict[str, Any]]:
    rows = []
    for month, payer, account, region, product, lbm, mbm in EMISSIONS:
        rows.append(
            {
                "month": month,
                "model_version": "v2.0",
                "payer_account_id": payer,
                "usage_account_id": account,
                "is_internal": False,
                "region_code": region,
                "location": LOCATIONS[region],
                "product_code": product,
                "energy_kwh": 10.0,
                "scope1_kg": SCOPE1_KG,
                "scope2_lbm_kg": lbm,
                "scope2_mbm_kg": mbm,
                "scope3_kg": SCOPE3_KG,
                "water_l": 5.0,
                "total_lbm_kg": SCOPE1_KG + lbm + SCOPE3_KG,
                "total_mbm_kg": SCOPE1_KG + mbm + SCOPE3_KG,
            }
        )
    return rows


def _write_core(spark: SparkSession, lake: Path) -> None:
    emissions = _emission_rows()
    write_table(
        frame(spark, schemas.ACCOUNT_EMISSIONS, emissions),
        tables.ACCOUNT_EMISSIONS.uri(lake),
        mode="overwrite",
    )
    accounts = [
        {"account_id": a, "payer_account_id": p, "is_internal": False}
        for a, p in ((P1, P1), (P1_LINKED, P1), (P2, P2), (P2_LINKED, P2))
    ]
    write_table(
        frame(spark, schemas.bronze_schema(schemas.ACCOUNTS), accounts),
        tables.bronze("accounts").uri(lake),
        mode="overwrite",
    )


def _write_insight(spark: SparkSession, lake: Path) -> None:
    unallocated = [
        {"month": JAN, "model_version": "v2.0", "cluster_id": EAST, "reason": "unused_capacity",
         "scope1_kg": 0.0,
         "scope2_lbm_kg": 10.0, "scope2_mbm_kg": 8.0, "scope3_kg": 1.0, "energy_kwh": 20.0},
        {"month": FEB, "model_version": "v2.0", "cluster_id": WEST, "reason": "network_overhead",
         "scope1_kg": 0.0,
         "scope2_lbm_kg": 5.0, "scope2_mbm_kg": 5.0, "scope3_kg": 0.0, "energy_kwh": 8.0},
    ]  # fmt: skip
    sites = [
        {"month": m, "site_id": f"site-{c}", "cluster_id": c, "energy_kwh": kwh,
         "estimated_energy_share": est, "factor_level": level, "provisional": m == MAR}
        for m in (JAN, FEB, MAR)
        for c, kwh, est, level in (
            (EAST, 1000.0, 0.0, "subdivision"), (WEST, 500.0, 0.5, "country")
        )
    ]  # fmt: skip
    efficiency = [
        {"month": m, "cluster_id": c, "facility_energy_kwh": f, "it_energy_kwh": it,
         "water_l": w, "pue": f / it, "wue_l_per_kwh": w / it}
        for m in (JAN, FEB, MAR)
        for c, f, it, w in ((EAST, 1200.0, 1000.0, 1500.0), (WEST, 650.0, 500.0, 250.0))
    ]  # fmt: skip
    benchmarks = [
        {"month": JAN, "cluster_id": EAST, "location": "US East", "energy_kwh": 1000.0,
         "estimated_energy_share": 0.0, "provisional": False, "product_code": EC2,
         "allocation_unit": "vCPU-Hours", "usage_amount": 1000.0, "service_lbm_kg": 300.0,
         "service_mbm_kg": 230.0},
        {"month": FEB, "cluster_id": EAST, "location": "US East", "energy_kwh": 1000.0,
         "estimated_energy_share": 0.0, "provisional": False, "product_code": EC2,
         "allocation_unit": "vCPU-Hours", "usage_amount": 1000.0, "service_lbm_kg": 110.0,
         "service_mbm_kg": 90.0},
        {"month": FEB, "cluster_id": WEST, "location": "EU West", "energy_kwh": 500.0,
         "estimated_energy_share": 0.5, "provisional": False, "product_code": EC2,
         "allocation_unit": "vCPU-Hours", "usage_amount": 500.0, "service_lbm_kg": 60.0,
         "service_mbm_kg": 20.0},
        {"month": MAR, "cluster_id": EAST, "location": "US East", "energy_kwh": 1000.0,
         "estimated_energy_share": 0.0, "provisional": True, "product_code": S3,
         "allocation_unit": "TB-Hours", "usage_amount": 10.0, "service_lbm_kg": 80.0,
         "service_mbm_kg": 70.0},
    ]  # fmt: skip
    forecast = [
        {"month": m, "payer_account_id": p, "region_code": EAST, "location": "US East",
         "product_code": EC2, "method": method, "history_months": 3, "last_actual_month": MAR,
         "interval_level": 0.9, "total_lbm_kg": 100.0, "lbm_lower_kg": 80.0,
         "lbm_upper_kg": 120.0, "total_mbm_kg": 80.0, "mbm_lower_kg": 60.0,
         "mbm_upper_kg": 100.0, "backtest_mape_lbm": mape, "backtest_mape_mbm": mape}
        for m in (dt.date(2025, 4, 1), dt.date(2025, 5, 1), dt.date(2025, 6, 1))
        for p, method, mape in ((P1, "ets", 8.0), (P2, "naive", None))
    ]  # fmt: skip
    backtest = [
        {"payer_account_id": p, "region_code": EAST, "location": "US East", "product_code": EC2,
         "method": method, "last_actual_month": MAR, "holdout_months": holdout,
         "backtest_mape_lbm": mape, "backtest_mape_mbm": mape}
        for p, method, holdout, mape in ((P1, "ets", 2, 8.0), (P2, "naive", 0, None))
    ]  # fmt: skip
    business_units = [
        {"account_id": account, "business_unit": unit} for account, unit in BUSINESS_UNIT_OF.items()
    ]
    bu_monthly = [
        {"month": r["month"], "model_version": "v2.0",
         "business_unit": BUSINESS_UNIT_OF.get(r["usage_account_id"],
         schemas.UNMAPPED_BUSINESS_UNIT), "region_code": r["region_code"],
         "product_code": r["product_code"], "accounts": 1, "total_lbm_kg": r["total_lbm_kg"],
         "total_mbm_kg": r["total_mbm_kg"]}
        for r in _emission_rows()
    ]  # fmt: skip
    for table, rows in (
        (tables.UNALLOCATED, unallocated),
        (tables.SITE_MONTHLY, sites),
        (tables.CLUSTER_EFFICIENCY, efficiency),
        (tables.REGION_BENCHMARKS, benchmarks),
        (tables.FORECAST, forecast),
        (tables.FORECAST_BACKTEST, backtest),
        (tables.BU_MONTHLY, bu_monthly),
        (tables.bronze("business_units"), business_units),
    ):
        write_table(frame(spark, table.schema, rows), table.uri(lake), mode="overwrite")
    # As the run writes it: from gold/bu_monthly and the configured targets.
    progress = target_progress(frame(spark, schemas.BU_MONTHLY, bu_monthly), [RETAIL_TARGET])
    tables.overwrite_lake_table(progress, lake, tables.TARGET_PROGRESS)


@pytest.fixture(scope="module")
def full_lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("report") / "lake"
    _write_core(spark, lake)
    _write_insight(spark, lake)
    return lake


@pytest.fixture(scope="module")
def core_lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("report-core") / "lake"
    _write_core(spark, lake)
    return lake


@pytest.fixture(scope="module")
def operator_data(spark: SparkSession, full_lake: Path) -> ReportData:
    return gather_report_data(spark, full_lake, ReportRequest())


@pytest.fixture(scope="module")
def payer_data(spark: SparkSession, full_lake: Path) -> ReportData:
    return gather_report_data(spark, full_lake, ReportRequest(payer=P1))


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        pytest.skip("chromium not found: scripts/test installs it (apt-get install -y chromium)")
    return found


def _figure_ids(html: str) -> set[str]:
    pattern = rf'<script type="application/json" id="{FIGURES_ELEMENT_ID}">(.*?)</script>'
    match = re.search(pattern, html, re.S)
    assert match is not None
    return set(json.loads(match.group(1)))


def _headline(html: str, card: str) -> float:
    match = re.search(rf'id="{card}" data-value="([^"]+)"', html)
    assert match is not None, card
    return float(match.group(1))


# --- whole-operator and per-payer reports in Chromium ----------------------------------


def _written(data: ReportData, out: Path) -> str:
    html = render_html(data)
    out.write_text(html, encoding="utf-8")
    return html


def test_whole_report_draws_every_chart_and_sums_the_headline(
    operator_data: ReportData, tmp_path: Path, chromium: str
) -> None:
    out = tmp_path / "report.html"
    html = _written(operator_data, out)

    marks = render_marks(out)
    assert set(marks) == EVERY_CHART
    assert {chart: n for chart, n in marks.items() if n <= 0} == {}
    # 7 rows: scope-2 sums 590 (LBM) and 420 (MBM), plus 3 kg of scope 1 + 3 per row.
    assert _headline(html, "kpi-total-lbm") == pytest.approx(590.0 + 7 * 3.0)
    assert _headline(html, "kpi-total-mbm") == pytest.approx(420.0 + 7 * 3.0)
    # Unallocated: 10 + 1 (Jan) + 5 (Feb), LBM.
    assert _headline(html, "kpi-unallocated") == pytest.approx(16.0)
    assert "not available: run" not in html
    assert f"target path {RETAIL_TARGET.business_unit}" in html
    # The operator's report names payers: the per-payer check below can fail.
    assert P2 in html


def test_payer_report_holds_only_that_payers_accounts(
    payer_data: ReportData, tmp_path: Path, chromium: str
) -> None:
    out = tmp_path / "payer.html"
    html = _written(payer_data, out)

    for other in (P2, P2_LINKED):
        assert other not in html
    assert P1_LINKED in html  # the payer's own linked accounts are listed
    marks = render_marks(out)
    assert set(marks) == EVERY_CHART - {"unallocated"}
    assert {chart: n for chart, n in marks.items() if n <= 0} == {}
    assert _headline(html, "kpi-total-lbm") == pytest.approx(280.0 + 4 * 3.0)
    assert _headline(html, "kpi-total-mbm") == pytest.approx(205.0 + 4 * 3.0)
    assert 'id="kpi-unallocated"' not in html
    # Retail's accounts are all P1's: its target is drawn against Retail's own months.
    assert f"target path {RETAIL_TARGET.business_unit}" in html


# --- without Chromium ---------------------------------------------------------------------


def test_report_without_insight_tables_says_not_available(
    spark: SparkSession, core_lake: Path, tmp_path: Path
) -> None:
    out = tmp_path / "core.html"
    data = write_report(spark, core_lake, out, ReportRequest())
    html = out.read_text()

    assert data.by_business_unit is None and data.forecast is None and data.intensity is None
    # business units, unallocated, coverage, PUE/WUE, benchmarks, forecast, targets, backtest
    assert html.count("not available: run <code>carbonlake run</code>") == 8
    assert data.targets is None
    assert _figure_ids(html) == {"scopes", "lbm_mbm", "regions", "services", "accounts"}
    assert "<script src=" not in html and "cdn.plot.ly" not in html.split("</head>")[1]


def test_period_and_payer_filters(spark: SparkSession, full_lake: Path) -> None:
    data = gather_report_data(
        spark, full_lake, ReportRequest(payer=P2, month_from=FEB, month_to=MAR)
    )
    # P2 in Feb-Mar: scope-2 LBM 60 + 50, MBM 20 + 45, plus 3 kg per row.
    assert data.total_lbm_kg == pytest.approx(110.0 + 6.0)
    assert data.total_mbm_kg == pytest.approx(65.0 + 6.0)
    assert list(data.by_account["account_id"]) == [P2_LINKED]
    # The fan's history keeps every month of the payer: Jan 203, Feb 63, Mar 53 (LBM).
    assert list(data.history["total_lbm_kg"]) == pytest.approx([203.0, 63.0, 53.0])
    # Cluster context only for the clusters P2 used in the period (both): PUE 1.2 and 1.3.
    pue = dict(zip(data.efficiency["cluster_id"], data.efficiency["pue"], strict=True))
    assert pue == pytest.approx({EAST: 1.2, WEST: 1.3})
    # Payer's business units come from its own accounts: all Research.
    assert list(data.by_business_unit["business_unit"]) == ["Research"]


def test_business_units_keep_unmapped_accounts(payer_data: ReportData) -> None:
    units = payer_data.by_business_unit
    totals = dict(zip(units["business_unit"], units["total_lbm_kg"], strict=True))
    # Retail = account P1 (103 + 113); unmapped = P1_LINKED (43 + 33).
    assert totals == pytest.approx({"Retail": 216.0, schemas.UNMAPPED_BUSINESS_UNIT: 76.0})


def test_unknown_payer_is_a_one_line_error(
    full_lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(
        ["report", "--lake", str(full_lake), "--out", str(tmp_path / "x.html"), "--payer", "999"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == "carbonlake: error: unknown payer account: 999"
    assert not (tmp_path / "x.html").exists()


def assert_same_report_data(got: ReportData, expected: ReportData) -> None:
    """Every field equal; frames equal but for summation order in the last bits."""
    for field in dataclasses.fields(ReportData):
        mine, theirs = getattr(got, field.name), getattr(expected, field.name)
        if isinstance(theirs, pd.DataFrame):
            assert isinstance(mine, pd.DataFrame), field.name
            pd.testing.assert_frame_equal(
                mine, theirs, check_dtype=False, rtol=1e-12, obj=field.name
            )
        else:
            assert mine == theirs, field.name


@pytest.mark.parametrize(
    ("month_from", "month_to", "per_batch"),
    [(None, None, 1), (FEB, MAR, 250)],
)
def test_every_payer_report_gathers_what_the_payers_own_report_does(
    spark: SparkSession, full_lake: Path, month_from, month_to, per_batch
) -> None:
    request = ReportRequest(month_from=month_from, month_to=month_to)
    batched = list(gather_payer_reports(spark, full_lake, request, payers_per_batch=per_batch))
    assert [d.payer for d in batched] == [P1, P2]
    for data in batched:
        own = gather_report_data(spark, full_lake, dataclasses.replace(request, payer=data.payer))
        assert_same_report_data(data, own)
    # The numbers are the payers' own: P1's scope-2 LBM over Jan-Mar is 100 + 40 + 110 + 30.
    if month_from is None:
        assert batched[0].total_lbm_kg == pytest.approx(280.0 + 4 * 3.0)


def test_every_payer_report_skips_payers_without_rows_in_the_months(
    spark: SparkSession, full_lake: Path
) -> None:
    after_march = ReportRequest(month_from=dt.date(2025, 4, 1))
    assert list(gather_payer_reports(spark, full_lake, after_march)) == []


def test_report_every_payer_writes_one_page_per_payer(
    full_lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "payers"
    code = cli_main(["report", "--lake", str(full_lake), "--out", str(out), "--every-payer"])
    assert code == 0
    assert capsys.readouterr().out.strip() == f"report: 2 payer reports in {out}"
    assert sorted(p.name for p in out.iterdir()) == [f"{P1}.html", f"{P2}.html"]
    html = (out / f"{P2}.html").read_text()
    assert P2_LINKED in html and P1 not in html and P1_LINKED not in html


def test_payer_reports_are_written_whole_one_page_per_payer(
    spark: SparkSession, full_lake: Path, tmp_path
):
    pages = write_payer_reports(spark, full_lake, tmp_path, ReportRequest(month_to=JAN))
    assert pages == [tmp_path / f"{P1}.html", tmp_path / f"{P2}.html"]
    assert not list(tmp_path.glob(".*partial"))


# --- aggregates and targets with hand-computed numbers -------------------------------------


def test_service_intensity_is_a_ratio_of_sums_and_flags_estimates(
    operator_data: ReportData,
) -> None:
    data = operator_data
    ec2 = data.intensity[data.intensity["product_code"] == EC2].set_index("cluster_id")
    # EAST: (300 + 110) / (1000 + 1000) LBM, (230 + 90) / 2000 MBM; WEST: 60 / 500, 20 / 500.
    assert ec2.loc[EAST, "lbm_kg_per_unit"] == pytest.approx(0.205)
    assert ec2.loc[EAST, "mbm_kg_per_unit"] == pytest.approx(0.16)
    assert ec2.loc[WEST, "lbm_kg_per_unit"] == pytest.approx(0.12)
    assert ec2.loc[WEST, "mbm_kg_per_unit"] == pytest.approx(0.04)
    assert (bool(ec2.loc[EAST, "estimated"]), bool(ec2.loc[WEST, "estimated"])) == (False, True)
    # Ranked greenest first.
    assert list(ec2.index) == [WEST, EAST]
    coverage = data.coverage.set_index("month")
    # (1000 x 0 + 500 x 0.5) / 1500 estimated each month; only March provisional.
    assert list(coverage["estimated_share"]) == pytest.approx([0.25 / 1.5] * 3)
    assert list(coverage["provisional"]) == [False, False, True]


def test_backtest_summary_buckets_each_series_of_the_backtest_table(
    spark: SparkSession, full_lake: Path
) -> None:
    backtest = tables.read_lake_table(spark, full_lake, tables.FORECAST_BACKTEST)
    summary = {
        (r["method"], r["basis"], r["bucket"]): r["series"]
        for r in aggregates.backtest_summary(backtest).collect()
    }
    assert summary == {
        ("ets", "LBM", "5-10 %"): 1,
        ("ets", "MBM", "5-10 %"): 1,
        ("naive", "LBM", aggregates.MAPE_MISSING): 1,
        ("naive", "MBM", aggregates.MAPE_MISSING): 1,
    }


def test_operator_report_reads_target_progress(operator_data: ReportData) -> None:
    (retail,) = operator_data.targets
    # Retail = account P1: MBM 80 + 3 in January, 90 + 3 in February -> 176 x 12 / 2 = 1056.
    assert retail.label == "Retail: -50 % MBM 2025→2030"
    assert retail.baseline_kg == pytest.approx(1056.0)
    assert [year for year, _ in retail.path] == [2025, 2026, 2027, 2028, 2029, 2030]
    assert [kg for _, kg in retail.path] == pytest.approx(
        [1056.0, 950.4, 844.8, 739.2, 633.6, 528.0]
    )
    assert (retail.latest_year, retail.latest_months) == (2025, 2)
    assert retail.status == "no data after the baseline year"


def test_payer_reports_show_only_targets_of_their_own_business_units(
    payer_data: ReportData, spark: SparkSession, full_lake: Path, tmp_path: Path
) -> None:
    # Retail holds only P1's account P1: P1's report has its target and Retail's months.
    (retail,) = payer_data.targets
    assert retail.business_unit == "Retail" and payer_data.shared_target_units == []
    series = payer_data.target_series
    assert set(series["business_unit"]) == {"Retail"}
    assert series["total_mbm_kg"].tolist() == pytest.approx([83.0, 93.0])
    # P2's accounts are in Research (no target) and unmapped: no target, no Retail.
    other = gather_report_data(spark, full_lake, ReportRequest(payer=P2))
    assert other.targets == [] and other.target_series is not None
    assert other.target_series.empty
    html = _written(other, tmp_path / "p2.html")
    assert "Retail" not in html
    assert "No reduction target covers a business unit whose accounts are all" in html


def test_a_payer_sees_no_target_of_a_unit_shared_with_other_payers() -> None:
    def target(unit: str) -> TargetProgress:
        return TargetProgress(unit, "lbm", 2025, 2030, 50.0, 1.0, (), None, None, 0, None, None)

    targets = [target("Retail"), target("Media"), target("Research")]
    unit_payers = {"Retail": ["P1"], "Media": ["P1", "P2"], "Research": ["P2"]}
    own, shared = payer_targets(targets, unit_payers, "P1")
    assert [t.business_unit for t in own] == ["Retail"] and shared == ["Media"]
    own, shared = payer_targets(targets, unit_payers, "P2")
    assert [t.business_unit for t in own] == ["Research"] and shared == ["Media"]
    assert payer_targets(targets, unit_payers, "P3") == ([], [])


def test_a_target_across_a_methodology_change_is_not_compared() -> None:
    # Baseline 2024 under v1.0, latest 2025 under v2.0: the jump is the methodology's.
    base = TargetProgress(
        "Retail", "mbm", 2024, 2030, 42.0, 1200.0, ((2024, 1200.0), (2025, 1116.0)),
        2025, 2400.0, 3, 1116.0, False,
    )  # fmt: skip
    series = pd.DataFrame(
        {
            "month": [dt.date(2024, 11, 1), dt.date(2024, 12, 1), dt.date(2025, 1, 1)],
            "model_version": ["v1.0", "v1.0", "v2.0"],
            "business_unit": ["Retail"] * 3,
            "total_lbm_kg": [100.0, 100.0, 200.0],
            "total_mbm_kg": [100.0, 100.0, 200.0],
        }
    )
    (versioned,) = with_versions([base], series)
    assert (versioned.baseline_versions, versioned.latest_versions) == (("v1.0",), ("v2.0",))
    assert versioned.status == "not comparable: 2024 under v1.0, 2025 under v2.0"
    assert base.status == "off track"  # without the versions, as gold/target_progress says
    same = series.assign(model_version="v2.0")
    assert with_versions([base], same)[0].status == "off track"
    figure = charts.target_path(series, versioned)
    names = [trace.name for trace in figure.data]
    assert names == [
        "Retail, market-based (v1.0)",
        "Retail, market-based (v2.0)",
        "target path Retail: -42 % MBM 2024→2030",
    ]
    # The path in monthly equivalents: 1200 / 12 kg = 0.1 t in 2024.
    assert list(figure.data[2].y) == pytest.approx([0.1, 0.093])


def test_target_status_from_gold_target_progress(spark: SparkSession) -> None:
    bu_rows = [
        {"month": month, "model_version": "v2.0", "business_unit": "Retail",
         "region_code": EAST, "product_code": EC2, "total_lbm_kg": 100.0, "total_mbm_kg": mbm}
        for month, mbm in ((JAN, 83.0), (FEB, 93.0), (dt.date(2026, 1, 1), 70.0))
    ]  # fmt: skip
    tight = TargetSettings(
        business_unit="Retail", baseline_year=2025, target_year=2026, reduction_percent=10,
        basis="lbm",
    )  # fmt: skip
    early = RETAIL_TARGET.model_copy(update={"baseline_year": 2024})
    late = RETAIL_TARGET.model_copy(update={"baseline_year": 2026})
    progress = target_progress(
        frame(spark, schemas.BU_MONTHLY, bu_rows), [RETAIL_TARGET, tight, early, late]
    )
    found = targets_from_progress(progress.toPandas())
    got = {(t.basis, t.baseline_year, t.target_year): t for t in found}
    retail = got[("mbm", 2025, 2030)]
    # Baseline (83 + 93) x 12 / 2 = 1056 kg/yr; 2026: 70 x 12 = 840 <= 1056 x (1 - 0.5 / 5).
    assert retail.baseline_kg == pytest.approx(1056.0)
    assert (retail.latest_year, retail.latest_months) == (2026, 1)
    assert retail.latest_kg == pytest.approx(840.0)
    assert retail.latest_path_kg == pytest.approx(950.4)
    assert dict(retail.path)[2030] == pytest.approx(528.0)
    assert retail.status == "on track"
    # LBM: 1200 kg/yr in both years against 1200 x 0.9 = 1080 in 2026.
    assert got[("lbm", 2025, 2026)].latest_path_kg == pytest.approx(1080.0)
    assert got[("lbm", 2025, 2026)].status == "off track"
    assert got[("mbm", 2024, 2030)].status == "no data for baseline year 2024"
    assert got[("mbm", 2024, 2030)].path == ()
    assert got[("mbm", 2026, 2030)].status == "no data after the baseline year"
