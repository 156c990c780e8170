"""gold/forecast: hand-computed naive forecasts, grid trend, contracts, backtest split and MAPE."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import assert_conforms
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carbon_core import schemas
from carbon_core.calendar import month_range
from carbon_core.cli import main as cli_main
from carbon_core.config import ForecastSettings
from carbon_core.insight import forecast as fc
from carbon_core.lake import tables, write_table

Z90 = 1.6448536269514722  # standard normal quantile of 0.95: a 90 % two-sided interval
SMALL = ForecastSettings(
    horizon_end="2025-06", holdout_months=2, min_history_months=12, interval_level=0.9
)


def d(text: str) -> dt.date:
    year, month = text.split("-")
    return dt.date(int(year), int(month), 1)


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def emissions_row(
    payer: str,
    region: str,
    location: str,
    month: str,
    energy: float,
    *,
    s2lbm: float,
    scope1: float = 0.0,
    scope3: float = 0.0,
    product: str = "S",
) -> tuple:
    total = scope1 + s2lbm + scope3
    # ACCOUNT_EMISSIONS: month, model_version, payer, usage account, is_internal, region,
    # location, product, energy, scope1, scope2 lbm, scope2 mbm, scope3, water, totals.
    return (
        d(month),
        "v2.0",
        payer,
        f"{payer}-u",
        False,
        region,
        location,
        product,
        energy,
        scope1,
        s2lbm,
        s2lbm,
        scope3,
        0.0,
        total,
        total,
    )


def site_month(
    spark: SparkSession,
    rows: list[tuple[str, str, str, str, str, str, float, float]],
) -> DataFrame:
    """(month, site, cluster, level, zone, boundary, energy, scope2_lbm) -> SITE_MONTHLY rows."""
    full = []
    for month, site, cluster, level, zone, boundary, energy, s2lbm in rows:
        values = dict.fromkeys(schemas.SITE_MONTHLY.fieldNames())
        values.update(
            month=d(month),
            site_id=site,
            cluster_id=cluster,
            energy_kwh=energy,
            factor_level=level,
            factor_zone=zone,
            market_boundary=boundary,
            scope2_lbm_kg=s2lbm,
        )
        full.append(tuple(values.values()))
    return spark.createDataFrame(full, schemas.SITE_MONTHLY)


def contracts(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    """(id, site, boundary, start, end, kWh, factor) -> energy_contracts rows."""
    return spark.createDataFrame(
        [
            (cid, "ppa", site, boundary, ts(lo), ts(hi), kwh, f)
            for cid, site, boundary, lo, hi, kwh, f in rows
        ],
        schemas.ENERGY_CONTRACTS.schema,
    )


def sites(spark: SparkSession, rows: list[tuple[str, str]]) -> DataFrame:
    return spark.createDataFrame(
        [(site, cluster, None, None, None, None, None, None, None, None) for site, cluster in rows],
        schemas.SITES.schema,
    )


def grid(spark: SparkSession, rows: list[tuple[str, str, int, float]]) -> DataFrame:
    return spark.createDataFrame([(*r, "test") for r in rows], schemas.GRID_FACTORS)


# The small world. Region r1: site s1 (zone XX, boundary BX); region r2: site s2 (zone YY,
# boundary BX). XX falls 0.1 kg/kWh a year (0.6, 0.5, 0.4 in 2022-2024): the line gives
# 0.3 in 2025, so g_r1(2025) = 0.3 / 0.4 = 0.75. YY has one year: g_r2 = 1.
# Series A (P1, r1): 10, 20, 30 kWh in 2025-01..03, scope 2 LBM 0.5/kWh, scope 3 0.1/kWh.
# Series B (P2, r1): all zero. Series C (P3, r2): 5, 7 kWh in 2025-02..03, scope 2 LBM
# 0.2/kWh, scope 1 0.05/kWh. Last actual month 2025-03; forecast 2025-04..2025-06.
# Contracts: K1 site-bound to s1, April, 10 kWh at 0 kg/kWh; K2 boundary BX, May, 13 kWh at
# 0.1 kg/kWh (split r1 : r2 = 20 : 6 by forecast energy, i.e. 10 and 3 kWh); K0 in 2024
# lies in the past and must not count.
def small_world(spark: SparkSession) -> dict[str, DataFrame]:
    emissions = []
    for month, energy in (("2025-01", 10.0), ("2025-02", 20.0), ("2025-03", 30.0)):
        emissions.append(
            emissions_row(
                "P1", "r1", "Loc1", month, energy, s2lbm=0.5 * energy, scope3=0.1 * energy
            )
        )
        emissions.append(emissions_row("P2", "r1", "Loc1", month, 0.0, s2lbm=0.0))
    for month, energy in (("2025-02", 5.0), ("2025-03", 7.0)):
        emissions.append(
            emissions_row(
                "P3", "r2", "Loc2", month, energy, s2lbm=0.2 * energy, scope1=0.05 * energy
            )
        )
    monthly = []
    for month in ("2025-01", "2025-02", "2025-03"):
        monthly.append((month, "s1", "r1", "country", "XX", "BX", 100.0, 40.0))
        monthly.append((month, "s2", "r2", "country", "YY", "BX", 100.0, 30.0))
    return {
        "account_emissions": spark.createDataFrame(emissions, schemas.ACCOUNT_EMISSIONS),
        "site_monthly": site_month(spark, monthly),
        "energy_contracts": contracts(
            spark,
            [
                ("K0", "s1", None, "2024-03-01 00:00:00", "2024-04-01 00:00:00", 999.0, 0.0),
                ("K1", "s1", None, "2025-04-01 00:00:00", "2025-05-01 00:00:00", 10.0, 0.0),
                ("K2", None, "BX", "2025-05-01 00:00:00", "2025-06-01 00:00:00", 13.0, 0.1),
            ],
        ),
        "sites": sites(spark, [("s1", "r1"), ("s2", "r2")]),
        "grid_factors": grid(
            spark,
            [
                ("country", "XX", 2022, 0.6),
                ("country", "XX", 2023, 0.5),
                ("country", "XX", 2024, 0.4),
                ("country", "YY", 2024, 0.3),
                ("country", "ZZ", 2024, 9.9),  # a zone nobody uses
            ],
        ),
    }


@pytest.fixture(scope="module")
def small_built(spark: SparkSession) -> Iterator[fc.ForecastTables]:
    built = fc.build_forecast(**small_world(spark), settings=SMALL)
    cached = fc.ForecastTables(built.forecast.cache(), built.backtest.cache())
    yield cached
    cached.forecast.unpersist()
    cached.backtest.unpersist()


@pytest.fixture(scope="module")
def small_forecast(small_built: fc.ForecastTables) -> DataFrame:
    return small_built.forecast


@pytest.fixture(scope="module")
def small(small_forecast: DataFrame) -> dict[tuple[str, dt.date], dict]:
    return {(r["payer_account_id"], r["month"]): r.asDict() for r in small_forecast.collect()}


def test_forecast_rows_run_exactly_to_the_horizon(small: dict) -> None:
    months = sorted({m for _, m in small})
    assert months == [d("2025-04"), d("2025-05"), d("2025-06")]
    assert sorted({p for p, _ in small}) == ["P1", "P2", "P3"]
    assert len(small) == 9
    row = small[("P1", d("2025-06"))]
    assert row["last_actual_month"] == d("2025-03")
    assert row["interval_level"] == pytest.approx(0.9)
    assert (row["region_code"], row["location"], row["product_code"]) == ("r1", "Loc1", "S")


def test_short_series_get_the_exact_naive_forecast(small: dict) -> None:
    # A: mean of 10, 20, 30 = 20; s = 10; the 90 % interval is 20 ± 1.6449 x 10.
    a = small[("P1", d("2025-06"))]
    assert a["method"] == "naive"
    assert a["history_months"] == 3
    assert a["energy_kwh"] == pytest.approx(20.0)
    # LBM per kWh = i_other + i_s2lbm x g = 0.1 + 0.5 x 0.75 = 0.475.
    assert a["total_lbm_kg"] == pytest.approx(9.5)
    assert a["lbm_lower_kg"] == pytest.approx(0.475 * (20 - Z90 * 10))
    assert a["lbm_upper_kg"] == pytest.approx(0.475 * (20 + Z90 * 10))
    # No contract in June: MBM equals LBM, bounds included.
    assert a["covered_share"] == 0.0
    assert a["total_mbm_kg"] == pytest.approx(9.5)
    assert a["mbm_upper_kg"] == pytest.approx(a["lbm_upper_kg"])
    # C, two months (5, 7): mean 6, s = sqrt(2), grid multiplier 1 (one factor year).
    c = small[("P3", d("2025-06"))]
    assert (c["method"], c["history_months"]) == ("naive", 2)
    assert c["energy_kwh"] == pytest.approx(6.0)
    assert c["total_lbm_kg"] == pytest.approx(6.0 * (0.05 + 0.2))
    assert c["lbm_lower_kg"] == pytest.approx(0.25 * (6 - Z90 * math.sqrt(2)))


def test_all_zero_series_forecasts_zero_without_failing(small: dict) -> None:
    for month in (d("2025-04"), d("2025-05"), d("2025-06")):
        b = small[("P2", month)]
        assert b["method"] == "naive"
        values = [b[k] for k in ("energy_kwh", "total_lbm_kg", "lbm_upper_kg", "total_mbm_kg")]
        assert values == [0.0, 0.0, 0.0, 0.0]
        assert b["backtest_mape_lbm"] is None and b["backtest_mape_mbm"] is None


def test_future_contracts_lower_mbm_by_the_hand_computed_amount(small: dict) -> None:
    # April, r1: K1 covers 10 of 20 forecast kWh at 0 kg/kWh.
    # MBM = 20 x (0.1 + 0.5 x 0.5 x 0.75 + 0.5 x 0) = 5.75, i.e. 3.75 below LBM (9.5).
    april = small[("P1", d("2025-04"))]
    assert april["covered_share"] == pytest.approx(0.5)
    assert april["total_mbm_kg"] == pytest.approx(5.75)
    assert april["total_lbm_kg"] - april["total_mbm_kg"] == pytest.approx(3.75)
    assert april["mbm_lower_kg"] == pytest.approx((20 - Z90 * 10) * 5.75 / 20)
    # May: K2's 13 kWh split r1 : r2 = 20 : 6 -> 10 and 3 kWh, half of each region.
    may = small[("P1", d("2025-05"))]
    assert may["covered_share"] == pytest.approx(0.5)
    assert may["total_mbm_kg"] == pytest.approx(20 * (0.1 + 0.5 * 0.5 * 0.75 + 0.5 * 0.1))
    c_may = small[("P3", d("2025-05"))]
    assert c_may["covered_share"] == pytest.approx(3 / 6)
    assert c_may["total_mbm_kg"] == pytest.approx(6 * (0.05 + 0.5 * 0.2 + 0.5 * 0.1))
    # r2 has no contract in April: the past K0 does not count anywhere.
    assert small[("P3", d("2025-04"))]["covered_share"] == 0.0


# Series A's backtest, holdout 2: train on 2025-01 only (10 kWh -> naive 10), forecast
# 2025-02 and 03: LBM 10 x 0.475 = 4.75 against actual 0.6 x 20 = 12 and 0.6 x 30 = 18.
A_MAPE = (abs(4.75 - 12) / 12 + abs(4.75 - 18) / 18) / 2 * 100  # 67.0139 %


def test_backtest_holds_out_the_last_months_and_scores_mape(small: dict) -> None:
    for month in (d("2025-04"), d("2025-05"), d("2025-06")):
        a = small[("P1", month)]
        assert a["backtest_mape_lbm"] == pytest.approx(A_MAPE)
        assert a["backtest_mape_mbm"] == pytest.approx(A_MAPE)
    # C starts in the held-out window: nothing to train on.
    assert small[("P3", d("2025-04"))]["backtest_mape_lbm"] is None


def test_backtest_table_has_one_row_per_series(small_built: fc.ForecastTables) -> None:
    backtest = small_built.backtest
    contract = [(f.name, f.dataType) for f in schemas.FORECAST_BACKTEST.fields]
    assert [(f.name, f.dataType) for f in backtest.schema.fields] == contract
    rows = {r["payer_account_id"]: r.asDict() for r in backtest.collect()}
    assert backtest.count() == len(rows) == 3
    a = rows["P1"]
    assert (a["region_code"], a["location"], a["product_code"]) == ("r1", "Loc1", "S")
    assert (a["method"], a["last_actual_month"], a["holdout_months"]) == (
        "naive",
        d("2025-03"),
        2,
    )
    assert a["backtest_mape_lbm"] == pytest.approx(A_MAPE)
    assert a["backtest_mape_mbm"] == pytest.approx(A_MAPE)
    # B was forecast over both held-out months, but its actuals are 0: nothing to score.
    b = rows["P2"]
    assert (b["holdout_months"], b["backtest_mape_lbm"], b["backtest_mape_mbm"]) == (2, None, None)
    # C starts in the held-out window: no month before it, so none held out.
    c = rows["P3"]
    assert (c["holdout_months"], c["backtest_mape_lbm"], c["backtest_mape_mbm"]) == (0, None, None)


def test_backtest_summary_and_log_line_of_the_small_world(
    small_built: fc.ForecastTables,
) -> None:
    summary = fc.backtest_summary(small_built.backtest, SMALL)
    assert summary["holdout_months"] == ["2025-02", "2025-03"]
    assert summary["last_actual_month"] == "2025-03"
    assert summary["series"] == 3
    assert summary["series_by_method"] == {"naive": 3}
    assert summary["series_scored"] == {"lbm": 1, "mbm": 1}
    assert summary["median_mape_lbm"] == pytest.approx(67.013888, abs=1e-5)
    assert fc.summary_line(summary) == (
        "forecast: 3 series to 2025-06 (naive 3); backtest on 2 held-out month(s): "
        "median MAPE LBM 67.0%, MBM 67.0% (1 series scored)"
    )


def test_training_split_of_one_series() -> None:
    # History 2024-01..2024-12 (1..12 kWh), last actual 2024-12, holdout 4: the backtest
    # trains on 2024-01..08 and forecasts 2024-09..12; the forecast runs 2025-01..03.
    months = month_range(d("2024-01"), d("2024-12"))
    pdf = pd.DataFrame(
        {
            "payer_account_id": "P",
            "region_code": "r",
            "location": "L",
            "product_code": "S",
            "month": months,
            "energy_kwh": np.arange(1.0, 13.0),
            "scope1_kg": 0.0,
            "scope2_lbm_kg": np.arange(1.0, 13.0),
            "scope3_kg": 0.0,
        }
    )
    out = fc._fit_series_group(
        pdf,
        last_actual=d("2024-12"),
        horizon_end=d("2025-03"),
        holdout_months=4,
        min_history_months=24,
        interval_level=0.9,
    )
    backtest = out[out["run"] == "backtest"]
    forecast = out[out["run"] == "forecast"]
    assert list(backtest["month"]) == month_range(d("2024-09"), d("2024-12"))
    assert list(forecast["month"]) == month_range(d("2025-01"), d("2025-03"))
    # Naive (24 months needed for ETS): the backtest's level is the mean of 1..8.
    assert backtest["energy_kwh"].tolist() == pytest.approx([4.5] * 4)
    assert set(backtest["history_months"]) == {8}
    assert forecast["energy_kwh"].tolist() == pytest.approx([6.5] * 3)
    assert set(forecast["history_months"]) == {12}


def test_zone_multiplier_follows_a_linear_trend_and_clamps_at_zero() -> None:
    line = [(2022, 0.6), (2023, 0.5), (2024, 0.4)]
    got = fc.zone_multipliers(line, [2024, 2025, 2026, 2028, 2030])
    assert got[2024] == pytest.approx(1.0)
    assert got[2025] == pytest.approx(0.75)
    assert got[2026] == pytest.approx(0.5)
    assert got[2028] == pytest.approx(0.0, abs=1e-12)
    assert got[2030] == 0.0  # the line is negative: clamped
    assert fc.zone_multipliers([(2024, 0.3)], [2025, 2030]) == {2025: 1.0, 2030: 1.0}


def test_region_multiplier_weights_zones_by_scope2_lbm(spark: SparkSession) -> None:
    monthly = site_month(
        spark,
        [
            ("2025-03", "a", "r3", "country", "XX", "B", 10.0, 3.0),
            ("2025-03", "b", "r3", "country", "YY", "B", 10.0, 1.0),
            # Older than the last 12 months: no weight.
            ("2024-01", "c", "r3", "country", "WW", "B", 10.0, 100.0),
        ],
    )
    factors = grid(
        spark,
        [
            ("country", "XX", 2023, 0.5),
            ("country", "XX", 2024, 0.4),
            ("country", "YY", 2024, 0.3),
            ("country", "WW", 2023, 0.9),
            ("country", "WW", 2024, 0.1),
        ],
    )
    rows = fc.grid_multipliers(
        monthly, factors, last_actual=d("2025-03"), years=[2025, 2026]
    ).collect()
    got = {(r["region_code"], r["year"]): r["grid_multiplier"] for r in rows}
    # XX: 0.3/0.4 = 0.75 in 2025, 0.5 in 2026; YY: 1. Weights 3 : 1.
    assert got[("r3", 2025)] == pytest.approx((3 * 0.75 + 1 * 1.0) / 4)
    assert got[("r3", 2026)] == pytest.approx((3 * 0.5 + 1 * 1.0) / 4)


def test_a_failed_fit_falls_back_to_naive(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise np.linalg.LinAlgError("singular")

    monkeypatch.setattr(fc, "_ets_energy_forecast", broken)
    energy = pd.Series(np.arange(1.0, 25.0), index=pd.period_range("2023-01", periods=24, freq="M"))
    got = fc.forecast_energy(energy, 3, min_history_months=12, interval_level=0.9)
    assert got.method == "naive"
    assert got.mean.tolist() == pytest.approx([18.5] * 3)  # mean of 13..24


def test_long_series_use_ets_and_intervals_hold_to_2030(spark: SparkSession) -> None:
    rng = np.random.default_rng(5)
    months = month_range(d("2023-04"), d("2025-03"))
    rows = []
    for i, month in enumerate(months):
        growing = 1000.0 + 40.0 * i + rng.normal(0, 25)
        shrinking = max(500.0 - 30.0 * i + rng.normal(0, 20), 1.0)
        text = f"{month:%Y-%m}"
        rows.append(emissions_row("G", "r1", "Loc1", text, growing, s2lbm=0.4 * growing))
        rows.append(emissions_row("D", "r1", "Loc1", text, shrinking, s2lbm=0.4 * shrinking))
    settings = ForecastSettings(horizon_end="2030-12")
    built = fc.build_forecast(
        spark.createDataFrame(rows, schemas.ACCOUNT_EMISSIONS),
        site_month(spark, [("2025-03", "s1", "r1", "country", "YY", "BX", 1.0, 1.0)]),
        contracts(spark, []),
        sites(spark, [("s1", "r1")]),
        grid(spark, [("country", "YY", 2024, 0.3)]),
        settings,
    )
    forecast = built.forecast
    got = forecast.collect()
    months_out = sorted({r["month"] for r in got})
    assert months_out == month_range(d("2025-04"), d("2030-12"))
    assert len(got) == 2 * len(months_out)
    assert {r["method"] for r in got} == {"ets"}
    for r in got:
        assert 0.0 <= r["lbm_lower_kg"] <= r["total_lbm_kg"] <= r["lbm_upper_kg"]
        assert 0.0 <= r["mbm_lower_kg"] <= r["total_mbm_kg"] <= r["mbm_upper_kg"]
        assert r["total_lbm_kg"] == pytest.approx(0.4 * r["energy_kwh"])
    growing = sorted((r["month"], r["energy_kwh"]) for r in got if r["payer_account_id"] == "G")
    assert growing[-1][1] > growing[0][1] > 1000.0
    # 18 training months >= 12: the backtest is scored for both series.
    assert all(r["backtest_mape_lbm"] is not None and r["backtest_mape_lbm"] >= 0 for r in got)
    backtest = built.backtest.collect()
    assert sorted((r["payer_account_id"], r["method"], r["holdout_months"]) for r in backtest) == [
        ("D", "ets", 6),
        ("G", "ets", 6),
    ]
    contract = [(f.name, f.dataType) for f in schemas.FORECAST.fields]
    assert [(f.name, f.dataType) for f in forecast.schema.fields] == contract


def test_cli_forecast_rebuilds_the_forecast_and_backtest_tables(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = small_world(spark)
    lake = tmp_path / "lake"
    for table, name in (
        (tables.ACCOUNT_EMISSIONS, "account_emissions"),
        (tables.SITE_MONTHLY, "site_monthly"),
        (tables.bronze("energy_contracts"), "energy_contracts"),
        (tables.bronze("sites"), "sites"),
    ):
        write_table(world[name], table.uri(lake), mode="overwrite")
    config = tmp_path / "forecast.yaml"
    config.write_text(
        "forecast:\n  horizon_end: '2025-06'\n  holdout_months: 2\n  min_history_months: 12\n"
    )
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "grid_factors.csv").write_text(
        "level,zone,year,kg_per_kwh,source\n"
        "country,XX,2022,0.6,t\ncountry,XX,2023,0.5,t\ncountry,XX,2024,0.4,t\n"
        "country,YY,2024,0.3,t\n"
    )
    # A stale forecast from an earlier build: the rebuild replaces its rows.
    stale = dict.fromkeys(schemas.FORECAST.fieldNames())
    stale.update(month=d("2024-01"), payer_account_id="OLD", region_code="r9", product_code="S")
    stale.update(method="naive")
    stale_frame = spark.createDataFrame([tuple(stale.values())], schemas.FORECAST)
    tables.overwrite_lake_table(stale_frame, lake, tables.FORECAST)
    args = ["forecast", "--config", str(config), "--lake", str(lake), "--reference", str(reference)]
    assert cli_main(args) == 0
    assert (
        "forecast: 3 series to 2025-06 (naive 3); backtest on 2 held-out month(s): "
        "median MAPE LBM 67.0%, MBM 67.0% (1 series scored)"
    ) in capsys.readouterr().out.splitlines()
    table = tables.read_lake_table(spark, lake, tables.FORECAST)
    assert table.schema.fieldNames() == schemas.FORECAST.fieldNames()
    assert table.count() == 9
    assert table.where(F.col("payer_account_id") == "OLD").count() == 0
    p1_june = table.where((F.col("payer_account_id") == "P1") & (F.col("month") == d("2025-06")))
    assert p1_june.first()["total_lbm_kg"] == pytest.approx(9.5)
    backtest = tables.read_lake_table(spark, lake, tables.FORECAST_BACKTEST)
    assert_conforms(backtest.schema, schemas.FORECAST_BACKTEST)
    got = {
        r["payer_account_id"]: (r["holdout_months"], r["backtest_mape_lbm"])
        for r in backtest.collect()
    }
    assert got == {"P1": (2, pytest.approx(A_MAPE)), "P2": (2, None), "P3": (0, None)}
