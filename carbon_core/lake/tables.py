"""The table catalog: every lake table named once, with its location under the lake,
schema, partitioning, key columns and constraints (docs/data-contract.md).

Every module takes table locations from here. A table is created from its catalog entry
(`ensure_lake_table`), so the Delta table carries NOT NULL on the schema's non-nullable
(key) columns and a CHECK that each quantity is never negative: Delta itself refuses a
write that breaks them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from carbon_core import schemas
from carbon_core.schemas import conform
from carbon_core.errors import InputError
from carbon_core.lake.delta_io import ensure_table, read_table, replace_rows, table_exists

Lake = str | os.PathLike[str]

# Quantity-like columns that can never be negative, wherever a table has them.
NON_NEGATIVE_COLUMNS: tuple[str, ...] = (
    *schemas.QUANTITIES,
    "total_lbm_kg",
    "total_mbm_kg",
    "surplus_kwh",
    "facility_energy_kwh",
    "it_energy_kwh",
)
NON_NEGATIVE_CHECK = "quantities_non_negative"


@dataclass(frozen=True)
class LakeTable:
    """One Delta table of the lake.

    Example::

        ACCOUNT_EMISSIONS.uri("s3a://bucket/lake")  # 's3a://bucket/lake/gold/account_emissions'
    """

    name: str  # location under the lake, e.g. "gold/account_emissions"
    schema: T.StructType
    partition_by: tuple[str, ...] = ()
    description: str = ""
    checks: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def keys(self) -> tuple[str, ...]:
        """The key columns: the schema's non-nullable fields."""
        return tuple(f.name for f in self.schema.fields if not f.nullable)

    def uri(self, lake: Lake) -> str:
        """The table's location under a lake URI (or local path)."""
        return table_uri(lake, self.name)


def table_uri(lake: Lake, name: str) -> str:
    """The location of the table `name` (e.g. 'gold/unallocated') under the lake."""
    return f"{os.fspath(lake).rstrip('/')}/{name}"


def _checks(schema: T.StructType) -> dict[str, str]:
    """One CHECK over every non-negative column of the schema (one commit at creation).

    A null passes: the check is about sign; nullability is the schema's business."""
    names = set(schema.fieldNames())
    columns = [c for c in NON_NEGATIVE_COLUMNS if c in names]
    if not columns:
        return {}
    return {NON_NEGATIVE_CHECK: " AND ".join(f"({c} IS NULL OR {c} >= 0)" for c in columns)}


def _table(
    name: str, schema: T.StructType, description: str, *, monthly: bool = True
) -> LakeTable:
    return LakeTable(
        name,
        schema,
        partition_by=("month",) if monthly else (),
        description=description,
        checks=_checks(schema),
    )


SITE_MONTHLY = _table(
    "silver/site_monthly", schemas.SITE_MONTHLY, "month x site: energy, factors, quantities"
)
INSTRUMENT_SURPLUS = _table(
    "silver/instrument_surplus",
    schemas.INSTRUMENT_SURPLUS,
    "month x site or market boundary: contract kWh left over",
)
CLUSTER_EFFICIENCY = _table(
    "gold/cluster_efficiency", schemas.CLUSTER_EFFICIENCY, "month x cluster: PUE and WUE"
)
RACK_UTILISATION = _table(
    "gold/rack_utilisation",
    schemas.RACK_UTILISATION,
    "month x rack: used share and quantities after steps A and B",
)
ACCOUNT_EMISSIONS = _table(
    "gold/account_emissions",
    schemas.ACCOUNT_EMISSIONS,
    "month x model version x payer x usage account x cluster x product: allocated quantities",
)
UNALLOCATED = _table(
    "gold/unallocated", schemas.UNALLOCATED, "month x model version x cluster x reason"
)
BU_MONTHLY = _table(
    "gold/bu_monthly",
    schemas.BU_MONTHLY,
    "month x business unit x cost center x cluster x product rollup",
)
REGION_BENCHMARKS = _table(
    "gold/region_benchmarks",
    schemas.REGION_BENCHMARKS,
    "month x cluster x foundational product: efficiency, factors, kg per unit",
)
FORECAST = _table(
    "gold/forecast",
    schemas.FORECAST,
    "forecast month x payer x cluster x product, LBM and MBM with intervals",
    monthly=False,
)
FORECAST_BACKTEST = _table(
    "gold/forecast_backtest",
    schemas.FORECAST_BACKTEST,
    "payer x cluster x product: the forecast's method and its held-out error",
    monthly=False,
)
TARGET_PROGRESS = _table(
    "gold/target_progress",
    schemas.TARGET_PROGRESS,
    "configured target x year: actual, annualised and straight-line path kg",
    monthly=False,
)
LANDING_FILES = LakeTable(
    "bronze/_files",
    schemas.LANDING_FILES,
    description="the file ledger: one row per landing file and what the ingest did with it",
    # Rows in = bronze + quarantine for every file the ingest took (docs/operations.md §4.5).
    checks={
        "rows_accounted_for": (
            "duplicate_of IS NOT NULL OR rows_read = bronze_rows + quarantined_rows"
        ),
        "counts_non_negative": "rows_read >= 0 AND bronze_rows >= 0 AND quarantined_rows >= 0",
    },
)
RUN_LOG = _table(
    "gold/run_log",
    schemas.RUN_LOG,
    "one row per run and status: started, then committed (with the versions written) or failed",
    monthly=False,
)
RUN_CLAIMS = _table(
    "control/run_claims",
    schemas.RUN_CLAIMS,
    "which run holds which months (and the ingest) until when",
    monthly=False,
)

# Replaced month by month, in one commit per table, by every run.
MONTHLY_TABLES: tuple[LakeTable, ...] = (
    SITE_MONTHLY,
    INSTRUMENT_SURPLUS,
    CLUSTER_EFFICIENCY,
    RACK_UTILISATION,
    ACCOUNT_EMISSIONS,
    UNALLOCATED,
    BU_MONTHLY,
    REGION_BENCHMARKS,
)
# Rebuilt whole from the committed history: the run's derived views.
DERIVED_TABLES: tuple[LakeTable, ...] = (FORECAST, FORECAST_BACKTEST, TARGET_PROGRESS)


def bronze(dataset: str) -> LakeTable:
    """bronze/<dataset>: the valid rows of a landing dataset, with their lineage."""
    spec = schemas.DATASETS_BY_NAME[dataset]
    schema = schemas.bronze_schema(spec)
    if dataset not in schemas.MONTH_PARTITIONED:
        return LakeTable(f"bronze/{dataset}", schema, description=f"valid {dataset} rows")
    return LakeTable(
        f"bronze/{dataset}",
        T.StructType([*schema.fields, T.StructField(schemas.BRONZE_MONTH, T.DateType(), True)]),
        partition_by=(schemas.BRONZE_MONTH,),
        description=f"valid {dataset} rows, partitioned by month",
    )


def quarantine(dataset: str) -> LakeTable:
    """quarantine/<dataset>: the rejected rows of a dataset, raw, with the reason."""
    if dataset not in schemas.DATASETS_BY_NAME:
        raise KeyError(dataset)
    return LakeTable(
        f"quarantine/{dataset}", schemas.QUARANTINE, description=f"rejected {dataset} rows"
    )


def catalog() -> tuple[LakeTable, ...]:
    """Every table of the lake, bronze and quarantine of every landing dataset included."""
    names = [d.name for d in schemas.DATASETS]
    return (
        *(bronze(n) for n in names),
        *(quarantine(n) for n in names),
        LANDING_FILES,
        *MONTHLY_TABLES,
        *DERIVED_TABLES,
        RUN_LOG,
        RUN_CLAIMS,
    )


def ensure_lake_table(spark: SparkSession, lake: Lake, table: LakeTable) -> str:
    """Create the table from its catalog entry unless it exists; its URI."""
    uri = table.uri(lake)
    ensure_table(
        spark, uri, schema=table.schema, partition_by=table.partition_by, checks=table.checks
    )
    return uri


def read_lake_table(spark: SparkSession, lake: Lake, table: LakeTable) -> DataFrame:
    """Read a lake table, with a one-line error naming it when it does not exist."""
    uri = table.uri(lake)
    if not table_exists(spark, uri):
        raise InputError(f"lake table not found: {uri} (run `carbonlake run` first)")
    return read_table(spark, uri)


def overwrite_lake_table(df: DataFrame, lake: Lake, table: LakeTable) -> str:
    """Replace a whole table (a derived view rebuilt from history) in one commit; its URI."""
    uri = ensure_lake_table(df.sparkSession, lake, table)
    replace_rows(conform(df, table.schema), uri)
    return uri
