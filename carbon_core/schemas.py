"""One StructType per table: landing datasets (typed), silver and gold tables.

The column names are the public interface described in docs/data-contract.md. Key
columns of silver and gold tables are non-nullable; the Delta tables carry the
matching NOT NULL constraints (carbon_core.lake.tables).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

S = T.StringType()
D = T.DoubleType()
DATE = T.DateType()
TS = T.TimestampType()
BOOL = T.BooleanType()
INT = T.IntegerType()
LONG = T.LongType()


def _struct(*fields: tuple[str, T.DataType], keys: tuple[str, ...] = ()) -> T.StructType:
    """A schema whose fields are nullable except the key columns."""
    unknown = set(keys) - {name for name, _ in fields}
    if unknown:
        raise ValueError(f"key columns not in the schema: {sorted(unknown)}")
    return T.StructType([T.StructField(name, dtype, name not in keys) for name, dtype in fields])


def conform(df: DataFrame, schema: T.StructType) -> DataFrame:
    """The schema's columns, in its order, cast to its types.

    Nullable fields come out nullable even where Spark proves a column non-null (a CASE
    without ELSE), so a written table's schema equals the declared one. A non-null field
    keeps its input's nullability: the table's NOT NULL constraint refuses a null at write.
    """
    columns = []
    for field in schema.fields:
        value = F.col(field.name).cast(field.dataType)
        if field.nullable:
            value = F.when(value.isNotNull(), value)
        columns.append(value.alias(field.name))
    return df.select(*columns)


# Edge/CDN clusters (clusters.kind) are reported with this location everywhere.
EDGE_KIND = "edge"
EDGE_LOCATION = "Global"

# The quantity vector that every allocation step moves with the same weights.
QUANTITIES: tuple[str, ...] = (
    "energy_kwh",
    "scope1_kg",
    "scope2_lbm_kg",
    "scope2_mbm_kg",
    "scope3_kg",
    "water_l",
)
QUANTITY_FIELDS: tuple[tuple[str, T.DataType], ...] = tuple((q, D) for q in QUANTITIES)


@dataclass(frozen=True)
class Dataset:
    """A landing dataset: typed columns, required columns, unique key."""

    name: str
    schema: T.StructType
    required: tuple[str, ...]
    key: tuple[str, ...] = ()
    mandatory: bool = True  # a missing folder is an error (else: an empty table)

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.schema.fields]


CLUSTERS = Dataset(
    "clusters",
    _struct(("cluster_id", S), ("kind", S), ("launch_date", DATE), ("name", S)),
    required=("cluster_id", "kind", "launch_date"),
    key=("cluster_id",),
)
SITES = Dataset(
    "sites",
    _struct(
        ("site_id", S),
        ("cluster_id", S),
        ("country_code", S),
        ("subdivision_code", S),
        ("postal_code", S),
        ("latitude", D),
        ("longitude", D),
        ("design_pue", D),
        ("building_embodied_kgco2e", D),
        ("building_in_service_date", DATE),
    ),
    required=("site_id", "cluster_id"),
    key=("site_id",),
)
RACKS = Dataset(
    "racks",
    _struct(
        ("rack_id", S),
        ("site_id", S),
        ("rack_type", S),
        ("product_code", S),
        ("capacity", D),
        ("capacity_unit", S),
        ("embodied_kgco2e", D),
        ("in_service_date", DATE),
        ("retired_date", DATE),
    ),
    required=("rack_id", "site_id", "rack_type", "embodied_kgco2e", "in_service_date"),
    key=("rack_id",),
)
RACK_TELEMETRY = Dataset(
    "rack_telemetry",
    _struct(("rack_id", S), ("hour", TS), ("it_energy_kwh", D), ("used_capacity", D)),
    required=("rack_id", "hour", "it_energy_kwh"),
    key=("rack_id", "hour"),
)
ACCOUNTS = Dataset(
    "accounts",
    _struct(("account_id", S), ("payer_account_id", S), ("is_internal", BOOL), ("name", S)),
    required=("account_id", "payer_account_id", "is_internal"),
    key=("account_id",),
)
SERVICE_CATALOG = Dataset(
    "service_catalog",
    _struct(
        ("product_code", S),
        ("kind", S),
        ("allocation_unit", S),
        ("runs_on", S),
        ("owner_account_id", S),
    ),
    required=("product_code", "kind", "allocation_unit"),
    key=("product_code",),
)
USAGE = Dataset(
    "usage",
    _struct(
        ("usage_start", TS),
        ("payer_account_id", S),
        ("usage_account_id", S),
        ("product_code", S),
        ("region_code", S),
        ("usage_type", S),
        ("usage_unit", S),
        ("usage_amount", D),
        ("cost_usd", D),
    ),
    required=(
        "usage_start",
        "payer_account_id",
        "usage_account_id",
        "product_code",
        "region_code",
        "usage_unit",
        "usage_amount",
    ),
)
# Optional: maps accounts to business units and cost centers (tags: k=v;k=v).
BUSINESS_UNITS = Dataset(
    "business_units",
    _struct(("account_id", S), ("business_unit", S), ("cost_center", S), ("tags", S)),
    required=("account_id", "business_unit"),
    key=("account_id",),
    mandatory=False,
)
UTILITY_INVOICES = Dataset(
    "utility_invoices",
    _struct(
        ("invoice_id", S),
        ("site_id", S),
        ("period_start", TS),
        ("period_end", TS),
        ("energy_kwh", D),
        ("amount", D),
        ("currency", S),
    ),
    required=("invoice_id", "site_id", "period_start", "period_end"),
    key=("invoice_id",),
    mandatory=False,
)
ELECTRICITY_PRICES = Dataset(
    "electricity_prices",
    _struct(
        ("country_code", S),
        ("subdivision_code", S),
        ("year", INT),
        ("price_per_kwh", D),
        ("currency", S),
    ),
    required=("country_code", "year", "price_per_kwh", "currency"),
    key=("country_code", "subdivision_code", "year"),
    mandatory=False,
)
FUEL_RECORDS = Dataset(
    "fuel_records",
    _struct(
        ("record_id", S),
        ("site_id", S),
        ("period_start", TS),
        ("period_end", TS),
        ("source_type", S),
        ("quantity", D),
        ("unit", S),
    ),
    required=(
        "record_id",
        "site_id",
        "period_start",
        "period_end",
        "source_type",
        "quantity",
        "unit",
    ),
    key=("record_id",),
    mandatory=False,
)
ENERGY_CONTRACTS = Dataset(
    "energy_contracts",
    _struct(
        ("contract_id", S),
        ("instrument", S),
        ("site_id", S),
        ("market_boundary", S),
        ("period_start", TS),
        ("period_end", TS),
        ("energy_kwh", D),
        ("emission_factor_kg_per_kwh", D),
    ),
    required=(
        "contract_id",
        "instrument",
        "period_start",
        "period_end",
        "energy_kwh",
        "emission_factor_kg_per_kwh",
    ),
    key=("contract_id",),
    mandatory=False,
)
SITE_WATER = Dataset(
    "site_water",
    _struct(("site_id", S), ("period_start", TS), ("period_end", TS), ("withdrawal_l", D)),
    required=("site_id", "period_start", "period_end", "withdrawal_l"),
    mandatory=False,
)

# In dependency order: a dataset's foreign keys point to datasets before it.
DATASETS: tuple[Dataset, ...] = (
    CLUSTERS,
    SITES,
    RACKS,
    RACK_TELEMETRY,
    ACCOUNTS,
    SERVICE_CATALOG,
    USAGE,
    BUSINESS_UNITS,
    ELECTRICITY_PRICES,
    UTILITY_INVOICES,
    FUEL_RECORDS,
    ENERGY_CONTRACTS,
    SITE_WATER,
)
DATASETS_BY_NAME: dict[str, Dataset] = {d.name: d for d in DATASETS}

INGEST_METADATA_FIELDS: tuple[tuple[str, T.DataType], ...] = (
    ("_source_file", S),
    ("_ingested_at", TS),
)


# The hourly datasets' bronze tables are partitioned by the month of this column, so that
# a run reads only its months (docs/data-contract.md §3).
MONTH_PARTITIONED: dict[str, str] = {"usage": "usage_start", "rack_telemetry": "hour"}
BRONZE_MONTH = "_month"


def bronze_schema(dataset: Dataset) -> T.StructType:
    """A dataset's typed columns plus ingestion lineage."""
    return T.StructType(
        dataset.schema.fields + [T.StructField(n, t, True) for n, t in INGEST_METADATA_FIELDS]
    )


QUARANTINE = _struct(
    ("raw", S),
    ("reason", S),
    ("_source_file", S),
    ("_ingested_at", TS),
    ("stage", S),
    # The run month a later stage rejected the row for (null for the ingest's rejects):
    # a run replaces its own months' rejects only.
    ("month", DATE),
)

# --- reference tables ---------------------------------------------------------

GRID_FACTORS = _struct(("level", S), ("zone", S), ("year", INT), ("kg_per_kwh", D), ("source", S))
RESIDUAL_MIX = _struct(("zone", S), ("year", INT), ("kg_per_kwh", D), ("source", S))
ZIP_TO_EGRID = _struct(("postal_code", S), ("egrid_subregion", S))
FUEL_FACTORS = _struct(("source_type", S), ("unit", S), ("kg_per_unit", D), ("source", S))

# --- silver -------------------------------------------------------------------

SITE_MONTHLY = _struct(
    ("month", DATE),
    ("site_id", S),
    ("cluster_id", S),
    ("energy_kwh", D),
    ("estimated_energy_share", D),
    ("factor_level", S),
    ("factor_zone", S),
    ("factor_year", INT),
    ("factor_source", S),
    ("location_factor", D),
    ("market_boundary", S),
    ("site_covered_kwh", D),
    ("boundary_covered_kwh", D),
    ("residual_mix_kwh", D),
    ("location_fallback_kwh", D),
    ("scope1_kg", D),
    ("scope2_lbm_kg", D),
    ("scope2_mbm_kg", D),
    ("scope3_kg", D),
    ("water_l", D),
    ("provisional", BOOL),
    ("it_energy_kwh", D),
    keys=("month", "site_id", "cluster_id"),
)
INSTRUMENT_SURPLUS = _struct(
    ("month", DATE),
    ("site_id", S),
    ("market_boundary", S),
    ("surplus_kwh", D),
    keys=("month",),
)

# --- gold ---------------------------------------------------------------------

RACK_UTILISATION = _struct(
    ("month", DATE),
    ("rack_id", S),
    ("cluster_id", S),
    ("product_code", S),
    ("used_share", D),
    ("telemetry_hours", LONG),
    *QUANTITY_FIELDS,
    keys=("month", "rack_id", "cluster_id"),
)
ACCOUNT_EMISSIONS = _struct(
    ("month", DATE),
    ("model_version", S),
    ("payer_account_id", S),
    ("usage_account_id", S),
    ("is_internal", BOOL),
    ("region_code", S),
    ("location", S),
    ("product_code", S),
    *QUANTITY_FIELDS,
    ("total_lbm_kg", D),
    ("total_mbm_kg", D),
    keys=(
        "month",
        "model_version",
        "payer_account_id",
        "usage_account_id",
        "region_code",
        "product_code",
    ),
)
UNALLOCATED = _struct(
    ("month", DATE),
    ("model_version", S),
    ("cluster_id", S),
    ("reason", S),
    *QUANTITY_FIELDS,
    keys=("month", "model_version", "cluster_id", "reason"),
)
CLUSTER_EFFICIENCY = _struct(
    ("month", DATE),
    ("cluster_id", S),
    ("facility_energy_kwh", D),
    ("it_energy_kwh", D),
    ("water_l", D),
    ("pue", D),
    ("wue_l_per_kwh", D),
    keys=("month", "cluster_id"),
)
# bronze/_files: the file ledger (ingest/ledger.py), one row per landing file ever seen.
LANDING_FILES = _struct(
    ("dataset", S),
    ("file", S),
    ("size", LONG),
    ("modified_ms", LONG),
    ("fingerprint", S),
    ("rows_read", LONG),
    ("bronze_rows", LONG),
    ("quarantined_rows", LONG),
    ("months", T.ArrayType(DATE)),
    ("status", S),
    ("duplicate_of", S),
    ("ingest_run", S),
    ("ingested_at", TS),
    ("seen_at", TS),
    ("reason", S),
    keys=("dataset", "file"),
)

RUN_LOG = _struct(
    ("run_id", S),
    ("started_at", TS),
    ("ended_at", TS),
    ("status", S),
    ("months", T.ArrayType(DATE)),
    ("input_versions", T.MapType(S, LONG)),
    ("invariants", S),
    ("message", S),
    # status committed: the Delta version of each table the run wrote (its commit), the
    # versions readers read the run's months at.
    ("table_versions", T.MapType(S, LONG)),
    keys=("run_id", "status"),
)

# One row per claimed key ("month:YYYY-MM", "ingest", "derived"): which run holds it
# until when (docs/operations.md §9.2).
RUN_CLAIMS = _struct(
    ("claim_key", S),
    ("run_id", S),
    ("months", T.ArrayType(DATE)),
    ("claimed_at", TS),
    ("expires_at", TS),
    ("holder", S),
    keys=("claim_key", "run_id"),
)

# The export manifest: one row per payer-month file set in place (docs/operations.md §9.5).
EXPORT_MANIFEST = _struct(
    ("payer_account_id", S),
    ("month", DATE),
    ("file", S),
    ("rows", LONG),
    ("export_id", S),
    ("exported_at", TS),
    keys=("payer_account_id", "month"),
)

# --- insight layer (gold) -----------------------------------------------------

# Accounts without a business_units row roll up under this label, never disappear.
UNMAPPED_BUSINESS_UNIT = "unmapped"

BU_MONTHLY = _struct(
    ("month", DATE),
    ("model_version", S),
    ("business_unit", S),
    ("cost_center", S),
    ("region_code", S),
    ("location", S),
    ("product_code", S),
    ("accounts", LONG),
    *QUANTITY_FIELDS,
    ("total_lbm_kg", D),
    ("total_mbm_kg", D),
    keys=("month", "model_version", "business_unit", "region_code", "product_code"),
)
# Progress of one configured reduction target in one year (carbon_core.insight.targets).
TARGET_PROGRESS = _struct(
    ("business_unit", S),
    ("basis", S),
    ("baseline_year", INT),
    ("target_year", INT),
    ("reduction_percent", D),
    ("baseline_months", INT),
    ("baseline_kg", D),
    ("year", INT),
    ("months", INT),
    ("actual_kg", D),
    ("annualised_kg", D),
    ("path_kg", D),
    ("on_track", BOOL),
    keys=("business_unit", "basis", "baseline_year", "target_year", "year"),
)
REGION_BENCHMARKS = _struct(
    ("month", DATE),
    ("cluster_id", S),
    ("location", S),
    ("cluster_kind", S),
    ("energy_kwh", D),
    ("estimated_energy_share", D),
    ("pue", D),
    ("wue_l_per_kwh", D),
    ("location_factor_kg_per_kwh", D),
    ("market_factor_kg_per_kwh", D),
    ("covered_share", D),
    ("factor_levels", S),
    ("provisional", BOOL),
    ("product_code", S),
    ("allocation_unit", S),
    ("usage_amount", D),
    ("service_lbm_kg", D),
    ("service_mbm_kg", D),
    ("lbm_kg_per_unit", D),
    ("mbm_kg_per_unit", D),
    keys=("month", "cluster_id"),
)
# Per foundational product, clusters ranked by kg CO2e per unit over a period (insight.benchmarks).
GREENER_REGIONS = _struct(
    ("product_code", S),
    ("allocation_unit", S),
    ("mbm_rank", INT),
    ("lbm_rank", INT),
    ("cluster_id", S),
    ("location", S),
    ("cluster_kind", S),
    ("months", INT),
    ("usage_amount", D),
    ("service_lbm_kg", D),
    ("service_mbm_kg", D),
    ("lbm_kg_per_unit", D),
    ("mbm_kg_per_unit", D),
    ("estimated_energy_share", D),
    ("factor_levels", S),
    ("provisional", BOOL),
)
# Per forecast series: the method used and its error on the held-out months.
FORECAST_BACKTEST = _struct(
    ("payer_account_id", S),
    ("region_code", S),
    ("location", S),
    ("product_code", S),
    ("method", S),
    ("last_actual_month", DATE),
    ("holdout_months", INT),
    ("backtest_mape_lbm", D),
    ("backtest_mape_mbm", D),
    keys=("payer_account_id", "region_code", "product_code", "method", "last_actual_month"),
)
# The forecast's values with their prediction interval bounds (gold/forecast).
FORECAST_BANDS: tuple[str, ...] = (
    "total_lbm_kg",
    "lbm_lower_kg",
    "lbm_upper_kg",
    "total_mbm_kg",
    "mbm_lower_kg",
    "mbm_upper_kg",
)
FORECAST = _struct(
    ("month", DATE),
    ("payer_account_id", S),
    ("region_code", S),
    ("location", S),
    ("product_code", S),
    ("method", S),
    ("history_months", INT),
    ("last_actual_month", DATE),
    ("interval_level", D),
    ("energy_kwh", D),
    ("total_lbm_kg", D),
    ("lbm_lower_kg", D),
    ("lbm_upper_kg", D),
    ("total_mbm_kg", D),
    ("mbm_lower_kg", D),
    ("mbm_upper_kg", D),
    ("covered_share", D),
    ("backtest_mape_lbm", D),
    ("backtest_mape_mbm", D),
    keys=("month", "payer_account_id", "region_code", "product_code", "method"),
)
