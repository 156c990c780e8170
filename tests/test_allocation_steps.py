"""Allocation steps on their own: rack embodied months, service graph, nested pass-through,
region expansion without basis or consumers. Expected numbers are worked out by hand."""

from __future__ import annotations

import datetime as dt

import pytest
from helpers import assert_frames_equal, frame
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from carbon_core import schemas
from carbon_core.allocation import rack_embodied_monthly
from carbon_core.allocation.pools import share_expansion_pool
from carbon_core.allocation.services import pass_through, pass_through_levels
from carbon_core.errors import CarbonlakeError
from carbon_core.schemas import QUANTITIES

NOV, DEC, JAN, FEB = (dt.date(2024, 11, 1), dt.date(2024, 12, 1), dt.date(2025, 1, 1),
                      dt.date(2025, 2, 1))  # fmt: skip
S, D = T.StringType(), T.DoubleType()
ROWS_SCHEMA = T.StructType(
    [
        T.StructField(name, dtype, True)
        for name, dtype in (
            ("month", T.DateType()),
            ("model_version", S),
            ("cluster_id", S),
            ("payer_account_id", S),
            ("usage_account_id", S),
            ("product_code", S),
            ("is_internal", T.BooleanType()),
            *((q, D) for q in QUANTITIES),
        )
    ]
)
POOL_SCHEMA = T.StructType(
    [T.StructField("month", T.DateType()), T.StructField("model_version", S),
     T.StructField("cluster_id", S), *(T.StructField(q, D) for q in QUANTITIES)]
)  # fmt: skip
WEIGHTS_SCHEMA = T.StructType(
    [T.StructField("month", T.DateType()), T.StructField("cluster_id", S),
     T.StructField("product_code", S), T.StructField("payer_account_id", S),
     T.StructField("usage_account_id", S), T.StructField("usage_amount", D)]
)  # fmt: skip


ZEROS = {q: 0.0 for q in QUANTITIES}  # quantities a row of ROWS_SCHEMA or POOL_SCHEMA omits


# pytest.approx(rel=1e-12) allowed max(1e-12 x |expected|, 1e-12); this allows no more.
REL_1E12 = {"rtol": 1e-12, "atol": 0.0}


def test_rack_embodied_monthly(spark: SparkSession) -> None:
    """Lifetime 3 months, full amount from the in-service month, only while in service."""
    racks = frame(
        spark,
        schemas.RACKS.schema,
        [
            # 300/3 = 100 in Nov, Dec, Jan (in service late in November still counts fully)
            {"rack_id": "A", "embodied_kgco2e": 300.0, "in_service_date": dt.date(2024, 11, 20)},
            # 600/3 = 200 in Dec; retired on 1 January: out of service in January
            {"rack_id": "B", "embodied_kgco2e": 600.0, "in_service_date": dt.date(2024, 12, 15),
             "retired_date": dt.date(2025, 1, 1)},
            # 30/3 = 10 in Dec and Jan (retired on 2 January: still in service in January)
            {"rack_id": "C", "embodied_kgco2e": 30.0, "in_service_date": dt.date(2024, 12, 31),
             "retired_date": dt.date(2025, 1, 2)},
            # not yet in service
            {"rack_id": "D", "embodied_kgco2e": 30.0, "in_service_date": dt.date(2025, 3, 1)},
        ],
    )  # fmt: skip
    out = rack_embodied_monthly(racks, [NOV, DEC, JAN, FEB], it_lifetime_months=3)
    expected = frame(
        spark,
        "month DATE, rack_id STRING, scope3_kg DOUBLE",
        [(NOV, "A", 100.0), (DEC, "A", 100.0), (JAN, "A", 100.0), (DEC, "B", 200.0),
         (DEC, "C", 10.0), (JAN, "C", 10.0)],
    )  # fmt: skip
    assert_frames_equal(out.select("month", "rack_id", "scope3_kg"), expected, **REL_1E12)


def catalog(spark: SparkSession, services: list[tuple[str, str | None, str | None]]) -> DataFrame:
    rows = [{"product_code": "EC2", "kind": "foundational", "allocation_unit": "h"}]
    rows += [
        {"product_code": code, "kind": "non_foundational", "allocation_unit": "u",
         "runs_on": runs_on, "owner_account_id": owner}
        for code, runs_on, owner in services
    ]  # fmt: skip
    return frame(spark, schemas.SERVICE_CATALOG.schema, rows)


def test_service_levels_and_cycle(spark: SparkSession) -> None:
    levels = pass_through_levels(
        catalog(spark, [("N2", "N1", "O2"), ("N1", "EC2", "O1"), ("N3", "EC2", "O3")])
    )
    assert [[s.product_code for s in level] for level in levels] == [["N1", "N3"], ["N2"]]
    cyclic = catalog(spark, [("A", "B", "O1"), ("B", "A", "O2"), ("N1", "EC2", "O1")])
    with pytest.raises(CarbonlakeError, match="A -> B -> A"):
        pass_through_levels(cyclic)


def test_nested_pass_through(spark: SparkSession) -> None:
    """N1 runs on EC2 (owner O1), N2 runs on N1 (owner O2).

    v2.0 (Jan): O1's EC2 row (E 10, s3 2) -> N1 customers O2 5 / X 15 of 20: O2 2.5 (s3 0.5),
    X 7.5 (s3 1.5); then O2's N1 row -> N2's customer Y: 2.5 (s3 0.5) under N2.
    v1.0 (Dec): O1's EC2 row (E 4) stays with O1 as N1; O2 received no N1, so N2 gets nothing.
    An unrelated row (X's own EC2) passes unchanged.
    """
    levels = pass_through_levels(catalog(spark, [("N1", "EC2", "O1"), ("N2", "N1", "O2")]))
    rows = frame(
        spark,
        ROWS_SCHEMA,
        defaults=ZEROS,
        rows=[
            {"month": JAN, "model_version": "v2.0", "cluster_id": "c1", "payer_account_id": "P",
             "usage_account_id": "O1", "product_code": "EC2", "energy_kwh": 10.0,
             "scope3_kg": 2.0},
            {"month": JAN, "model_version": "v2.0", "cluster_id": "c1", "payer_account_id": "P",
             "usage_account_id": "X", "product_code": "EC2", "energy_kwh": 1.0},
            {"month": DEC, "model_version": "v1.0", "cluster_id": "c1", "payer_account_id": "P",
             "usage_account_id": "O1", "product_code": "EC2", "energy_kwh": 4.0},
        ],
    ).drop("is_internal")  # fmt: skip
    weights = frame(
        spark,
        WEIGHTS_SCHEMA,
        [
            {"month": m, "cluster_id": "c1", "product_code": p, "payer_account_id": "P",
             "usage_account_id": a, "usage_amount": amount}
            for m in (DEC, JAN)
            for p, a, amount in (("N1", "O2", 5.0), ("N1", "X", 15.0), ("N2", "Y", 1.0))
        ],
    )  # fmt: skip
    out = pass_through(rows, weights, levels)
    expected = frame(
        spark,
        "month DATE, usage_account_id STRING, product_code STRING, energy_kwh DOUBLE, "
        "scope3_kg DOUBLE",
        [(JAN, "X", "N1", 7.5, 1.5), (JAN, "Y", "N2", 2.5, 0.5),
         (JAN, "X", "EC2", 1.0, 0.0), (DEC, "O1", "N1", 4.0, 0.0)],
    )  # fmt: skip
    got = out.select("month", "usage_account_id", "product_code", "energy_kwh", "scope3_kg")
    assert_frames_equal(got, expected, **REL_1E12)


def test_expansion_without_basis_or_consumers(spark: SparkSession) -> None:
    """Jan: external row has no water and no energy -> the water pool stays unallocated
    (no_basis) under each source cluster (cA 30, cB 20); scope3 4+6 = 10 goes to the only
    external row (10 -> 20), never to the internal row. Feb: no external row -> no_consumers
    under the source (cA E 10). Dec (v1.0): region_expansion under the source (cB s3 7)."""
    rows = frame(
        spark,
        ROWS_SCHEMA,
        defaults=ZEROS,
        rows=[
            {"month": JAN, "model_version": "v2.0", "cluster_id": "c1", "payer_account_id": "P",
             "usage_account_id": "X", "product_code": "EC2", "is_internal": False,
             "scope3_kg": 10.0},
            {"month": JAN, "model_version": "v2.0", "cluster_id": "c1", "payer_account_id": "I",
             "usage_account_id": "I", "product_code": "EC2", "is_internal": True,
             "energy_kwh": 100.0, "water_l": 100.0},
            {"month": FEB, "model_version": "v2.0", "cluster_id": "c1", "payer_account_id": "I",
             "usage_account_id": "I", "product_code": "EC2", "is_internal": True,
             "energy_kwh": 50.0},
        ],
    )  # fmt: skip
    contributions = frame(
        spark,
        POOL_SCHEMA,
        defaults=ZEROS,
        rows=[
            {"month": JAN, "model_version": "v2.0", "cluster_id": "cA", "water_l": 30.0,
             "scope3_kg": 4.0},
            {"month": JAN, "model_version": "v2.0", "cluster_id": "cB", "water_l": 20.0,
             "scope3_kg": 6.0},
            {"month": FEB, "model_version": "v2.0", "cluster_id": "cA", "energy_kwh": 10.0},
            {"month": DEC, "model_version": "v1.0", "cluster_id": "cB", "scope3_kg": 7.0},
        ],
    )  # fmt: skip
    step = share_expansion_pool(rows, contributions)
    quantities = ", ".join(f"{q} DOUBLE" for q in QUANTITIES)
    expected_rows = frame(
        spark,
        f"month DATE, usage_account_id STRING, {quantities}",
        # energy, scope1, lbm, mbm, scope3, water
        [(JAN, "X", 0.0, 0.0, 0.0, 0.0, 20.0, 0.0),
         (JAN, "I", 100.0, 0.0, 0.0, 0.0, 0.0, 100.0),
         (FEB, "I", 50.0, 0.0, 0.0, 0.0, 0.0, 0.0)],
    )  # fmt: skip
    got_rows = step.rows.select("month", "usage_account_id", *QUANTITIES)
    assert_frames_equal(got_rows, expected_rows, **REL_1E12)
    expected_unallocated = frame(
        spark,
        f"month DATE, cluster_id STRING, reason STRING, {quantities}",
        [(JAN, "cA", "no_basis", 0.0, 0.0, 0.0, 0.0, 0.0, 30.0),
         (JAN, "cB", "no_basis", 0.0, 0.0, 0.0, 0.0, 0.0, 20.0),
         (FEB, "cA", "no_consumers", 10.0, 0.0, 0.0, 0.0, 0.0, 0.0),
         (DEC, "cB", "region_expansion", 0.0, 0.0, 0.0, 0.0, 7.0, 0.0)],
    )  # fmt: skip
    got_unallocated = step.unallocated.select("month", "cluster_id", "reason", *QUANTITIES).where(
        " OR ".join(f"{q} != 0" for q in QUANTITIES)
    )
    assert_frames_equal(got_unallocated, expected_unallocated, **REL_1E12)
