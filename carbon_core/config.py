"""Typed, validated configuration, parsed once from YAML and passed down."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from carbon_core.calendar import parse_month
from carbon_core.errors import ConfigError
from carbon_core.hadoop import local_path
from carbon_core.ids import ID_BODY

MethodologyVersion = Literal["v1.0", "v2.0"]


def _month_text(value: str) -> str:
    parse_month(value)
    return value


# A month as 'YYYY-MM', kept as text and checked when the configuration is read.
MonthText = Annotated[str, AfterValidator(_month_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkSettings(_Strict):
    master: str | None = "local[2]"
    app_name: str = "carbonlake"
    shuffle_partitions: int = Field(default=8, ge=1)
    # auto: cached JARs from scripts/setup (or $CARBONLAKE_DELTA_JARS), else Spark's
    # resolver with spark.jars.packages; packages: always the resolver; provided: the
    # platform has Delta built in (Databricks) or spark-submit --packages added it.
    delta_jars: Literal["auto", "packages", "provided"] = "auto"
    # More JARs for spark.jars, beside Delta's: files, folders (every *.jar in them) or
    # URIs, e.g. the S3A connector that scripts/setup caches in .cache/s3-jars for s3a://
    # outside a platform that ships it (docs/operations.md §2.5).
    extra_jars: tuple[str, ...] = ()
    driver_memory: str | None = "4g"
    conf: dict[str, str] = Field(default_factory=dict)


class VersionPeriod(_Strict):
    start: MonthText = Field(alias="from")
    version: MethodologyVersion


class MethodologySettings(_Strict):
    versions: tuple[VersionPeriod, ...] = (
        VersionPeriod.model_validate({"from": "1970-01", "version": "v1.0"}),
        VersionPeriod.model_validate({"from": "2025-01", "version": "v2.0"}),
    )
    market_matching: Literal["monthly", "annual"] = "monthly"
    it_lifetime_months: int = Field(default=72, ge=1)
    building_lifetime_months: int = Field(default=600, ge=1)
    default_design_pue: float = Field(default=1.15, ge=1.0)
    invariant_rel_tolerance: float = Field(default=1e-9, gt=0)

    @model_validator(mode="after")
    def _sorted_versions(self) -> MethodologySettings:
        starts = [parse_month(p.start) for p in self.versions]
        if not starts:
            raise ValueError("versions: at least one period is needed")
        if starts != sorted(starts) or len(set(starts)) != len(starts):
            raise ValueError("versions: periods must be in increasing 'from' order")
        return self

    def version_for(self, month: dt.date) -> MethodologyVersion | None:
        """The methodology version in force for a month (None before the first period)."""
        chosen: MethodologyVersion | None = None
        for period in self.versions:
            if parse_month(period.start) <= month:
                chosen = period.version
        return chosen


class GenerateSettings(_Strict):
    scale: int = Field(default=1_000_000, ge=100)
    seed: int = 7
    malformed_share: float = Field(default=0.002, ge=0, le=0.5)
    # 18 months: the forecast's backtest holds out 6 and fits on the 12 before them.
    start_month: MonthText = "2023-10"
    months: int = Field(default=18, ge=1, le=120)
    # External payers; None: a handful, growing with the scale.
    payers: int | None = Field(default=None, ge=3)


class ExportSettings(_Strict):
    format: Literal["csv", "parquet"] = "csv"
    history_months: int = Field(default=38, ge=1)


class TargetSettings(_Strict):
    """A reduction target: `reduction_percent` below the baseline year by the target year."""

    business_unit: str
    baseline_year: int = Field(ge=1990, le=2100)
    target_year: int = Field(ge=1990, le=2100)
    reduction_percent: float = Field(gt=0, le=100)
    basis: Literal["lbm", "mbm"] = "mbm"

    @model_validator(mode="after")
    def _years(self) -> TargetSettings:
        if self.target_year <= self.baseline_year:
            raise ValueError("target_year must be after baseline_year")
        return self


class ForecastSettings(_Strict):
    horizon_end: MonthText = "2030-12"
    holdout_months: int = Field(default=6, ge=1)
    # Series with fewer months than this get a labelled naive forecast.
    min_history_months: int = Field(default=12, ge=3)
    interval_level: float = Field(default=0.9, gt=0, lt=1)


class CatalogSettings(_Strict):
    """Registering the lake's tables by name (`carbonlake catalog`, docs/operations.md §5.1)."""

    # A database, optionally with its catalog (Unity Catalog: main.carbonlake).
    database: str = Field(
        default="carbonlake", pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"
    )
    # Register after every successful `carbonlake run`.
    register_after_run: bool = False


class MaintenanceSettings(_Strict):
    """`carbonlake maintain` (docs/operations.md §4.4)."""

    # Delta's safety check refuses less than a table's deletedFileRetentionDuration,
    # 7 days by default; carbonlake never turns the check off.
    vacuum_retention_hours: int = Field(default=168, ge=168)


class IngestSettings(_Strict):
    """Plausibility gates of the ingest (docs/data-contract.md §1.2)."""

    # A dataset's batch of at least gate_min_rows rows fails the ingest when more than
    # this share of it is quarantined (a renamed header, a wrong delimiter).
    max_quarantined_share: float = Field(default=0.05, ge=0, le=1)
    gate_min_rows: int = Field(default=100, ge=1)
    # Measured timestamps (usage, telemetry, invoices, fuel, water) later than this many
    # days after the ingest are quarantined: a typo (2205 for 2025) would otherwise widen
    # every default run to that year. Contracts may run into the future.
    future_horizon_days: int = Field(default=92, ge=0)
    # usage_amount of one usage row at most this, per usage_unit; "*" for other units.
    usage_amount_ceilings: dict[str, float] = Field(default_factory=lambda: {"*": 1.0e9})
    # it_energy_kwh of one rack-hour at most this (10 MWh: far beyond any rack).
    rack_energy_ceiling_kwh: float = Field(default=1.0e4, gt=0)
    # What an id (account, payer, cluster, site, rack, product, contract, ...) may be, as a
    # regex for the whole id; never '.', '..', a slash, backslash or control character,
    # whatever it says (docs/data-contract.md §1).
    id_pattern: str = ID_BODY
    # Datasets ingested side by side (threads of the one session) once their parents are
    # in bronze; the hourly datasets always go one at a time. 1: one dataset at a time.
    parallel_datasets: int = Field(default=2, ge=1, le=16)

    @model_validator(mode="after")
    def _default_ceiling(self) -> IngestSettings:
        try:
            re.compile(self.id_pattern)
        except re.error as error:
            raise ValueError(f"id_pattern is not a regular expression: {error}") from None
        if "*" not in self.usage_amount_ceilings:
            raise ValueError('usage_amount_ceilings needs a "*" entry for the other units')
        if any(not (v > 0) for v in self.usage_amount_ceilings.values()):
            raise ValueError("usage_amount_ceilings must be > 0")
        return self


class RunSettings(_Strict):
    """Runs on one lake (docs/operations.md §9: the run protocol)."""

    # A run's claim on its months (and on the ingest) expires this long after the run
    # last renewed it, so that a killed run does not block its months for ever. A live
    # run renews it at every stage; keep it well above the longest stage.
    claim_lease_minutes: int = Field(default=120, ge=1)
    # How long a run waits for another run's ingest or derived views to finish.
    wait_minutes: int = Field(default=60, ge=0)


def _location(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, str) and not value.strip():
        raise ValueError("a location must not be empty")
    return value


# A lake, landing, export or reference location: a URI (s3a://, abfss://, gs://, hdfs://,
# file:) or a local path, kept as text so that no scheme is lost to path normalisation.
Location = Annotated[str, BeforeValidator(_location)]
LOCATION_FIELDS = ("lake", "landing", "exports", "reference")


class Config(_Strict):
    lake: Location = "lake"
    landing: Location = "landing"
    exports: Location = "exports"
    reference: Location | None = None
    spark: SparkSettings = SparkSettings()
    methodology: MethodologySettings = MethodologySettings()
    generate: GenerateSettings = GenerateSettings()
    export: ExportSettings = ExportSettings()
    targets: tuple[TargetSettings, ...] = ()
    forecast: ForecastSettings = ForecastSettings()
    catalog: CatalogSettings = CatalogSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    run: RunSettings = RunSettings()
    ingest: IngestSettings = IngestSettings()

    def with_overrides(self, **changes: Any) -> Config:
        """A copy with top-level fields replaced (CLI flags win over the file)."""
        clean = {
            k: _location(v) if k in LOCATION_FIELDS else v
            for k, v in changes.items()
            if v is not None
        }
        return self.model_copy(update=clean)


# Delta's SQL extension and catalog: static settings, so a session needs them from its start.
DELTA_SESSION_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def _describe(error: ValidationError, source: str) -> str:
    parts = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        parts.append(f"{key}: {item['msg']}")
    return f"invalid configuration in {source}: " + "; ".join(parts)


def config_from_mapping(data: dict[str, Any] | None, source: str = "<mapping>") -> Config:
    """Validate a parsed mapping into a Config; errors name the offending key."""
    try:
        return Config.model_validate(data or {})
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def _config_text(location: str) -> str:
    """The text of a config file: a local path or file: URI read directly, any other URI
    through the filesystem layer of the session spark-submit configures.

    That session starts before the file is read, so it gets Delta's SQL settings here,
    and the file's own static Spark settings (master, memory, JARs) cannot apply: they
    belong on the spark-submit command line (docs/operations.md §1).
    """
    local = local_path(location)
    if local is not None:
        file = Path(local)
        if not file.is_file():
            raise ConfigError(f"configuration file not found: {location}")
        return file.read_text()
    from pyspark.sql import SparkSession

    from carbon_core.hadoop import HadoopFiles

    builder = SparkSession.builder
    for key, value in DELTA_SESSION_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    files = HadoopFiles(spark, location)
    if not files.exists(location):
        raise ConfigError(f"configuration file not found: {location}")
    return files.read_text(location)


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Load a YAML config file (a local path or any URI Spark can read); None gives the
    defaults (local mode)."""
    if path is None:
        return Config()
    location = os.fspath(path)
    text = _config_text(location)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"configuration file {location} is not valid YAML: {error}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"configuration file {location} must hold a mapping at the top level")
    return config_from_mapping(data, location)
