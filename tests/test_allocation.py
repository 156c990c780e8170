"""Allocation engine (docs/methodology.md §7) on a small hand-computed world, v1.0 and v2.0.

The world (identical inputs in December 2024, v1.0, and January 2025, v2.0; lifetime 10
months so embodied/10 per month):

clusters  us-east-1 (region, "US East (N. Virginia)"), eu-west-1 (region, no name),
          edge-1 (edge), ap-new-1 (launch 2025-02-01: pre-launch in both months),
          net-only (launch 2024-12-15: live in December already; only a network rack).
sites     S1 S2 S3 -> us-east-1, S4 S5 -> eu-west-1, S6 S9 -> edge-1, S7 -> ap-new-1,
          S8 -> net-only.
site quantities (E = energy_kwh, W = water_l; scope1 = 0.1 E, lbm = 0.5 E, mbm = 0.25 E,
          building scope3 = 0 everywhere, so only E, W and rack scope3 need hand arithmetic):
          S1 (1000, 400)  S2 (200, 0)  S3 (100, 100)  S4 (500, 0)  S5 (200, 1000)
          S6 (0, 0)  S9 (0, 50)  S7 (315, 600)  S8 (50, 0)
racks     (embodied per month = embodied / 10; in service from 2024-06-01 unless said)
          C1  S1 compute EC2 cap 10   120/mo  telemetry 2 h: it 30+30, used 5+5 -> share 0.5
          K1  S1 network               60/mo  telemetry 2 h: it 10+10
          ST1 S1 storage S3 cap 100   240/mo  telemetry 2 h: it 10+10, used 100+100 -> share 1
          C2  S2 compute EC2 cap 30   120/mo  telemetry 2 h: it 0+0, used 15+15 -> share 0.5
          C3  S2 compute EC2 cap 10    60/mo  from 2024-03-10: lifetime Mar..Dec 2024 (0 in Jan)
                                              no telemetry -> share 0
          K2  S2 network               30/mo  no telemetry
          OLD S3 compute EC2, retired 2024-12-01 -> out of service in both months
          C4  S4 compute EC2 cap 10   120/mo  telemetry 1 h: it 40, used 10 -> share 1
          G4  S4 compute GPU cap 4     48/mo  telemetry 1 h: it 10, used 1 -> share 0.25
          C6  S6 compute CDN cap 10    60/mo  telemetry 1 h: it 10, used 5 -> share 0.5
          AR6 S6 storage ARCH cap 10    0/mo  no telemetry
          C7  S7 compute EC2 cap 10   129/mo  (pre-launch cluster)
          K8  S8 network               60/mo  telemetry 1 h: it 5
usage per month: X1 EC2 us-east-1 20+10 vcpu-hours (+5 "gb": wrong unit), I1 EC2 us-east-1 10,
          X2 EC2 us-east-1 0; X1 EC2 eu-west-1 30, I1 EC2 eu-west-1 10; X1 EC2 ap-new-1 100;
          X2 S3 us-east-1 50 gb-month; X1 S3 eu-west-1 25 (no S3 rack there); X1 CDN edge-1 20;
          X2 ARCH edge-1 5; X2 DB us-east-1 7 db-hours. DB is non-foundational on EC2, owned by
          the internal account I1 (payer INT); X1, X2 are external (payer PAY1).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import assert_conforms, assert_frames_equal, frame
from pyspark.sql import DataFrame, SparkSession

from carbon_core import schemas
from carbon_core.allocation import (
    AllocationResult,
    allocate,
    assert_invariants,
    check_invariants,
    rack_embodied_monthly,
)
from carbon_core.config import MethodologySettings
from carbon_core.errors import InvariantError

DEC = dt.date(2024, 12, 1)
JAN = dt.date(2025, 1, 1)
MONTHS = (DEC, JAN)
METHODOLOGY = MethodologySettings(it_lifetime_months=10)
USE1, EUW1, EDGE, NEW, NET = "us-east-1", "eu-west-1", "edge-1", "ap-new-1", "net-only"


def hour(month: dt.date, h: int) -> dt.datetime:
    return dt.datetime(month.year, month.month, 1, h)


SITE_VALUES = {  # site -> (cluster, energy_kwh, water_l)
    "S1": (USE1, 1000.0, 400.0),
    "S2": (USE1, 200.0, 0.0),
    "S3": (USE1, 100.0, 100.0),
    "S4": (EUW1, 500.0, 0.0),
    "S5": (EUW1, 200.0, 1000.0),
    "S6": (EDGE, 0.0, 0.0),
    "S9": (EDGE, 0.0, 50.0),
    "S7": (NEW, 315.0, 600.0),
    "S8": (NET, 50.0, 0.0),
}


def world(spark: SparkSession) -> dict[str, Any]:
    d = dt.date
    clusters = frame(
        spark,
        schemas.CLUSTERS.schema,
        [
            {"cluster_id": USE1, "kind": "region", "launch_date": d(2020, 1, 1),
             "name": "US East (N. Virginia)"},
            {"cluster_id": EUW1, "kind": "region", "launch_date": d(2020, 1, 1)},
            {"cluster_id": EDGE, "kind": "edge", "launch_date": d(2020, 1, 1), "name": "Edge One"},
            {"cluster_id": NEW, "kind": "region", "launch_date": d(2025, 2, 1), "name": "New"},
            {"cluster_id": NET, "kind": "region", "launch_date": d(2024, 12, 15), "name": "Net"},
        ],
    )  # fmt: skip
    sites = frame(
        spark,
        schemas.SITES.schema,
        [{"site_id": s, "cluster_id": c} for s, (c, _, _) in SITE_VALUES.items()],
    )
    site_monthly = frame(
        spark,
        schemas.SITE_MONTHLY,
        [
            {
                "month": m, "site_id": s, "cluster_id": c, "energy_kwh": e,
                "scope1_kg": 0.1 * e, "scope2_lbm_kg": 0.5 * e, "scope2_mbm_kg": 0.25 * e,
                "scope3_kg": 0.0, "water_l": w,
            }
            for m in MONTHS
            for s, (c, e, w) in SITE_VALUES.items()
        ],
    )  # fmt: skip
    june = d(2024, 6, 1)

    def rack(
        rid: str,
        site: str,
        kind: str,
        product: str | None,
        cap: float | None,
        embodied: float,
        start: dt.date = june,
        retired: dt.date | None = None,
    ) -> dict:
        return {"rack_id": rid, "site_id": site, "rack_type": kind, "product_code": product,
                "capacity": cap, "embodied_kgco2e": embodied, "in_service_date": start,
                "retired_date": retired}  # fmt: skip

    racks = frame(
        spark,
        schemas.RACKS.schema,
        [
            rack("C1", "S1", "compute", "EC2", 10.0, 1200.0),
            rack("K1", "S1", "network", None, None, 600.0),
            rack("ST1", "S1", "storage", "S3", 100.0, 2400.0),
            rack("C2", "S2", "compute", "EC2", 30.0, 1200.0),
            rack("C3", "S2", "compute", "EC2", 10.0, 600.0, start=d(2024, 3, 10)),
            rack("K2", "S2", "network", None, 0.0, 300.0),
            rack("OLD", "S3", "compute", "EC2", 10.0, 1200.0, retired=d(2024, 12, 1)),
            rack("C4", "S4", "compute", "EC2", 10.0, 1200.0),
            rack("G4", "S4", "compute", "GPU", 4.0, 480.0),
            rack("C6", "S6", "compute", "CDN", 10.0, 600.0),
            rack("AR6", "S6", "storage", "ARCH", 10.0, 0.0),
            rack("C7", "S7", "compute", "EC2", 10.0, 1290.0),
            rack("K8", "S8", "network", None, None, 600.0),
        ],
    )
    per_month = [  # (rack, hour, it_energy_kwh, used_capacity)
        ("C1", 0, 30.0, 5.0), ("C1", 1, 30.0, 5.0),
        ("K1", 0, 10.0, None), ("K1", 1, 10.0, None),
        ("ST1", 0, 10.0, 100.0), ("ST1", 1, 10.0, 100.0),
        ("C2", 0, 0.0, 15.0), ("C2", 1, 0.0, 15.0),
        ("C4", 0, 40.0, 10.0), ("G4", 0, 10.0, 1.0), ("C6", 0, 10.0, 5.0),
        ("C7", 0, 10.0, 10.0), ("K8", 0, 5.0, None),
    ]  # fmt: skip
    telemetry_rows = [
        {"rack_id": r, "hour": hour(m, h), "it_energy_kwh": it, "used_capacity": used}
        for m in MONTHS
        for r, h, it, used in per_month
    ]
    telemetry_rows += [
        # November (not a run month) and a retired rack: both must weigh nothing.
        {"rack_id": "C1", "hour": dt.datetime(2024, 11, 30, 23), "it_energy_kwh": 1000.0,
         "used_capacity": 10.0},
        {"rack_id": "OLD", "hour": hour(DEC, 0), "it_energy_kwh": 7.0, "used_capacity": 7.0},
    ]  # fmt: skip
    telemetry = frame(spark, schemas.RACK_TELEMETRY.schema, telemetry_rows)
    accounts = frame(
        spark,
        schemas.ACCOUNTS.schema,
        [
            {"account_id": "PAY1", "payer_account_id": "PAY1", "is_internal": False},
            {"account_id": "X1", "payer_account_id": "PAY1", "is_internal": False},
            {"account_id": "X2", "payer_account_id": "PAY1", "is_internal": False},
            {"account_id": "INT", "payer_account_id": "INT", "is_internal": True},
            {"account_id": "I1", "payer_account_id": "INT", "is_internal": True},
        ],
    )
    catalog = frame(
        spark,
        schemas.SERVICE_CATALOG.schema,
        [
            {"product_code": "EC2", "kind": "foundational", "allocation_unit": "vcpu-hours"},
            {"product_code": "S3", "kind": "foundational", "allocation_unit": "gb-month"},
            {"product_code": "CDN", "kind": "foundational", "allocation_unit": "gb"},
            {"product_code": "GPU", "kind": "foundational", "allocation_unit": "gpu-hours"},
            {"product_code": "ARCH", "kind": "foundational", "allocation_unit": "gb"},
            {"product_code": "DB", "kind": "non_foundational", "allocation_unit": "db-hours",
             "runs_on": "EC2", "owner_account_id": "I1"},
        ],
    )  # fmt: skip
    per_month_usage = [  # (hour, payer, account, product, cluster, unit, amount)
        (0, "PAY1", "X1", "EC2", USE1, "vcpu-hours", 20.0),
        (1, "PAY1", "X1", "EC2", USE1, "vcpu-hours", 10.0),
        (0, "PAY1", "X1", "EC2", USE1, "gb", 5.0),
        (0, "INT", "I1", "EC2", USE1, "vcpu-hours", 10.0),
        (0, "PAY1", "X2", "EC2", USE1, "vcpu-hours", 0.0),
        (0, "PAY1", "X1", "EC2", EUW1, "vcpu-hours", 30.0),
        (0, "INT", "I1", "EC2", EUW1, "vcpu-hours", 10.0),
        (0, "PAY1", "X1", "EC2", NEW, "vcpu-hours", 100.0),
        (0, "PAY1", "X2", "S3", USE1, "gb-month", 50.0),
        (0, "PAY1", "X1", "S3", EUW1, "gb-month", 25.0),
        (0, "PAY1", "X1", "CDN", EDGE, "gb", 20.0),
        (0, "PAY1", "X2", "ARCH", EDGE, "gb", 5.0),
        (0, "PAY1", "X2", "DB", USE1, "db-hours", 7.0),
    ]
    usage_rows = [
        {"usage_start": hour(m, h), "payer_account_id": p, "usage_account_id": a,
         "product_code": prod, "region_code": c, "usage_unit": u, "usage_amount": amt}
        for m in MONTHS
        for h, p, a, prod, c, u, amt in per_month_usage
    ]  # fmt: skip
    usage_rows.append(  # February: outside the run
        {"usage_start": hour(dt.date(2025, 2, 1), 0), "payer_account_id": "PAY1",
         "usage_account_id": "X2", "product_code": "S3", "region_code": USE1,
         "usage_unit": "gb-month", "usage_amount": 1000.0}
    )  # fmt: skip
    usage = frame(spark, schemas.USAGE.schema, usage_rows)
    return {
        "site_monthly": site_monthly,
        "clusters": clusters,
        "sites": sites,
        "racks": racks,
        "rack_telemetry": telemetry,
        "accounts": accounts,
        "service_catalog": catalog,
        "usage": usage,
    }


@pytest.fixture(scope="module")
def inputs(spark: SparkSession) -> dict[str, Any]:
    return world(spark)


@pytest.fixture(scope="module")
def result(inputs: dict[str, Any]) -> Iterator[AllocationResult]:
    out = allocate(**inputs, months=list(MONTHS), methodology=METHODOLOGY)
    cached = AllocationResult(
        account_emissions=out.account_emissions.cache(),
        unallocated=out.unallocated.cache(),
        rack_utilisation=out.rack_utilisation.cache(),
    )
    yield cached
    for df in (cached.account_emissions, cached.unallocated, cached.rack_utilisation):
        df.unpersist()


def vector(energy: float, scope3: float, water: float) -> dict[str, float]:
    """The world's quantity vector: scope1/lbm/mbm are 0.1/0.5/0.25 of energy everywhere."""
    s1, lbm, mbm = 0.1 * energy, 0.5 * energy, 0.25 * energy
    return {
        "energy_kwh": energy,
        "scope1_kg": s1,
        "scope2_lbm_kg": lbm,
        "scope2_mbm_kg": mbm,
        "scope3_kg": scope3,
        "water_l": water,
        "total_lbm_kg": s1 + lbm + scope3,
        "total_mbm_kg": s1 + mbm + scope3,
    }


def as_dicts(df: DataFrame, keys: tuple[str, ...]) -> dict[tuple, dict[str, Any]]:
    rows = [r.asDict() for r in df.collect()]
    out = {tuple(r[k] for k in keys): r for r in rows}
    assert len(out) == len(rows), "duplicate keys"
    return out


VERSION = {DEC: "v1.0", JAN: "v2.0"}
LOCATION = {USE1: "US East (N. Virginia)", EUW1: EUW1, EDGE: "Global"}  # EUW1 has no name
# Every column of every row compared: |got - expected| <= 1e-9 x |expected| (the hand
# numbers are exact in binary or nearly so; no absolute slack, so a zero must be zero).
TOLERANCE = {"rtol": 1e-9, "atol": 0.0}


def emission(
    month: dt.date, payer: str, account: str, region: str, product: str, *vector_args: float
) -> dict[str, Any]:
    """A full gold/account_emissions row; INT is the internal payer."""
    return {
        "month": month, "model_version": VERSION[month], "payer_account_id": payer,
        "usage_account_id": account, "is_internal": payer == "INT", "region_code": region,
        "location": LOCATION[region], "product_code": product, **vector(*vector_args),
    }  # fmt: skip


def unallocated(month: dt.date, cluster: str, reason: str, *vector_args: float) -> dict[str, Any]:
    """A full gold/unallocated row (the quantities, without the totals)."""
    quantities = {q: v for q, v in vector(*vector_args).items() if q in schemas.QUANTITIES}
    return {"month": month, "model_version": VERSION[month], "cluster_id": cluster,
            "reason": reason, **quantities}  # fmt: skip


def test_schemas_exact(result: AllocationResult) -> None:
    assert_conforms(result.account_emissions.schema, schemas.ACCOUNT_EMISSIONS)
    assert_conforms(result.unallocated.schema, schemas.UNALLOCATED)
    assert_conforms(result.rack_utilisation.schema, schemas.RACK_UTILISATION)


def test_december_v1_account_emissions(spark: SparkSession, result: AllocationResult) -> None:
    """v1.0: only used capacity reaches accounts; DB stays with its owner.

    Step A, S1 (IT 60/20/20 of 100): C1 E 600 W 240, K1 E 200 W 80, ST1 E 200 W 80.
    S2 drew no energy -> capacity 30:10 (K2 weighs 0): C2 E 150, C3 E 50.
    S4 (IT 40:10): C4 E 400, G4 E 100. S6 has E 0: C6 only its embodied 60.
    Step C (used share): C1 0.5 -> E 300 W 120 s3 60; C2 0.5 -> E 75 s3 60; C3 0 -> 0;
    ST1 1 -> E 200 W 80 s3 240; C4 1 -> E 400 s3 120; C6 0.5 -> s3 30.
    Pool (us-east-1, EC2) = E 375, W 120, s3 120; X1 30 / I1 10 vcpu-hours (the "gb" row
    and X2's 0 weigh nothing): X1 0.75 -> E 281.25 W 90 s3 90; I1 0.25 -> E 93.75 W 30 s3 30.
    (eu-west-1, EC2) = E 400 s3 120: X1 0.75 -> E 300 s3 90; I1 0.25 -> E 100 s3 30.
    v1.0 step E: I1's EC2 rows stay with I1 as DB. ARCH's pool is 0: its row is not written.
    """
    expected = [
        emission(DEC, "PAY1", "X1", USE1, "EC2", 281.25, 90.0, 90.0),
        emission(DEC, "INT", "I1", USE1, "DB", 93.75, 30.0, 30.0),
        emission(DEC, "PAY1", "X2", USE1, "S3", 200.0, 240.0, 80.0),
        emission(DEC, "PAY1", "X1", EUW1, "EC2", 300.0, 90.0, 0.0),
        emission(DEC, "INT", "I1", EUW1, "DB", 100.0, 30.0, 0.0),
        emission(DEC, "PAY1", "X1", EDGE, "CDN", 0.0, 30.0, 0.0),
    ]
    assert_frames_equal(
        result.account_emissions.where(f"month = '{DEC}'"),
        frame(spark, schemas.ACCOUNT_EMISSIONS, expected),
        **TOLERANCE,
    )


def test_december_v1_unallocated(spark: SparkSession, result: AllocationResult) -> None:
    """v1.0 reasons.

    network_overhead: us-east-1 K1 (E 200 W 80 s3 60) + K2 (s3 30); net-only K8 E 50 s3 60.
    unused_capacity: us-east-1 C1 (E 300 W 120 s3 60) + C2 (E 75 s3 60) + C3 (E 50 s3 60)
      = E 425 W 120 s3 180; eu-west-1 G4 0.75 of (E 100, s3 48) = E 75 s3 36;
      edge-1 C6 0.5 of s3 60 = s3 30.
    no_consumers: us-east-1 S3 (no rack in service: OLD retired on the 1st) E 100 W 100;
      eu-west-1 S5 (no rack) E 200 W 1000 + GPU (no usage) 0.25 x (E 100, s3 48)
      = E 225 W 1000 s3 12; edge-1 S9 W 50.
    region_expansion: ap-new-1 S7 E 315 W 600 + C7 embodied 129.
    """
    expected = [
        unallocated(DEC, USE1, "network_overhead", 200.0, 90.0, 80.0),
        unallocated(DEC, NET, "network_overhead", 50.0, 60.0, 0.0),
        unallocated(DEC, USE1, "unused_capacity", 425.0, 180.0, 120.0),
        unallocated(DEC, EUW1, "unused_capacity", 75.0, 36.0, 0.0),
        unallocated(DEC, EDGE, "unused_capacity", 0.0, 30.0, 0.0),
        unallocated(DEC, USE1, "no_consumers", 100.0, 0.0, 100.0),
        unallocated(DEC, EUW1, "no_consumers", 225.0, 12.0, 1000.0),
        unallocated(DEC, EDGE, "no_consumers", 0.0, 0.0, 50.0),
        unallocated(DEC, NEW, "region_expansion", 315.0, 129.0, 600.0),
    ]
    assert_frames_equal(
        result.unallocated.where(f"month = '{DEC}'"),
        frame(spark, schemas.UNALLOCATED, expected),
        **TOLERANCE,
    )


def test_january_v2_account_emissions(spark: SparkSession, result: AllocationResult) -> None:
    """v2.0: network, unused capacity, DB pass-through, cluster pools (G), expansion (F).

    A as in December but C3's lifetime ended (s3 0). B (us-east-1): network E 200 W 80
    s3 60+30 = 90 to C1/ST1/C2/C3 by energy 600/200/150/50 of 1000:
      C1 E 720 W 288 s3 174; ST1 E 240 W 96 s3 258; C2 E 180 W 12 s3 133.5; C3 E 60 W 4 s3 4.5.
    C+D: (us-east-1, EC2) = C1+C2+C3 = E 960 W 304 s3 312 -> X1 0.75 (E 720 W 228 s3 234),
      I1 0.25 (E 240 W 76 s3 78); (us-east-1, S3) -> X2 E 240 W 96 s3 258;
      (eu-west-1, EC2) E 400 s3 120 -> X1 E 300 s3 90, I1 E 100 s3 30; GPU -> pool;
      (edge-1, CDN) -> X1 s3 60.
    E: I1's us-east-1 EC2 row -> X2 (only DB customer) as DB; eu-west-1: no DB customer -> I1 DB.
    G us-east-1, pool S3 E 100 W 100: energy 720/240/240 of 1200 -> +60/+20/+20;
      water 228/76/96 of 400 -> +57/+19/+24.
    G eu-west-1, pool S5 + GPU = E 300 W 1000 s3 48: energy 300/100 of 400 -> +225/+75;
      water: rows have none -> by energy 0.75/0.25 -> 750/250; s3 90/30 of 120 -> +36/+12.
    G edge-1: pool W 50, rows have no water and no energy -> no_basis. net-only: no row -> F.
    F pool = ap-new-1 (E 315 W 600 s3 129) + net-only (E 50 s3 60) = E 365 W 600 s3 189,
      to external rows only (I1 excluded): energy 780+260+260+525+0 = 1825 -> x0.2;
      water 285+95+120+750+0 = 1250 -> x0.48; s3 234+78+258+126+60 = 756 -> x0.25.
    """
    expected = [
        # E 780*1.2; W 285*1.48; s3 234*1.25
        emission(JAN, "PAY1", "X1", USE1, "EC2", 936.0, 292.5, 421.8),
        # E 260*1.2; W 95*1.48; s3 78*1.25
        emission(JAN, "PAY1", "X2", USE1, "DB", 312.0, 97.5, 140.6),
        # E 260*1.2; W 120*1.48; s3 258*1.25
        emission(JAN, "PAY1", "X2", USE1, "S3", 312.0, 322.5, 177.6),
        # E 525*1.2; W 750*1.48; s3 126*1.25
        emission(JAN, "PAY1", "X1", EUW1, "EC2", 630.0, 157.5, 1110.0),
        # internal: G only (E 100+75, s3 30+12, W 250)
        emission(JAN, "INT", "I1", EUW1, "DB", 175.0, 42.0, 250.0),
        # s3 60*1.25
        emission(JAN, "PAY1", "X1", EDGE, "CDN", 0.0, 75.0, 0.0),
    ]
    assert_frames_equal(
        result.account_emissions.where(f"month = '{JAN}'"),
        frame(spark, schemas.ACCOUNT_EMISSIONS, expected),
        **TOLERANCE,
    )


def test_january_v2_unallocated(spark: SparkSession, result: AllocationResult) -> None:
    """v2.0 allocates everything except edge-1's water pool, which has no basis (W 50)."""
    assert_frames_equal(
        result.unallocated.where(f"month = '{JAN}'"),
        frame(spark, schemas.UNALLOCATED, [unallocated(JAN, EDGE, "no_basis", 0.0, 0.0, 50.0)]),
        **TOLERANCE,
    )


def test_rack_utilisation(result: AllocationResult) -> None:
    """Non-network racks of live clusters, quantities after A (Dec) and A+B (Jan)."""
    rows = as_dicts(result.rack_utilisation, ("month", "rack_id"))
    racks = {"C1", "ST1", "C2", "C3", "C4", "G4", "C6", "AR6"}
    assert set(rows) == {(m, r) for m in MONTHS for r in racks}
    c1_dec, c1_jan, c3_dec = rows[DEC, "C1"], rows[JAN, "C1"], rows[DEC, "C3"]
    assert (c1_dec["used_share"], c1_dec["telemetry_hours"]) == (0.5, 2)
    assert (c3_dec["used_share"], c3_dec["telemetry_hours"]) == (0.0, 0)
    assert rows[DEC, "G4"]["used_share"] == pytest.approx(0.25, rel=1e-9)
    assert (c1_dec["energy_kwh"], c1_dec["water_l"], c1_dec["scope3_kg"]) == pytest.approx(
        (600.0, 240.0, 120.0), rel=1e-9
    )
    assert (c1_jan["energy_kwh"], c1_jan["water_l"], c1_jan["scope3_kg"]) == pytest.approx(
        (720.0, 288.0, 174.0), rel=1e-9
    )
    assert c1_jan["cluster_id"] == USE1 and c1_jan["product_code"] == "EC2"


def test_invariants_hold(inputs: dict[str, Any], result: AllocationResult) -> None:
    """Conservation per month x quantity (Dec E 2365 W 2150 s3 1047; Jan s3 987)."""
    embodied = rack_embodied_monthly(inputs["racks"], list(MONTHS), it_lifetime_months=10)
    checks = check_invariants(
        site_monthly=inputs["site_monthly"],
        rack_embodied=embodied,
        account_emissions=result.account_emissions,
        unallocated=result.unallocated,
        accounts=inputs["accounts"],
    )
    assert_invariants(checks)
    conservation = {(c.month, c.quantity): c for c in checks if c.check == "conservation"}
    assert len(conservation) == 12
    assert conservation[DEC, "energy_kwh"].expected == pytest.approx(2365.0, rel=1e-12)
    assert conservation[DEC, "water_l"].expected == pytest.approx(2150.0, rel=1e-12)
    # embodied 120+60+240+120+60+30+120+48+60+0+129+60; January without C3's 60
    assert conservation[DEC, "scope3_kg"].expected == pytest.approx(1047.0, rel=1e-12)
    assert conservation[JAN, "scope3_kg"].expected == pytest.approx(987.0, rel=1e-12)
    assert {c.check for c in checks} == {"conservation", "non_negative", "known_accounts"}
    assert all(c.ok for c in checks)


def test_invariants_catch_broken_results(inputs: dict[str, Any], result: AllocationResult) -> None:
    """A lost row, a negative quantity and an unknown account all fail."""
    spark = result.account_emissions.sparkSession
    embodied = rack_embodied_monthly(inputs["racks"], list(MONTHS), it_lifetime_months=10)
    broken_rows = [
        {**r.asDict(), "usage_account_id": "GHOST", "energy_kwh": -r["energy_kwh"]}
        if r["usage_account_id"] == "X2" and r["product_code"] == "S3" and r["month"] == JAN
        else r.asDict()
        for r in result.account_emissions.collect()
    ]
    broken = frame(spark, schemas.ACCOUNT_EMISSIONS, broken_rows)
    checks = check_invariants(
        site_monthly=inputs["site_monthly"],
        rack_embodied=embodied,
        account_emissions=broken,
        unallocated=result.unallocated,
        accounts=inputs["accounts"],
    )
    failed = {(c.month, c.check, c.quantity) for c in checks if not c.ok}
    assert failed == {
        (JAN, "conservation", "energy_kwh"),  # 2365 - 2 * 312
        (JAN, "non_negative", "energy_kwh"),
        (JAN, "known_accounts", None),
    }
    energy = next(c for c in checks if (c.month, c.check, c.quantity) == failed_key(JAN))
    assert energy.actual == pytest.approx(2365.0 - 624.0, rel=1e-9)
    with pytest.raises(InvariantError, match=r"2025-01 energy_kwh.*difference -624"):
        assert_invariants(checks)


def failed_key(month: dt.date) -> tuple[dt.date, str, str]:
    return (month, "conservation", "energy_kwh")
