"""gold/region_benchmarks and the greener-region ranking, on a hand-built month or two."""

from __future__ import annotations

import datetime as dt

import pytest
from helpers import assert_conforms
from pyspark.sql import DataFrame, SparkSession

from carbon_core import schemas
from carbon_core.insight.benchmarks import build_region_benchmarks, greener_regions

JAN, FEB = dt.date(2025, 1, 1), dt.date(2025, 2, 1)
UTC = dt.timezone.utc


def _site_month(month, site, cluster, energy, est, level, lbm, mbm, site_cov, bound_cov, prov):
    values = dict.fromkeys(schemas.SITE_MONTHLY.fieldNames())
    values.update(
        month=month, site_id=site, cluster_id=cluster, energy_kwh=energy,
        estimated_energy_share=est, factor_level=level, scope2_lbm_kg=lbm, scope2_mbm_kg=mbm,
        site_covered_kwh=site_cov, boundary_covered_kwh=bound_cov, provisional=prov,
    )  # fmt: skip
    return tuple(values[name] for name in schemas.SITE_MONTHLY.fieldNames())


SITE_MONTHLY = [
    _site_month(JAN, "s1", "c1", 1000.0, 0.0, "egrid_subregion", 400.0, 100.0, 300.0, 100.0, False),
    _site_month(JAN, "s2", "c1", 3000.0, 0.5, "country", 900.0, 600.0, 0.0, 200.0, True),
    _site_month(JAN, "s3", "c3", 500.0, 1.0, "global", 200.0, 200.0, 0.0, 0.0, False),
    _site_month(JAN, "s4", "c2", 200.0, 0.0, "country", 80.0, 80.0, 0.0, 0.0, False),
    _site_month(JAN, "s5", "c4", 2000.0, 0.0, "subdivision", 200.0, 200.0, 0.0, 0.0, False),
    _site_month(FEB, "s1", "c1", 1000.0, 0.0, "egrid_subregion", 400.0, 100.0, 0.0, 0.0, False),
]
CLUSTER_EFFICIENCY = [
    (JAN, "c1", 4000.0, 3200.0, 1280.0, 1.25, 0.4),
    (JAN, "c3", 500.0, 1000.0 / 3, None, 1.5, None),
]
# (month, rack, cluster, product, scope1, lbm, mbm, scope3)
RACKS = [
    (JAN, "r1", "c1", "EC2", 2.0, 100.0, 30.0, 8.0),
    (JAN, "r2", "c1", "EC2", 0.0, 50.0, 10.0, 2.0),
    (JAN, "r3", "c1", "S3", 1.0, 20.0, 5.0, 4.0),
    (JAN, "r4", "c1", None, 0.0, 999.0, 999.0, 0.0),  # network rack: no product
    (JAN, "r6", "c4", "EC2", 0.0, 60.0, 60.0, 0.0),
    (FEB, "r1", "c1", "EC2", 0.0, 100.0, 38.0, 0.0),
]


def _usage(day: dt.date, region: str, product: str, unit: str, amount: float):
    start = dt.datetime(day.year, day.month, 3, tzinfo=UTC)
    return (start, "p1", "a1", product, region, "t", unit, amount, None)


USAGE = [
    _usage(JAN, "c1", "EC2", "vCPU-hours", 100.0),
    _usage(JAN, "c1", "EC2", "vCPU-hours", 200.0),
    _usage(JAN, "c1", "EC2", "GB", 1000.0),  # not the allocation unit
    _usage(JAN, "c1", "S3", "GB-months", 0.0),
    _usage(JAN, "c3", "EC2", "vCPU-hours", 10.0),  # no EC2 rack in c3
    _usage(JAN, "c4", "EC2", "vCPU-hours", 200.0),
    _usage(JAN, "c1", "LAMBDA", "requests", 5.0),  # not foundational
    _usage(FEB, "c1", "EC2", "vCPU-hours", 500.0),
]
CATALOG = [
    ("EC2", "foundational", "vCPU-hours", None, None),
    ("S3", "foundational", "GB-months", None, None),
    ("LAMBDA", "non_foundational", "requests", "EC2", "o1"),
]
CLUSTERS = [
    ("c1", "region", dt.date(2020, 1, 1), "Region One"),
    ("c2", "edge", dt.date(2020, 1, 1), "Edge Two"),
    ("c3", "region", dt.date(2020, 1, 1), None),
    ("c4", "region", dt.date(2020, 1, 1), "Region Four"),
]


@pytest.fixture(scope="module")
def benchmarks(spark: SparkSession) -> DataFrame:
    racks = [
        (m, r, c, p, 1.0, 720, 0.0, s1, lbm, mbm, s3, 0.0)
        for (m, r, c, p, s1, lbm, mbm, s3) in RACKS
    ]
    frame = build_region_benchmarks(
        site_monthly=spark.createDataFrame(SITE_MONTHLY, schemas.SITE_MONTHLY),
        cluster_efficiency=spark.createDataFrame(CLUSTER_EFFICIENCY, schemas.CLUSTER_EFFICIENCY),
        rack_utilisation=spark.createDataFrame(racks, schemas.RACK_UTILISATION),
        usage=spark.createDataFrame(USAGE, schemas.USAGE.schema),
        service_catalog=spark.createDataFrame(CATALOG, schemas.SERVICE_CATALOG.schema),
        clusters=spark.createDataFrame(CLUSTERS, schemas.CLUSTERS.schema),
    )
    return frame.localCheckpoint()


def _rows(frame: DataFrame) -> dict[tuple, dict]:
    return {(r["month"], r["cluster_id"], r["product_code"]): r.asDict() for r in frame.collect()}


def test_one_row_per_month_cluster_and_hosted_foundational_product(benchmarks):
    assert_conforms(benchmarks.schema, schemas.REGION_BENCHMARKS)
    assert set(_rows(benchmarks)) == {
        (JAN, "c1", "EC2"),
        (JAN, "c1", "S3"),
        (JAN, "c2", None),  # edge cluster without product racks
        (JAN, "c3", None),  # only a network rack
        (JAN, "c4", "EC2"),
        (FEB, "c1", "EC2"),
    }


def test_cluster_columns_pue_wue_factors_and_covered_share(benchmarks):
    rows = _rows(benchmarks)
    for product in ("EC2", "S3"):  # repeated on every product row of the cluster-month
        c1 = rows[(JAN, "c1", product)]
        assert (c1["location"], c1["cluster_kind"]) == ("Region One", "region")
        assert c1["energy_kwh"] == 4000.0
        assert (c1["pue"], c1["wue_l_per_kwh"]) == (1.25, 0.4)
        # (400 + 900) / 4000 and (100 + 600) / 4000
        assert c1["location_factor_kg_per_kwh"] == pytest.approx(0.325, rel=1e-12)
        assert c1["market_factor_kg_per_kwh"] == pytest.approx(0.175, rel=1e-12)
        # (300 + 100 + 0 + 200) / 4000
        assert c1["covered_share"] == pytest.approx(0.15, rel=1e-12)
        # energy-weighted: (1000 x 0 + 3000 x 0.5) / 4000
        assert c1["estimated_energy_share"] == pytest.approx(0.375, rel=1e-12)
        assert (c1["factor_levels"], c1["provisional"]) == ("country,egrid_subregion", True)
    c3 = rows[(JAN, "c3", None)]
    assert (c3["location"], c3["pue"], c3["wue_l_per_kwh"]) == ("c3", 1.5, None)
    assert (c3["covered_share"], c3["factor_levels"], c3["provisional"]) == (0.0, "global", False)
    assert (c3["allocation_unit"], c3["usage_amount"], c3["lbm_kg_per_unit"]) == (None, None, None)
    c2 = rows[(JAN, "c2", None)]
    assert (c2["location"], c2["cluster_kind"], c2["pue"]) == ("Global", "edge", None)
    assert rows[(FEB, "c1", "EC2")]["pue"] is None  # no cluster_efficiency row


def test_service_intensity_by_hand(benchmarks):
    ec2 = _rows(benchmarks)[(JAN, "c1", "EC2")]
    # racks r1 + r2: LBM (2 + 100 + 8) + (0 + 50 + 2) = 162, MBM (2 + 30 + 8) + (0 + 10 + 2) = 52
    assert (ec2["service_lbm_kg"], ec2["service_mbm_kg"]) == (162.0, 52.0)
    # usage in vCPU-hours only: 100 + 200 (the 1000 GB row is another unit)
    assert (ec2["allocation_unit"], ec2["usage_amount"]) == ("vCPU-hours", 300.0)
    assert ec2["lbm_kg_per_unit"] == pytest.approx(162 / 300, rel=1e-12)
    assert ec2["mbm_kg_per_unit"] == pytest.approx(52 / 300, rel=1e-12)
    s3 = _rows(benchmarks)[(JAN, "c1", "S3")]
    assert (s3["service_lbm_kg"], s3["service_mbm_kg"], s3["usage_amount"]) == (25.0, 10.0, 0.0)
    assert (s3["lbm_kg_per_unit"], s3["mbm_kg_per_unit"]) == (None, None)  # no usage


def test_greener_regions_ranks_clusters_per_product_over_the_period(benchmarks):
    ranking = greener_regions(benchmarks, JAN, FEB)
    assert ranking.schema == schemas.GREENER_REGIONS
    rows = {(r["product_code"], r["cluster_id"]): r.asDict() for r in ranking.collect()}
    assert set(rows) == {("EC2", "c1"), ("EC2", "c4"), ("S3", "c1")}
    c1, c4 = rows[("EC2", "c1")], rows[("EC2", "c4")]
    # c1 over two months: LBM 162 + 100 = 262, MBM 52 + 38 = 90, usage 300 + 500 = 800
    assert (c1["service_lbm_kg"], c1["service_mbm_kg"], c1["usage_amount"]) == (262.0, 90.0, 800.0)
    assert c1["mbm_kg_per_unit"] == pytest.approx(90 / 800, rel=1e-12)
    assert c1["lbm_kg_per_unit"] == pytest.approx(262 / 800, rel=1e-12)
    assert c4["mbm_kg_per_unit"] == c4["lbm_kg_per_unit"] == pytest.approx(0.3, rel=1e-12)
    # market-based, c1 (0.1125) beats c4 (0.3); location-based, c4 (0.3) beats c1 (0.3275)
    assert (c1["mbm_rank"], c4["mbm_rank"]) == (1, 2)
    assert (c1["lbm_rank"], c4["lbm_rank"]) == (2, 1)
    # honesty about estimates: (3000 x 0.5 + 0) / (4000 + 1000) of c1's energy is estimated
    assert c1["estimated_energy_share"] == pytest.approx(0.3, rel=1e-12)
    assert (c1["months"], c1["provisional"], c1["factor_levels"]) == (
        2,
        True,
        "country,egrid_subregion",
    )
    assert (c4["estimated_energy_share"], c4["provisional"]) == (0.0, False)
    s3 = rows[("S3", "c1")]
    assert (s3["mbm_rank"], s3["lbm_rank"], s3["mbm_kg_per_unit"]) == (None, None, None)


def test_greener_regions_respects_the_period(benchmarks):
    rows = {
        (r["product_code"], r["cluster_id"]): r
        for r in greener_regions(benchmarks, FEB, FEB).collect()
    }
    assert set(rows) == {("EC2", "c1")}
    assert rows[("EC2", "c1")]["mbm_kg_per_unit"] == pytest.approx(38 / 500, rel=1e-12)
    with pytest.raises(ValueError, match="before"):
        greener_regions(benchmarks, FEB, JAN)
