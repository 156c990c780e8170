"""Ingestion: landing CSV/Parquet -> bronze + quarantine, one rule at a time.

One hand-built landing zone is ingested once per module (each Delta write costs
about a second); every rule has a row that breaks it, and each test reads the
tables that ingest wrote.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from carbon_core import schemas
from carbon_core.config import IngestSettings
from carbon_core.errors import InputError, InvariantError
from carbon_core.ingest import INGEST_ORDER, IngestReport, ingest_landing, ledger, read_bronze
from carbon_core.ingest import bronze as bronze_module
from carbon_core.ingest.landing import SOURCE_FILE, read_landing
from carbon_core.ingest.rules import (
    KEY_CANDIDATE,
    MALFORMED_TAGS,
    PARENTS,
    check_rows,
    parse_boolean,
    parse_date,
    parse_double,
    parse_timestamp,
    repeated_key_hashes,
    resolve_keys,
    validate,
)
from carbon_core.lake import read_table, table_properties, table_version, write_table
from carbon_core.reference import ReferenceTables

UTC = dt.timezone.utc


def _header(dataset: schemas.Dataset, without: str = "") -> str:
    """A CSV header line with the dataset's columns (all but `without`)."""
    return ",".join(c for c in dataset.columns if c != without)


# One file per dataset unless the name says otherwise; `note` columns are extra
# columns (kept only inside `raw`) that label rows without an id.
LANDING: dict[str, str] = {
    "clusters/a.csv": """cluster_id,kind,launch_date,name
c1,region,2020-01-01,Region One
c2,edge,2021-06-01,"Edge, ""Two""\"
c3,galaxy,2020-01-01,Bad kind
c4,region,2020-13-01,Bad date
c5,region
""",
    # different column order, an extra column, in a sub-folder; sorts after a.csv
    "clusters/sub/b.csv": """name,cluster_id,kind,launch_date,extra_col
Dup,c1,edge,2019-01-01,x
No id,,region,2020-01-01,y
""",
    "sites/a.csv": _header(schemas.SITES)
    + """
s1, c1 ,us,us-va,02134,38.9,-77.4,1.2,1000000,2020-01-01
s2,c2,au,AU-NSW,2000,-33.9,151.2,,,
s3,c9,US,US-VA,20001,38,-77,1.2,0,
s4,c1,US,US-VA,20001,95,-77,1.2,0,
s5,c1,US,US-VA,20001,38,-190,1.2,0,
s6,c1,US,US-VA,20001,38,-77,0.9,0,
s7,c1,US,US-VA,20001,38,-77,1.2,-5,
s8,c1,US,CA-QC,20001,38,-77,1.2,0,
s9,c3,US,,,,,,,
s10,c1,DE,,,abc,,,,
s11,c9,US,,,95,,,,
""",
    "accounts/a.csv": """account_id,payer_account_id,is_internal,name
p1,p1,false,Payer One
u1,p1,TRUE,User One
u2,p1,False,User Two
p2,p2,false,Payer Two
u3,p9,false,Orphan
u4,u1,false,Payer not a payer
u5,p1,yes,Bad boolean
u6,p1,,No boolean
""",
    "service_catalog/a.csv": """product_code,kind,allocation_unit,runs_on,owner_account_id
EC2,foundational,vCPU-hours,,
S3,foundational,GB-months,,
RDS,non_foundational,vCPU-hours,EC2,u1
LAMBDA,non_foundational,requests,,u1
SQS,non_foundational,requests,EC2,
GLUE,non_foundational,DPU-hours,EC2,zz
ATHENA,non_foundational,queries,NOPE,u1
EMR,non_foundational,hours,GLUE,u1
XX,weird,units,,
""",
    "racks/a.csv": _header(schemas.RACKS)
    + """
r1,s1,compute,EC2,100,vCPU,5000,2023-01-01,
r2,s1,storage,S3,500,TB,3000,2023-01-01,2030-01-01
r3,s1,network,,0,,1000,2023-01-01,
r4,s9,compute,EC2,100,vCPU,5000,2023-01-01,
r5,s1,switch,EC2,100,vCPU,5000,2023-01-01,
r6,s1,compute,,100,vCPU,5000,2023-01-01,
r7,s1,compute,RDS,100,vCPU,5000,2023-01-01,
r8,s1,compute,NOPE,100,vCPU,5000,2023-01-01,
r9,s1,compute,EC2,,vCPU,5000,2023-01-01,
r10,s1,storage,S3,0,TB,5000,2023-01-01,
r11,s1,network,,10,,1000,2023-01-01,
r12,s1,compute,EC2,100,vCPU,-1,2023-01-01,
r13,s1,compute,EC2,100,vCPU,5000,2023-01-01,2022-12-31
r14,s1,compute,EC2,100,vCPU,,2023-01-01,
""",
    "rack_telemetry/a.csv": """rack_id,hour,it_energy_kwh,used_capacity,note
r1,2025-01-01T00:00:00Z,10.5,50,ok1
r1,2025-01-01T01:00:00Z,11,100,ok_full
r3,2025-01-01T00:00:00Z,2,,ok_network
r2,2025-01-01 00:00,5,250,ok_no_zone
r1,2025-01-01T09:00:00+02:00,1,1,ok_offset
r4,2025-01-01T00:00:00Z,1,1,unknown_rack
r1,2025-01-01T02:30:00Z,1,1,half_hour
r1,2025-01-01T03:00:00Z,-1,1,negative_energy
r1,2025-01-01T04:00:00Z,1,,missing_used
r1,2025-01-01T05:00:00Z,1,101,over_capacity
r1,2025-01-01T06:00:00Z,1,-1,negative_used
r3,2025-01-01T01:00:00Z,1,0,network_used
r1,2025-01-01T08:00:00Z,1,x,bad_double
r1,2025-01-01T10:00,1,1,bad_hour_format,oops
""",
    # same instant as ok1 written differently: a duplicate (rack_id, hour)
    "rack_telemetry/b.csv": """rack_id,hour,it_energy_kwh,used_capacity,note
r1,2025-01-01T00:00:00+00:00,99,1,duplicate
""",
    "usage/b.csv": _header(schemas.USAGE, without="cost_usd")
    + """
2025-01-01,p2,p2,S3,c2,csv_ok,GB-months,3
2025-01-01T02:00:00Z,p1,u1,EC2,c1,csv_missing_amount,vCPU-hours,
""",
    # tags: k=v pairs separated by ';' (a trailing ';' is fine, '=' may appear in a value)
    "business_units/a.csv": """account_id,business_unit,cost_center,tags,note
u1,Retail,RC-1,env=prod;owner=team-a,ok_tags
u2,Retail,,,ok_bare
p2,Media,MC-1,env=prod;,ok_trailing
p1,Finance,FC-1,cost=a=b,ok_value_with_equals
u3,Retail,RC-1,,quarantined_account
u9,Retail,RC-1,,unknown_account
p1,,RC-1,,missing_business_unit
p1,Finance,FC-1,env,no_equals
p1,Finance,FC-1,=prod,empty_key
p1,Finance,FC-1,a=1; =x,blank_key
,Retail,RC-1,,missing_account_id
""",
    "business_units/b.csv": """account_id,business_unit,cost_center,tags,note
u1,Media,MC-1,env=dev,duplicate
""",
    "electricity_prices/a.csv": """country_code,subdivision_code,year,price_per_kwh,currency,note
us,us-va,2024,0.10,USD,ok_subdivision
US,,2024,0.12,USD,ok_country
US,,2024,0.13,USD,duplicate
DE,,2024,-0.3,EUR,negative
DE,,2024.5,0.3,EUR,bad_year
""",
    "utility_invoices/a.csv": _header(schemas.UTILITY_INVOICES)
    + """
i1,s1,2025-01-01,2025-02-01,1000,,
i2,s1,2025-01-01,2025-02-01,,500,USD
i3,s3,2025-01-01,2025-02-01,1000,,
i4,s1,2025-02-01,2025-02-01,1000,,
i5,s1,2025-01-01,2025-02-01,,500,
i6,s1,2025-01-01,2025-02-01,-5,,
i7,s1,2025-01-01,2025-02-01,,-5,USD
i1,s2,2025-01-01,2025-02-01,1,,
""",
    "fuel_records/a.csv": """record_id,site_id,period_start,period_end,source_type,quantity,unit
f1,s1,2025-01-01,2026-01-01,natural_gas,100,therm
f2,s1,2025-01-01,2026-01-01,natural_gas,100,litre
f3,s1,2025-01-01,2026-01-01,natural_gas,-1,therm
f4,s7,2025-01-01,2026-01-01,natural_gas,1,therm
f5,s1,2025-01-01,2024-01-01,natural_gas,1,therm
f6,s1,2025-01-01,2026-01-01,,1,therm
""",
    "energy_contracts/a.csv": _header(schemas.ENERGY_CONTRACTS)
    + """
k1,ppa,s1,US-VA,2025-01-01,2026-01-01,1000,0
k2,rec,,US-VA,2025-01-01,2026-01-01,1000,0
k3,coal,s1,,2025-01-01,2026-01-01,1000,0
k4,ppa,,,2025-01-01,2026-01-01,1000,0
k5,ppa,s5,,2025-01-01,2026-01-01,1000,0
k6,ppa,s1,,2025-01-01,2025-01-01,1000,0
k7,ppa,s1,,2025-01-01,2026-01-01,-1,0
k8,ppa,s1,,2025-01-01,2026-01-01,1,-0.1
""",
    "site_water/a.csv": """site_id,period_start,period_end,withdrawal_l,note
s1,2025-01-01,2025-02-01,1000,ok1
s1,2025-01-01,2025-02-01,1000,ok2
s2,2025-02-01,2025-01-01,5,backwards
s1,2025-01-01,2025-02-01,-5,negative
s4,2025-01-01,2025-02-01,5,unknown_site
""",
}

# usage as Parquet with native types (timestamp, double): written by Spark into a
# sub-folder, so the folder also holds _SUCCESS and .crc files that must be skipped.
USAGE_PARQUET_SCHEMA = T.StructType(
    [
        T.StructField("usage_start", T.TimestampType()),
        T.StructField("payer_account_id", T.StringType()),
        T.StructField("usage_account_id", T.StringType()),
        T.StructField("product_code", T.StringType()),
        T.StructField("region_code", T.StringType()),
        T.StructField("usage_type", T.StringType()),
        T.StructField("usage_unit", T.StringType()),
        T.StructField("usage_amount", T.DoubleType()),
        T.StructField("cost_usd", T.DoubleType()),
    ]
)
H0 = dt.datetime(2025, 1, 1, 0, tzinfo=UTC)
H1 = dt.datetime(2025, 1, 1, 1, tzinfo=UTC)
HALF = dt.datetime(2025, 1, 1, 0, 30, tzinfo=UTC)
USAGE_PARQUET_ROWS = [
    (H0, "p1", "u1", "EC2", "c1", "ok1", "vCPU-hours", 10.0, 1.0),
    (H1, "p1", "u2", "EC2", "c1", "ok_other_unit", "GB", 5.0, 0.5),
    (H0, "p1", "u1", "EC2", "c1", "ok1", "vCPU-hours", 10.0, 1.0),  # usage has no key: kept
    (HALF, "p1", "u1", "EC2", "c1", "half_hour", "vCPU-hours", 1.0, None),
    (H0, "p9", "u1", "EC2", "c1", "unknown_payer", "vCPU-hours", 1.0, None),
    (H0, "p1", "u9", "EC2", "c1", "unknown_account", "vCPU-hours", 1.0, None),
    (H0, "p2", "u1", "EC2", "c1", "wrong_payer", "vCPU-hours", 1.0, None),
    (H0, "p1", "u1", "NOPE", "c1", "unknown_product", "vCPU-hours", 1.0, None),
    (H0, "p1", "u1", "EC2", "c3", "unknown_region", "vCPU-hours", 1.0, None),
    (H0, "p1", "u1", "EC2", "c1", "negative", "vCPU-hours", -1.0, None),
]

# dataset -> (landing rows, bronze rows, quarantined rows), counted from the files above
EXPECTED_COUNTS = {
    "clusters": (7, 2, 5),
    "sites": (11, 2, 9),
    "accounts": (8, 4, 4),
    "service_catalog": (9, 3, 6),
    "racks": (14, 3, 11),
    "rack_telemetry": (15, 5, 10),
    "usage": (12, 4, 8),
    "business_units": (12, 4, 8),
    "electricity_prices": (5, 2, 3),
    "utility_invoices": (8, 2, 6),
    "fuel_records": (6, 1, 5),
    "energy_contracts": (8, 2, 6),
    "site_water": (5, 2, 3),
}

# dataset -> (label of a quarantined row from its raw values, {label: reason})
Label = Callable[[dict[str, str]], str | None]
EXPECTED_QUARANTINE: dict[str, tuple[Label, dict[str | None, str]]] = {
    "clusters": (
        lambda raw: raw.get("name", raw.get("_line")),
        {
            "Bad kind": "kind not in (region, edge)",
            "Bad date": "invalid date in launch_date",
            "c5,region": "malformed CSV line",
            "Dup": "duplicate key",
            "No id": "missing cluster_id",
        },
    ),
    "sites": (
        lambda raw: raw["site_id"],
        {
            "s3": "unknown cluster_id",
            "s4": "latitude out of range [-90, 90]",
            "s5": "longitude out of range [-180, 180]",
            "s6": "design_pue below 1",
            "s7": "negative building_embodied_kgco2e",
            "s8": "subdivision_code does not match country_code",
            "s9": "unknown cluster_id",  # c3 exists in landing but was quarantined
            "s10": "invalid double in latitude",
            "s11": "unknown cluster_id; latitude out of range [-90, 90]",
        },
    ),
    "accounts": (
        lambda raw: raw["account_id"],
        {
            "u3": "unknown payer_account_id",
            "u4": "payer_account_id is not a payer account",
            "u5": "invalid boolean in is_internal",
            "u6": "missing is_internal",
        },
    ),
    "service_catalog": (
        lambda raw: raw["product_code"],
        {
            "LAMBDA": "missing runs_on",
            "SQS": "missing owner_account_id",
            "GLUE": "unknown owner_account_id",
            "ATHENA": "unknown runs_on",
            "EMR": "unknown runs_on",  # GLUE is quarantined
            "XX": "kind not in (foundational, non_foundational)",
        },
    ),
    "racks": (
        lambda raw: raw["rack_id"],
        {
            "r4": "unknown site_id",
            "r5": "rack_type not in (compute, storage, network)",
            "r6": "missing product_code",
            "r7": "product_code is not a foundational product",
            "r8": "unknown product_code",
            "r9": "missing capacity",
            "r10": "capacity not > 0",
            "r11": "network rack capacity not empty or 0",
            "r12": "negative embodied_kgco2e",
            "r13": "retired_date not after in_service_date",
            "r14": "missing embodied_kgco2e",
        },
    ),
    "rack_telemetry": (
        lambda raw: raw.get("note"),
        {
            "unknown_rack": "unknown rack_id",
            "half_hour": "hour not on the hour",
            "negative_energy": "negative it_energy_kwh",
            "missing_used": "missing used_capacity",
            "over_capacity": "used_capacity out of range [0, capacity]",
            "negative_used": "used_capacity out of range [0, capacity]",
            "network_used": "used_capacity given for a network rack",
            "bad_double": "invalid double in used_capacity",
            "bad_hour_format": "malformed CSV line",  # six fields under a five-column header
            "duplicate": "duplicate key",
        },
    ),
    "usage": (
        lambda raw: raw["usage_type"],
        {
            "half_hour": "usage_start not on the hour",
            "unknown_payer": "unknown payer_account_id; usage_account_id's payer is not "
            "payer_account_id",
            "unknown_account": "unknown usage_account_id",
            "wrong_payer": "usage_account_id's payer is not payer_account_id",
            "unknown_product": "unknown product_code",
            "unknown_region": "unknown region_code",
            "negative": "negative usage_amount",
            "csv_missing_amount": "missing usage_amount",
        },
    ),
    "business_units": (
        lambda raw: raw["note"],
        {
            "quarantined_account": "unknown account_id",
            "unknown_account": "unknown account_id",
            "missing_business_unit": "missing business_unit",
            "no_equals": MALFORMED_TAGS,
            "empty_key": MALFORMED_TAGS,
            "blank_key": MALFORMED_TAGS,
            "missing_account_id": "missing account_id",
            "duplicate": "duplicate key",  # b.csv sorts after a.csv: a.csv's u1 is kept
        },
    ),
    "electricity_prices": (
        lambda raw: raw["note"],
        {
            "duplicate": "duplicate key",
            "negative": "negative price_per_kwh",
            "bad_year": "invalid int in year",
        },
    ),
    "utility_invoices": (
        lambda raw: raw["invoice_id"],
        {
            "i3": "unknown site_id",
            "i4": "period_end not after period_start",
            "i5": "missing energy_kwh or amount with currency",
            "i6": "negative energy_kwh",
            "i7": "negative amount",
            "i1": "duplicate key",  # the s2 copy: {"invoice_id":"i1","site_id":"s2"} > "s1"
        },
    ),
    "fuel_records": (
        lambda raw: raw["record_id"],
        {
            "f2": "unknown fuel factor (source_type, unit)",
            "f3": "negative quantity",
            "f4": "unknown site_id",
            "f5": "period_end not after period_start",
            "f6": "missing source_type",
        },
    ),
    "energy_contracts": (
        lambda raw: raw["contract_id"],
        {
            "k3": "instrument not in (ppa, rec, go, green_tariff, supplier)",
            "k4": "missing site_id or market_boundary",
            "k5": "unknown site_id",
            "k6": "period_end not after period_start",
            "k7": "negative energy_kwh",
            "k8": "negative emission_factor_kg_per_kwh",
        },
    ),
    "site_water": (
        lambda raw: raw["note"],
        {
            "backwards": "period_end not after period_start",
            "negative": "negative withdrawal_l",
            "unknown_site": "unknown site_id",
        },
    ),
}


def _reference(spark: SparkSession) -> ReferenceTables:
    """Only fuel_factors matters to ingest; natural_gas exists in therm, not in litre."""
    fuel = spark.createDataFrame(
        [("natural_gas", "therm", 5.31145, "t"), ("diesel", "litre", 2.68, "t")],
        schemas.FUEL_FACTORS,
    )
    empty = {
        "grid_factors": spark.createDataFrame([], schemas.GRID_FACTORS),
        "residual_mix": spark.createDataFrame([], schemas.RESIDUAL_MIX),
        "zip_to_egrid": spark.createDataFrame([], schemas.ZIP_TO_EGRID),
    }
    return ReferenceTables(fuel_factors=fuel, files={}, **empty)


def _write_landing(spark: SparkSession, landing: Path) -> None:
    for relative, text in LANDING.items():
        file = landing / relative
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    usage = spark.createDataFrame(USAGE_PARQUET_ROWS, USAGE_PARQUET_SCHEMA)
    usage.coalesce(1).write.parquet(str(landing / "usage" / "batch1"))


@dataclass(frozen=True)
class Ingested:
    landing: Path
    lake: Path
    report: IngestReport
    logs: list[str]


@pytest.fixture(scope="module")
def ingested(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    root = tmp_path_factory.mktemp("ingest")
    landing, lake = root / "landing", root / "lake"
    _write_landing(spark, landing)
    logs: list[str] = []
    report = ingest_landing(spark, landing, lake, reference=_reference(spark), log=logs.append)
    return Ingested(landing, lake, report, logs)


def _quarantine(spark: SparkSession, lake: Path, name: str) -> DataFrame:
    return read_table(spark, lake / "quarantine" / name).where(F.col("stage") == "ingest")


def _utc(column: str) -> Column:
    return F.date_format(column, "yyyy-MM-dd HH:mm:ss").alias(column)


def test_ingest_order_has_parents_first_and_covers_every_dataset() -> None:
    assert sorted(INGEST_ORDER) == sorted(d.name for d in schemas.DATASETS)
    for position, name in enumerate(INGEST_ORDER):
        assert all(INGEST_ORDER.index(parent) < position for parent in PARENTS[name])


def test_counts_per_dataset_rows_in_equals_bronze_plus_quarantine(spark, ingested) -> None:
    for name, (rows_in, bronze, quarantined) in EXPECTED_COUNTS.items():
        report = ingested.report[name]
        assert (report.rows_in, report.bronze_rows, report.quarantined_rows) == (
            rows_in,
            bronze,
            quarantined,
        ), name
        assert rows_in == bronze + quarantined, name
        assert read_bronze(spark, ingested.lake, name).count() == bronze, name
        assert _quarantine(spark, ingested.lake, name).count() == quarantined, name
    # one line per dataset as it is done, wave by wave; the report in INGEST_ORDER
    waves = bronze_module.ingest_waves(INGEST_ORDER)
    assert [line.split(":")[0] for line in ingested.logs] == [
        f"ingest {n}" for wave in waves for n in wave
    ]
    assert [r.dataset for r in ingested.report.datasets] == list(INGEST_ORDER)
    assert re.fullmatch(
        r"ingest usage: 2 files, 12 in, 4 bronze, 8 quarantined, \d+\.\d s", ingested.logs[-1]
    )


@pytest.mark.parametrize("name", list(EXPECTED_QUARANTINE))
def test_every_broken_rule_is_quarantined_with_its_reason(spark, ingested, name) -> None:
    label, expected = EXPECTED_QUARANTINE[name]
    rows = _quarantine(spark, ingested.lake, name).collect()
    got = {label(json.loads(row["raw"])): row["reason"] for row in rows}
    assert got == expected
    assert all(row["_source_file"].startswith(str(ingested.landing / name)) for row in rows)


def test_raw_keeps_landing_text_extra_columns_and_malformed_line(spark, ingested) -> None:
    raws = [json.loads(r["raw"]) for r in _quarantine(spark, ingested.lake, "clusters").collect()]
    by_name = {raw.get("name"): raw for raw in raws}
    # the extra column of b.csv survives only inside raw
    assert by_name["Dup"] == {
        "name": "Dup",
        "cluster_id": "c1",
        "kind": "edge",
        "launch_date": "2019-01-01",
        "extra_col": "x",
    }
    assert by_name["Bad date"]["launch_date"] == "2020-13-01"
    assert by_name[None]["_line"] == "c5,region"
    assert "extra_col" not in read_bronze(spark, ingested.lake, "clusters").columns


def test_bronze_has_typed_values_and_lineage(spark, ingested) -> None:
    lake = ingested.lake
    for dataset in schemas.DATASETS:
        assert read_bronze(spark, lake, dataset.name).schema == schemas.bronze_schema(dataset)

    site = read_bronze(spark, lake, "sites").where("site_id = 's1'").first()
    # trimmed, codes upper-cased, postal code kept as text with its leading zero
    assert (site["cluster_id"], site["country_code"], site["subdivision_code"]) == (
        "c1",
        "US",
        "US-VA",
    )
    assert site["postal_code"] == "02134"
    assert site["latitude"] == pytest.approx(38.9, rel=1e-9)
    assert site["building_in_service_date"] == dt.date(2020, 1, 1)
    assert site["_source_file"] == str(ingested.landing / "sites" / "a.csv")

    accounts = read_bronze(spark, lake, "accounts").select("account_id", "is_internal").collect()
    assert dict(accounts) == {"p1": False, "u1": True, "u2": False, "p2": False}

    clusters = read_bronze(spark, lake, "clusters").select("cluster_id", "kind", "name").collect()
    assert sorted(map(tuple, clusters)) == [
        ("c1", "region", "Region One"),
        ("c2", "edge", 'Edge, "Two"'),  # RFC 4180 quoting
    ]

    usage = read_bronze(spark, lake, "usage").select("usage_type", _utc("usage_start")).collect()
    # Parquet timestamps (2025-01-01 00:00 and 01:00 UTC) and the CSV plain date (midnight)
    assert sorted(map(tuple, usage)) == [
        ("csv_ok", "2025-01-01 00:00:00"),
        ("ok1", "2025-01-01 00:00:00"),
        ("ok1", "2025-01-01 00:00:00"),
        ("ok_other_unit", "2025-01-01 01:00:00"),
    ]
    cost = read_bronze(spark, lake, "usage").where("usage_type = 'csv_ok'").first()["cost_usd"]
    assert cost is None  # column absent from that CSV file

    telemetry = read_bronze(spark, lake, "rack_telemetry").select("rack_id", _utc("hour"))
    # 09:00+02:00 is 07:00 UTC; "2025-01-01 00:00" without a zone is UTC
    assert sorted(map(tuple, telemetry.collect())) == [
        ("r1", "2025-01-01 00:00:00"),
        ("r1", "2025-01-01 01:00:00"),
        ("r1", "2025-01-01 07:00:00"),
        ("r2", "2025-01-01 00:00:00"),
        ("r3", "2025-01-01 00:00:00"),
    ]
    kept = read_bronze(spark, lake, "rack_telemetry").where("rack_id = 'r1'").orderBy("hour")
    assert kept.first()["it_energy_kwh"] == pytest.approx(10.5, rel=1e-9)  # not the duplicate's 99

    units = read_bronze(spark, lake, "business_units").select(*schemas.BUSINESS_UNITS.columns)
    assert sorted(map(tuple, units.collect())) == [
        ("p1", "Finance", "FC-1", "cost=a=b"),
        ("p2", "Media", "MC-1", "env=prod;"),
        ("u1", "Retail", "RC-1", "env=prod;owner=team-a"),
        ("u2", "Retail", None, None),
    ]

    price = read_bronze(spark, lake, "electricity_prices").where("subdivision_code IS NULL")
    assert price.first()["price_per_kwh"] == pytest.approx(0.12, rel=1e-9)  # smallest raw kept

    stamps = set()
    for name in ("clusters", "usage", "site_water"):
        stamps |= {r[0] for r in read_bronze(spark, lake, name).select("_ingested_at").collect()}
    assert len(stamps) == 1  # one timestamp per run


def test_hourly_bronze_tables_keep_statistics_of_their_time_and_file_only(spark, ingested) -> None:
    for name, column in (("usage", "usage_start"), ("rack_telemetry", "hour")):
        properties = table_properties(spark, ingested.lake / "bronze" / name)
        assert properties["delta.dataSkippingStatsColumns"] == f"{column},_source_file"
    assert "delta.dataSkippingStatsColumns" not in table_properties(
        spark, ingested.lake / "bronze" / "racks"
    )


def test_reingest_reads_nothing_commits_nothing_and_keeps_other_stages_quarantine(
    spark, ingested
) -> None:
    lake = ingested.lake
    other_stage = spark.createDataFrame(
        [("{}", "no price", "x.csv", dt.datetime(2025, 1, 1, tzinfo=UTC), "energy", None)],
        schemas.QUARANTINE,
    )
    write_table(other_stage, lake / "quarantine" / "utility_invoices", mode="append")
    names = ["clusters", "utility_invoices"]
    written = [lake / layer / name for layer in ("bronze", "quarantine") for name in names]
    versions = [table_version(spark, t) for t in written]
    report = ingest_landing(
        spark, ingested.landing, lake, reference=_reference(spark), datasets=names, log=None
    )

    # The ledger has taken every file: nothing is read again and nothing is committed.
    assert [table_version(spark, t) for t in written] == versions
    for name in names:
        again = report[name]
        assert (again.files, again.rows_in, again.bronze_rows, again.quarantined_rows) == (
            0,
            0,
            0,
            0,
        )
        first = ingested.report[name]
        assert read_bronze(spark, lake, name).count() == first.bronze_rows
        assert _quarantine(spark, lake, name).count() == first.quarantined_rows
    stages = read_table(spark, lake / "quarantine" / "utility_invoices").groupBy("stage").count()
    assert dict(map(tuple, stages.collect())) == {"ingest": 6, "energy": 1}


@pytest.mark.parametrize("fault", ["a row lost", "the two passes disagree"])
def test_ingest_counts_that_do_not_add_up_fail_and_leave_both_tables_as_they_were(
    spark, tmp_path, monkeypatch, fault
) -> None:
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    _write_landing(spark, landing)
    ingest = partial(
        ingest_landing, spark, landing, lake, reference=_reference(spark), datasets=["clusters"]
    )
    ingest(log=None)
    tables = [lake / "bronze" / "clusters", lake / "quarantine" / "clusters"]
    before = [(table_version(spark, t), sorted(read_table(spark, t).collect())) for t in tables]
    # Without the ledger the next ingest takes every file again (a lake being upgraded).
    shutil.rmtree(lake / "bronze" / "_files")

    if fault == "a row lost":
        resolve = bronze_module.resolve_keys
        monkeypatch.setattr(
            bronze_module,
            "resolve_keys",
            lambda *args: resolve(*args).where(
                F.col("reason").isNotNull() | (F.col("cluster_id") != "c2")
            ),
        )
        message = r"ingest clusters: 7 landing rows but 1 bronze \+ 5 quarantined"
    else:
        observed, calls = bronze_module._observed, []

        def second_pass_sees_one_row_more(observation, validated):
            calls.append(observation)
            valid, rejected = observed(observation, validated)
            return (valid, rejected + 1) if len(calls) == 2 else (valid, rejected)

        monkeypatch.setattr(bronze_module, "_observed", second_pass_sees_one_row_more)
        message = r"the bronze pass found 2 valid \+ 5 rejected rows, the quarantine pass 2 \+ 6"
    pruning = "spark.sql.csv.parser.columnPruning.enabled"
    pruning_before = spark.conf.get(pruning, None)
    with pytest.raises(InvariantError, match=message):
        ingest(log=None)
    assert spark.conf.get(pruning, None) == pruning_before  # the session's setting is back
    after = [(table_version(spark, t), sorted(read_table(spark, t).collect())) for t in tables]
    # Restored: the data as before, with the commits that did it in the history.
    assert [rows for _, rows in after] == [rows for _, rows in before]
    assert all(a >= b for (a, _), (b, _) in zip(after, before, strict=True))


def _ingest_prices(spark: SparkSession, root: Path) -> tuple[IngestReport, DataFrame, DataFrame]:
    """electricity_prices alone, root/landing -> root/lake: the report, bronze, quarantine."""
    report = ingest_landing(
        spark,
        root / "landing",
        root / "lake",
        reference=_reference(spark),
        datasets=["electricity_prices"],
        log=None,
    )
    quarantine = read_table(spark, root / "lake" / "quarantine" / "electricity_prices")
    return report, read_bronze(spark, root / "lake", "electricity_prices"), quarantine


def test_missing_optional_dataset_gives_empty_tables(spark, tmp_path) -> None:
    (tmp_path / "landing").mkdir()
    report, bronze, quarantine = _ingest_prices(spark, tmp_path)
    assert (report.rows_in, report.bronze_rows, report.quarantined_rows) == (0, 0, 0)
    assert bronze.schema == schemas.bronze_schema(schemas.ELECTRICITY_PRICES)
    assert bronze.count() == 0
    assert quarantine.count() == 0


def test_missing_mandatory_dataset_is_an_input_error_naming_the_path(spark, tmp_path) -> None:
    (tmp_path / "landing").mkdir()
    with pytest.raises(InputError, match=re.escape(str(tmp_path / "landing" / "clusters"))):
        ingest_landing(
            spark,
            tmp_path / "landing",
            tmp_path / "lake",
            reference=_reference(spark),
            datasets=["clusters"],
            log=None,
        )
    # a child whose parent is neither in the run nor in the lake cannot be checked
    with pytest.raises(InputError, match="bronze table 'clusters' not found"):
        ingest_landing(
            spark,
            tmp_path / "landing",
            tmp_path / "lake",
            reference=_reference(spark),
            datasets=["sites"],
            log=None,
        )


@pytest.mark.parametrize(
    "content",
    [b"not a parquet file", b"PAR1" + b"\x00garbage\xff" * 20 + b"PAR1"],
    ids=["no-magic", "broken-footer"],
)
def test_unreadable_parquet_is_an_input_error_naming_the_file(spark, tmp_path, content) -> None:
    bad = tmp_path / "landing" / "clusters" / "part-0.parquet"
    bad.parent.mkdir(parents=True)
    (bad.parent / "ok.csv").write_text("cluster_id,kind,launch_date\nc1,region,2020-01-01\n")
    bad.write_bytes(content)
    with pytest.raises(InputError, match=re.escape(str(bad))) as raised:
        ingest_landing(
            spark,
            tmp_path / "landing",
            tmp_path / "lake",
            reference=_reference(spark),
            datasets=["clusters"],
            log=None,
        )
    assert "\tat " not in str(raised.value)  # no JVM stack trace in the message
    assert raised.value.__cause__ is None


def test_parsers_accept_iso_utc_and_reject_the_rest(spark) -> None:
    texts = spark.createDataFrame(
        [
            ("2025-01-01T10:00+02:00",),  # offset without seconds: 08:00 UTC
            ("2025-01-01 10:00:00",),  # no zone: UTC
            ("2025-01-01",),  # plain date: midnight
            ("2025-01-01T00:00:00Z",),  # midnight timestamp is a valid date
            ("2025-01-01T05:00:00Z",),  # not a date
            ("2025-01-01T10:00:00.5+02:00",),  # canonical with fraction and offset
            ("2025-01-01T10:00:00+0200",),  # offset without colon
            ("2025-01-01Z",),  # date with zone
            ("2025-02-30T00:00:00Z",),  # canonical shape, no such day
            ("2025-01-01T10:00:00 Z",),
            ("2025",),  # Spark's cast accepts it; ISO-8601 here does not
            ("2025-02-30",),
            ("NaN",),
            ("1e3",),
            ("TRUE",),
            ("yes",),
        ],
        "t string",
    )
    rows = texts.select(
        "t",
        F.date_format(parse_timestamp(F.col("t")), "yyyy-MM-dd HH:mm").alias("ts"),
        parse_date(F.col("t")).alias("d"),
        parse_double(F.col("t")).alias("x"),
        parse_boolean(F.col("t")).alias("b"),
    ).collect()
    got = {r["t"]: (r["ts"], r["d"], r["x"], r["b"]) for r in rows}
    jan1 = dt.date(2025, 1, 1)
    assert got == {
        "2025-01-01T10:00+02:00": ("2025-01-01 08:00", None, None, None),
        "2025-01-01 10:00:00": ("2025-01-01 10:00", None, None, None),
        "2025-01-01": ("2025-01-01 00:00", jan1, None, None),
        "2025-01-01T00:00:00Z": ("2025-01-01 00:00", jan1, None, None),
        "2025-01-01T05:00:00Z": ("2025-01-01 05:00", None, None, None),
        "2025-01-01T10:00:00.5+02:00": ("2025-01-01 08:00", None, None, None),
        "2025-01-01T10:00:00+0200": ("2025-01-01 08:00", None, None, None),
        "2025-01-01Z": ("2025-01-01 00:00", jan1, None, None),
        "2025-02-30T00:00:00Z": (None, None, None, None),
        "2025-01-01T10:00:00 Z": (None, None, None, None),
        "2025": (None, None, 2025.0, None),
        "2025-02-30": (None, None, None, None),
        "NaN": (None, None, None, None),
        "1e3": (None, None, 1000.0, None),
        "TRUE": (None, None, None, True),
        "yes": (None, None, None, None),
    }


def test_read_bronze_of_a_lake_without_an_optional_dataset(spark, tmp_path):
    empty = read_bronze(spark, tmp_path / "lake", "business_units")
    assert empty.count() == 0
    assert empty.schema == schemas.bronze_schema(schemas.BUSINESS_UNITS)
    with pytest.raises(InputError, match="bronze table 'usage' not found"):
        read_bronze(spark, tmp_path / "lake", "usage")


def _outcome(validated: DataFrame) -> list[tuple]:
    """(source file name, raw, reason) per row, sorted: what bronze and quarantine get."""
    rows = validated.select(
        F.regexp_extract(SOURCE_FILE, r"[^/]+$", 0).alias("file"),
        F.col("rack_id"),
        F.date_format("hour", "yyyy-MM-dd HH:mm").alias("hour"),
        "it_energy_kwh",
        "raw",
        "reason",
    ).collect()
    return sorted((tuple(r) for r in rows), key=repr)


def test_duplicate_keys_through_the_repeated_key_prepass_match_ranking_every_row(
    spark, ingested, monkeypatch
) -> None:
    dataset = schemas.RACK_TELEMETRY
    landing = read_landing(spark, ingested.landing, dataset)
    parents = {"racks": read_bronze(spark, ingested.lake, "racks")}
    fuel = _reference(spark).fuel_factors
    repeated = repeated_key_hashes(landing, dataset)
    # r1 at 2025-01-01 00:00 UTC is written twice (a.csv ok1, b.csv duplicate): one hash
    assert repeated.count() == 1
    # Many rows are counted in more tasks than the session's shuffle partitions, the
    # same hashes; few rows in the session's number of tasks.
    rows_in = landing.count()
    session_partitions = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "2")
    try:
        monkeypatch.setattr(bronze_module, "KEYS_PER_COUNTING_TASK", 3)
        counted_in_more_tasks = bronze_module._repeated_keys(landing, dataset, rows_in)
        assert counted_in_more_tasks is not None
        assert counted_in_more_tasks.rdd.getNumPartitions() == math.ceil(rows_in / 3) > 2
        assert counted_in_more_tasks.collect() == repeated.collect()
        monkeypatch.setattr(bronze_module, "KEYS_PER_COUNTING_TASK", rows_in)
        counted_in_session_tasks = bronze_module._repeated_keys(landing, dataset, rows_in)
        assert counted_in_session_tasks is not None
        assert counted_in_session_tasks.rdd.getNumPartitions() == 2
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", session_partitions)
    checked = check_rows(landing, dataset, parents, fuel, repeated)
    candidates = checked.where(F.col(KEY_CANDIDATE)).select("rack_id", "raw").collect()
    assert sorted(json.loads(r["raw"])["note"] for r in candidates) == ["duplicate", "ok1"]
    # a clean row that is no candidate carries no raw text out of check_rows
    assert checked.where(~F.col(KEY_CANDIDATE) & F.col("raw").isNotNull()).count() == 9
    through_prepass = _outcome(resolve_keys(checked, dataset))
    assert through_prepass == _outcome(validate(landing, dataset, parents, fuel))
    reasons = {json.loads(raw)["note"]: reason for *_, raw, reason in through_prepass if raw}
    assert reasons["duplicate"] == "duplicate key"


def test_typed_parquet_columns_are_checked_as_they_are(spark, tmp_path) -> None:
    folder = tmp_path / "landing" / "electricity_prices"
    rows = [
        (" US ", None, 2024, 0.12, "USD", "ok_trimmed"),
        ("DE", "DE-BY", 2024, float("nan"), "EUR", "nan_price"),
        ("FR", None, 2024, float("inf"), "EUR", "infinite_price"),
        ("ES", None, 2024, None, "EUR", "missing_price"),
        ("IT", None, 2024, -0.5, "EUR", "negative_price"),
    ]
    schema = "country_code string, subdivision_code string, year int, price_per_kwh double, "
    spark.createDataFrame(rows, schema + "currency string, note string").coalesce(1).write.parquet(
        str(folder)
    )
    landing = read_landing(spark, tmp_path / "landing", schemas.ELECTRICITY_PRICES)
    # the contract types stay typed; nothing is printed to text and parsed back
    assert dict(landing.dtypes)["price_per_kwh"] == "double"
    assert dict(landing.dtypes)["year"] == "int"
    empty_fuel = _reference(spark).fuel_factors.limit(0)
    validated = validate(landing, schemas.ELECTRICITY_PRICES, {}, empty_fuel)
    got = {
        json.loads(r["raw"])["note"] if r["raw"] else r["country_code"]: (r["reason"], r["raw"])
        for r in validated.collect()
    }
    assert got["US"] == (None, None)  # valid, trimmed, raw dropped
    assert got["nan_price"][0] == "invalid double in price_per_kwh"
    assert got["infinite_price"][0] == "invalid double in price_per_kwh"
    assert got["missing_price"][0] == "missing price_per_kwh"
    assert got["negative_price"][0] == "negative price_per_kwh"
    # typed values keep their JSON type in raw
    assert json.loads(got["negative_price"][1])["price_per_kwh"] == -0.5
    assert json.loads(got["negative_price"][1])["year"] == 2024


def test_source_file_is_the_plain_path_even_with_spaces_plus_and_percent(spark, tmp_path) -> None:
    landing = tmp_path / "land ing+50%"
    csv_file = landing / "clusters" / "a b+c%41.csv"
    csv_file.parent.mkdir(parents=True)
    csv_file.write_text("cluster_id,kind,launch_date,name\nc1,region,2020-01-01,One\n")
    parquet_folder = landing / "clusters" / "typed folder"
    spark.createDataFrame(
        [("c2", "edge", "2021-01-01", "Two")],
        "cluster_id string, kind string, launch_date string, name string",
    ).coalesce(1).write.parquet(str(parquet_folder))
    ingest_landing(
        spark,
        landing,
        tmp_path / "lake",
        reference=_reference(spark),
        datasets=["clusters"],
        log=None,
    )
    files = {
        r["cluster_id"]: r["_source_file"]
        for r in read_bronze(spark, tmp_path / "lake", "clusters").collect()
    }
    assert files["c1"] == str(csv_file)
    assert files["c2"].startswith(str(parquet_folder) + "/part-")


def test_keys_that_differ_only_in_the_case_of_a_code_are_duplicates(spark, tmp_path) -> None:
    # Country and subdivision codes are upper-cased, so "us" and "US" are one key in
    # bronze: the repeated-key pre-pass must hash the key upper-cased too.
    folder = tmp_path / "landing" / "electricity_prices"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text(
        "country_code,subdivision_code,year,price_per_kwh,currency\n"
        "US,US-VA,2024,0.10,USD\n"
        "us,us-va,2024,0.11,USD\n"
        "us,,2024,0.12,USD\n"
        "DE,,2024,0.30,EUR\n"
    )
    report, bronze, quarantine = _ingest_prices(spark, tmp_path)
    assert (report.rows_in, report.bronze_rows, report.quarantined_rows) == (4, 3, 1)
    kept = {(r.country_code, r.subdivision_code): r.price_per_kwh for r in bronze.collect()}
    # "US,US-VA" comes first in (source file, raw) order, so it is the row kept
    assert kept == {("DE", None): 0.3, ("US", None): 0.12, ("US", "US-VA"): 0.1}
    assert [(r.reason, r.raw.startswith('{"country_code":"us"')) for r in quarantine.collect()] == [
        ("duplicate key", True)
    ]


def test_waves_hold_parents_first_small_datasets_together_and_hourly_ones_alone() -> None:
    assert bronze_module.ingest_waves(INGEST_ORDER) == [
        ["clusters", "accounts", "electricity_prices"],
        ["sites", "service_catalog", "business_units"],
        ["racks", "utility_invoices", "fuel_records", "energy_contracts", "site_water"],
        ["rack_telemetry"],
        ["usage"],
    ]
    waves = bronze_module.ingest_waves(INGEST_ORDER)
    assert sorted(n for w in waves for n in w) == sorted(INGEST_ORDER)
    for position, wave in enumerate(waves):
        before = {n for w in waves[:position] for n in w}
        assert all(p in before for n in wave for p in PARENTS[n])
    # a parent outside the selection is bronze already: its children need not wait
    assert bronze_module.ingest_waves(["sites", "usage", "racks"]) == [
        ["sites"],
        ["racks"],
        ["usage"],
    ]
    assert bronze_module.ingest_waves(["usage", "accounts"]) == [["accounts"], ["usage"]]


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_failing_dataset_of_a_wave_keeps_its_siblings_recorded(spark, tmp_path, parallel):
    # clusters, accounts and electricity_prices form the first wave; accounts fails.
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    files = {
        "clusters/c.csv": "cluster_id,kind,launch_date\nc1,region,2020-01-01\n",
        "accounts/a.csv": "\naccount_id,payer_account_id\n",
        "electricity_prices/p.csv": (
            "country_code,subdivision_code,year,price_per_kwh,currency\nUS,,2024,0.1,USD\n"
        ),
    }
    for name, text in files.items():
        (landing / name).parent.mkdir(parents=True, exist_ok=True)
        (landing / name).write_text(text)
    gates = IngestSettings(parallel_datasets=parallel)
    settings = [bronze_module.CSV_COLUMN_PRUNING, bronze_module.ADAPTIVE_EXECUTION]
    before = [spark.conf.get(key, None) for key in settings]
    with pytest.raises(InputError, match=re.escape(str(landing / "accounts"))):
        ingest_landing(
            spark,
            landing,
            lake,
            reference=_reference(spark),
            datasets=["clusters", "accounts", "electricity_prices"],
            log=None,
            gates=gates,
        )
    recorded = ledger.read_ledger(spark, str(lake))
    assert [e.bronze_rows for e in recorded["clusters"].values()] == [1]
    assert "accounts" not in recorded
    # one at a time, the datasets after the failure were not started
    assert ("electricity_prices" in recorded) == (parallel > 1)
    # the settings a wave holds are the session's own again
    assert [spark.conf.get(key, None) for key in settings] == before
