"""Spark builders of the large datasets: racks, rack_telemetry and usage.

Every random draw is a hash of (seed, salt, row coordinates), so a row's content
never depends on partitioning, and `spark.range` feeds the executors: no list that
grows with scale ever lives on the driver.
"""

from __future__ import annotations

import datetime as dt
import math

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from carbonlake_tools.generate.plan import (
    CLOUDFRONT,
    EC2,
    LINE_TYPES,
    MIDMONTH_CLUSTER_ID,
    PRELAUNCH_CLUSTER_ID,
    S3,
    WorldPlan,
)

ROWS_PER_PARTITION = 4_000_000
HASH_RANGE = 1 << 53  # uniform doubles from the low 53 bits of a 64-bit hash
SECONDS_PER_HOUR = 3600
ISO_TIMESTAMP = "yyyy-MM-dd'T'HH:mm:ss'Z'"
ISO_DATE = "yyyy-MM-dd"

COMPUTE = "compute"
STORAGE = "storage"
NETWORK = "network"
CAPACITY_UNITS = {EC2: "vCPU-Hours", CLOUDFRONT: "GB", S3: "TB-Hours"}
EC2_RACK_VCPUS = (768, 1024, 1536, 2048)
STORAGE_RACK_TB = (1000, 2000, 4000)
CLOUDFRONT_RACK_GB = 40_000.0

# Share of racks with a life-cycle event around the generated months (others: stable).
ENTERING_SHARE = 0.04
RETIRING_SHARE = 0.08
RETIRED_SHARE = 0.10
RETIRED_ON_FIRST_SHARE = 0.35
ALT_UNIT_SHARE = 0.03  # usage rows in another unit than the allocation unit
DAILY_AMPLITUDE = 0.18
WEEKEND_FACTOR = 0.88
PEAK_LOCAL_HOUR = 15
PRELAUNCH_ENERGY_FACTOR = 0.4  # burn-in load while the region is being built
PRELAUNCH_UTIL_FACTOR = 0.1


# --- Column helpers ---------------------------------------------------------------


def uniform(seed: int, salt: str, *cols: Column) -> Column:
    """A deterministic uniform double in [0, 1) from (seed, salt, cols)."""
    hashed = F.xxhash64(F.lit(seed), F.lit(salt), *cols)
    return F.pmod(hashed, F.lit(HASH_RANGE)).cast("double") / F.lit(float(HASH_RANGE))


def pick(seed: int, salt: str, modulus: Column | int, *cols: Column) -> Column:
    """A deterministic integer in [0, modulus) from (seed, salt, cols)."""
    hashed = F.xxhash64(F.lit(seed), F.lit(salt), *cols)
    bound = modulus if isinstance(modulus, Column) else F.lit(modulus)
    return F.pmod(hashed, bound.cast("long"))


def decimal_text(value: Column, scale: int) -> Column:
    """A number as plain decimal text (no exponent), rounded to `scale` digits."""
    return F.round(value, scale).cast(T.DecimalType(24, scale)).cast("string")


def shape(epoch_hour: Column, tz_offset: Column) -> Column:
    """Daily (peak mid-afternoon local time) and weekly (quieter weekends) load shape."""
    local = epoch_hour + tz_offset
    hour_of_day = F.pmod(local, F.lit(24))
    # 1970-01-01 was a Thursday: +3 makes 0 = Monday, 5/6 = the weekend.
    weekday = F.pmod(F.floor(local / F.lit(24)) + F.lit(3), F.lit(7))
    daily = F.lit(1.0) + F.lit(DAILY_AMPLITUDE) * F.sin(
        F.lit(2 * math.pi) * (hour_of_day - F.lit(PEAK_LOCAL_HOUR - 6)) / F.lit(24.0)
    )
    weekly = F.when(weekday >= F.lit(5), F.lit(WEEKEND_FACTOR)).otherwise(F.lit(1.0))
    return daily * weekly


def _ts(day: dt.date) -> Column:
    return F.lit(dt.datetime(day.year, day.month, day.day)).cast("timestamp")


def _epoch(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())


def partitions_for(rows: int) -> int:
    """Enough partitions that each writes a few million rows."""
    return max(1, math.ceil(rows / ROWS_PER_PARTITION))


# --- sites and racks --------------------------------------------------------------

_SITE_SCHEMA = T.StructType(
    [
        T.StructField("site_id", T.StringType()),
        T.StructField("cluster_id", T.StringType()),
        T.StructField("rack_offset", T.LongType()),
        T.StructField("n_racks", T.LongType()),
        T.StructField("compute_product", T.StringType()),
        T.StructField("has_storage", T.BooleanType()),
        T.StructField("decommissioned", T.BooleanType()),
        T.StructField("zero_energy_first_month", T.BooleanType()),
        T.StructField("lifecycle_demo", T.BooleanType()),
        T.StructField("mature", T.BooleanType()),
        T.StructField("prelaunch", T.BooleanType()),
        T.StructField("midmonth", T.BooleanType()),
        T.StructField("tz_offset", T.IntegerType()),
        T.StructField("racks_from", T.DateType()),
        T.StructField("anchor_idx", T.LongType()),
    ]
)
MATURE_YEARS = 4  # sites older than this get racks retiring and entering service


def sites_frame(spark: SparkSession, plan: WorldPlan) -> DataFrame:
    """One row per site with what the rack builder needs (small, broadcast)."""
    rows = []
    anchor = 0
    for s in plan.sites:
        built = s.building_in_service_date or dt.date(2015, 1, 1)
        mature = built <= plan.start.replace(year=plan.start.year - MATURE_YEARS)
        rows.append(
            (
                s.site_id,
                s.cluster_id,
                s.rack_offset,
                s.n_racks,
                s.compute_product,
                s.has_storage,
                s.decommissioned,
                s.zero_energy_first_month,
                s.lifecycle_demo,
                mature and s.cluster_id not in (PRELAUNCH_CLUSTER_ID, MIDMONTH_CLUSTER_ID),
                s.cluster_id == PRELAUNCH_CLUSTER_ID,
                s.cluster_id == MIDMONTH_CLUSTER_ID,
                plan.cluster(s.cluster_id).tz_offset,
                built,
                None if s.decommissioned else anchor,
            )
        )
        anchor += 0 if s.decommissioned else 1
    return spark.createDataFrame(rows, _SITE_SCHEMA)


def anchor_count(plan: WorldPlan) -> int:
    """Sites whose first rack (a compute rack in service all months) anchors bad rows."""
    return sum(1 for s in plan.sites if not s.decommissioned)


def _rack_type(seed: int) -> Column:
    k = F.col("k")
    u = uniform(seed, "rack-type", F.col("site_id"), k)
    storage_or_compute = F.when(F.col("has_storage"), F.lit(STORAGE)).otherwise(F.lit(COMPUTE))
    return (
        F.when(k == 0, F.lit(COMPUTE))
        .when(k == 1, F.lit(NETWORK))
        .when(k == 2, storage_or_compute)
        .when(u < 0.62, F.lit(COMPUTE))
        .when(u < 0.87, storage_or_compute)
        .otherwise(F.lit(NETWORK))
    )


def _rack_dates(plan: WorldPlan, seed: int) -> tuple[Column, Column]:
    """(in_service_date, retired_date) for every life-cycle case of docs/methodology.md §6.3."""
    k = F.col("k")
    days = (plan.end - plan.start).days
    start = F.lit(plan.start)
    u_in = uniform(seed, "rack-in", F.col("site_id"), k)
    u_life = uniform(seed, "rack-life", F.col("site_id"), k)
    u_when = uniform(seed, "rack-when", F.col("site_id"), k)
    u_first = uniform(seed, "rack-first", F.col("site_id"), k)
    span = F.greatest(F.datediff(F.date_sub(start, 30), F.col("racks_from")), F.lit(1))
    usual_in = F.date_add(F.col("racks_from"), (u_in * span).cast("int"))
    during = F.date_add(start, (u_when * F.lit(days)).cast("int"))
    retire_during = F.when(u_first < RETIRED_ON_FIRST_SHARE, F.trunc(during, "month")).otherwise(
        F.date_add(during, 1)
    )
    retired_before = F.date_sub(start, (F.lit(30) + u_when * F.lit(300)).cast("int"))
    second_month = plan.months[1] if len(plan.months) > 1 else plan.start + dt.timedelta(days=10)
    hashed_case = F.col("mature") & (k >= 3)
    demo = F.col("lifecycle_demo")
    in_service = (
        F.when(demo & (k == 3), F.lit(plan.start + dt.timedelta(days=int(days * 0.4))))
        .when(demo & (k == 7), F.lit(plan.start.replace(year=plan.start.year - 8)))
        .when(hashed_case & (u_life < ENTERING_SHARE) & ~demo, during)
        .when(F.col("prelaunch") & (k < 3), F.date_sub(start, 90))
        .when(
            F.col("prelaunch"),
            F.date_add(F.date_sub(start, 90), (u_in * F.lit(days + 60)).cast("int")),
        )
        .when(F.col("midmonth"), F.date_sub(start, (F.lit(120) + u_in * 200).cast("int")))
        .otherwise(usual_in)
    )
    retired = (
        F.when(F.col("decommissioned"), F.date_sub(start, (F.lit(200) + u_when * 100).cast("int")))
        .when(demo & (k == 4), F.lit(second_month))
        .when(demo & (k == 5), F.lit(plan.start + dt.timedelta(days=int(days * 0.6) + 1)))
        .when(demo & (k == 6), F.date_sub(start, 200))
        .when(
            hashed_case & (u_life >= ENTERING_SHARE) & (u_life < RETIRING_SHARE) & ~demo,
            retire_during,
        )
        .when(
            hashed_case & (u_life >= RETIRING_SHARE) & (u_life < RETIRED_SHARE) & ~demo,
            retired_before,
        )
    )
    # A rack retired on or before the day it entered service would be nonsense.
    in_service_safe = F.when(
        retired.isNotNull() & (in_service >= retired), F.date_sub(retired, 400)
    ).otherwise(in_service)
    return in_service_safe, retired


def racks_frame(gids: DataFrame, sites: DataFrame, plan: WorldPlan, seed: int) -> DataFrame:
    """Typed rack attributes (plus generator-only columns) for rack numbers `gid`."""
    in_site = (F.col("gid") >= F.col("rack_offset")) & (
        F.col("gid") < F.col("rack_offset") + F.col("n_racks")
    )
    located = gids.join(F.broadcast(sites), on=in_site, how="inner").withColumn(
        "k", F.col("gid") - F.col("rack_offset")
    )
    rack_type = _rack_type(seed)
    in_service, retired = _rack_dates(plan, seed)
    u_size = pick(seed, "rack-size", 12, F.col("site_id"), F.col("k"))
    u_emb = uniform(seed, "rack-embodied", F.col("site_id"), F.col("k"))
    u_util = uniform(seed, "rack-util", F.col("site_id"), F.col("k"))
    u_kw = uniform(seed, "rack-kw", F.col("site_id"), F.col("k"))
    typed = located.select(
        "site_id",
        "k",
        "tz_offset",
        "prelaunch",
        "zero_energy_first_month",
        "anchor_idx",
        F.format_string("%s-r%05d", F.col("site_id"), F.col("k")).alias("rack_id"),
        rack_type.alias("rack_type"),
        in_service.alias("in_service_date"),
        retired.alias("retired_date"),
        u_size.alias("u_size"),
        u_emb.alias("u_emb"),
        u_util.alias("u_util"),
        u_kw.alias("u_kw"),
        F.col("compute_product"),
    )
    is_compute = F.col("rack_type") == COMPUTE
    is_storage = F.col("rack_type") == STORAGE
    is_cloudfront = F.col("compute_product") == CLOUDFRONT
    product = (
        F.when(is_compute, F.col("compute_product")).when(is_storage, F.lit(S3)).otherwise(None)
    )
    vcpus = F.element_at(
        F.array(*[F.lit(float(v)) for v in EC2_RACK_VCPUS]),
        (F.pmod(F.col("u_size"), F.lit(len(EC2_RACK_VCPUS))) + 1).cast("int"),
    )
    terabytes = F.element_at(
        F.array(*[F.lit(float(v)) for v in STORAGE_RACK_TB]),
        (F.pmod(F.col("u_size"), F.lit(len(STORAGE_RACK_TB))) + 1).cast("int"),
    )
    capacity = (
        F.when(is_compute & is_cloudfront, F.lit(CLOUDFRONT_RACK_GB))
        .when(is_compute, vcpus)
        .when(is_storage, terabytes)
    )
    unit = F.when(is_compute & is_cloudfront, F.lit(CAPACITY_UNITS[CLOUDFRONT])).when(
        is_compute, F.lit(CAPACITY_UNITS[EC2])
    )
    unit = unit.when(is_storage, F.lit(CAPACITY_UNITS[S3]))
    embodied = (
        F.when(is_compute, F.lit(25_000.0) + F.lit(15_000.0) * F.col("u_emb"))
        .when(is_storage, F.lit(20_000.0) + F.lit(10_000.0) * F.col("u_emb"))
        .otherwise(F.lit(4_000.0) + F.lit(2_000.0) * F.col("u_emb"))
    )
    # Mean utilisation near 0.7 leaves 20-40 % of rack energy as unused capacity.
    base_util = F.when(is_storage, F.lit(0.62) + F.lit(0.25) * F.col("u_util")).otherwise(
        F.lit(0.55) + F.lit(0.35) * F.col("u_util")
    )
    idle_kw = (
        F.when(is_compute, F.lit(6.0) + F.lit(2.0) * F.col("u_kw"))
        .when(is_storage, F.lit(5.5) + F.col("u_kw"))
        .otherwise(F.lit(2.4) + F.lit(0.5) * F.col("u_kw"))
    )
    peak_kw = (
        F.when(is_compute, F.lit(16.0) + F.lit(4.0) * F.col("u_kw"))
        .when(is_storage, F.lit(8.4) + F.lit(0.6) * F.col("u_kw"))
        .otherwise(F.lit(3.6) + F.lit(0.4) * F.col("u_kw"))
    )
    start_ts, end_ts = _ts(plan.start), _ts(plan.end)
    window_start = F.greatest(start_ts, F.col("in_service_date").cast("timestamp"))
    window_end = F.least(end_ts, F.coalesce(F.col("retired_date").cast("timestamp"), end_ts))
    return typed.select(
        "rack_id",
        "site_id",
        "k",
        "rack_type",
        product.alias("product_code"),
        capacity.alias("capacity"),
        unit.alias("capacity_unit"),
        F.round(embodied, 1).alias("embodied_kgco2e"),
        "in_service_date",
        "retired_date",
        "tz_offset",
        "prelaunch",
        "zero_energy_first_month",
        "anchor_idx",
        base_util.alias("base_util"),
        idle_kw.alias("idle_kw"),
        peak_kw.alias("peak_kw"),
        window_start.alias("window_start"),
        window_end.alias("window_end"),
    )


def racks_text(racks: DataFrame) -> DataFrame:
    """The racks dataset's columns as CSV text."""
    return racks.select(
        "rack_id",
        "site_id",
        "rack_type",
        "product_code",
        decimal_text(F.col("capacity"), 0).alias("capacity"),
        "capacity_unit",
        decimal_text(F.col("embodied_kgco2e"), 1).alias("embodied_kgco2e"),
        F.date_format("in_service_date", ISO_DATE).alias("in_service_date"),
        F.date_format("retired_date", ISO_DATE).alias("retired_date"),
    )


_RACK_BAD_KINDS: tuple[str, ...] = (
    "unknown_site",
    "bad_rack_type",
    "missing_product",
    "zero_capacity",
    "missing_embodied",
    "bad_date",
    "bad_capacity",
    "missing_in_service_date",
)


def malformed_racks(anchors: DataFrame, plan: WorldPlan, seed: int, count: int) -> DataFrame:
    """`count` rack rows that break the racks rules, with new rack ids ("-q" numbers)."""
    spark = anchors.sparkSession
    bad = spark.range(count).select(
        F.col("id").alias("bad_id"),
        pick(seed, "bad-rack", anchor_count(plan), F.col("id")).alias("anchor_idx"),
        F.pmod(F.col("id"), F.lit(len(_RACK_BAD_KINDS))).alias("kind"),
    )
    kind = F.col("kind")
    none = F.lit(None).cast("string")
    return bad.join(F.broadcast(anchors), on="anchor_idx", how="inner").select(
        F.format_string("%s-q%05d", F.col("site_id"), F.col("bad_id")).alias("rack_id"),
        F.when(kind == 0, F.concat(F.col("site_id"), F.lit("-old")))
        .otherwise(F.col("site_id"))
        .alias("site_id"),
        F.when(kind == 1, F.lit("gpu"))
        .when(kind == 3, F.lit(STORAGE))
        .otherwise(F.col("rack_type"))
        .alias("rack_type"),
        F.when(kind == 2, none)
        .when(kind == 3, F.lit(S3))
        .otherwise(F.col("product_code"))
        .alias("product_code"),
        F.when(kind == 3, F.lit("0"))
        .when(kind == 6, F.concat(decimal_text(F.col("capacity"), 0), F.lit(" vCPU")))
        .otherwise(decimal_text(F.col("capacity"), 0))
        .alias("capacity"),
        F.when(kind == 3, F.lit(CAPACITY_UNITS[S3]))
        .otherwise(F.col("capacity_unit"))
        .alias("capacity_unit"),
        F.when(kind == 4, none)
        .otherwise(decimal_text(F.col("embodied_kgco2e"), 1))
        .alias("embodied_kgco2e"),
        F.when(kind == 5, F.lit("2019-02-30"))
        .when(kind == 7, none)
        .otherwise(F.date_format("in_service_date", ISO_DATE))
        .alias("in_service_date"),
        F.date_format("retired_date", ISO_DATE).alias("retired_date"),
    )


# --- rack telemetry ---------------------------------------------------------------


def _epoch_hour(hour: Column) -> Column:
    return F.floor(F.unix_seconds(hour) / F.lit(SECONDS_PER_HOUR))


def telemetry_values(
    rack_hours: DataFrame, plan: WorldPlan, seed: int, keep: tuple[str, ...] = ()
) -> DataFrame:
    """IT energy and used capacity of racks at `hour`, with a daily and weekly shape."""
    epoch_hour = _epoch_hour(F.col("hour"))
    load = shape(epoch_hour, F.col("tz_offset"))
    u_util = uniform(seed, "tel-util", F.col("rack_id"), epoch_hour)
    u_kw = uniform(seed, "tel-kw", F.col("rack_id"), epoch_hour)
    is_network = F.col("rack_type") == NETWORK
    is_storage = F.col("rack_type") == STORAGE
    busy = F.col("base_util") * load * (F.lit(0.92) + F.lit(0.16) * u_util)
    steady = F.col("base_util") * (F.lit(0.99) + F.lit(0.02) * u_util)
    util = F.least(F.lit(0.97), F.greatest(F.lit(0.02), F.when(is_storage, steady).otherwise(busy)))
    util = F.when(F.col("prelaunch"), util * F.lit(PRELAUNCH_UTIL_FACTOR)).otherwise(util)
    noise = F.lit(0.98) + F.lit(0.04) * u_kw
    energy = F.when(
        is_network, F.col("idle_kw") * (F.lit(0.9) + F.lit(0.1) * load) * noise
    ).otherwise((F.col("idle_kw") + (F.col("peak_kw") - F.col("idle_kw")) * util) * noise)
    energy = F.when(F.col("prelaunch"), energy * F.lit(PRELAUNCH_ENERGY_FACTOR)).otherwise(energy)
    first_month_end = plan.months[1] if len(plan.months) > 1 else plan.end
    unmetered = F.col("zero_energy_first_month") & (F.col("hour") < _ts(first_month_end))
    used = F.when(is_network, F.lit(None).cast("double")).otherwise(
        F.round(F.col("capacity") * util, 2)
    )
    return rack_hours.select(
        "rack_id",
        "site_id",
        "rack_type",
        "capacity",
        "hour",
        F.when(unmetered, F.lit(0.0)).otherwise(F.round(energy, 4)).alias("it_energy_kwh"),
        F.when(unmetered & ~is_network, F.lit(0.0)).otherwise(used).alias("used_capacity"),
        *keep,
    )


def telemetry_frame(racks: DataFrame, plan: WorldPlan, seed: int) -> DataFrame:
    """One row per in-service rack per hour of the generated months (typed)."""
    in_window = F.col("window_start") < F.col("window_end")
    hours = F.sequence(
        F.col("window_start"),
        F.col("window_end") - F.expr("INTERVAL 1 HOUR"),
        F.expr("INTERVAL 1 HOUR"),
    )
    rack_hours = racks.filter(in_window).withColumn("hour", F.explode(hours))
    return telemetry_values(rack_hours, plan, seed)


def telemetry_text(telemetry: DataFrame) -> DataFrame:
    """The rack_telemetry dataset's columns as CSV text."""
    return telemetry.select(
        "rack_id",
        F.date_format("hour", ISO_TIMESTAMP).alias("hour"),
        decimal_text(F.col("it_energy_kwh"), 4).alias("it_energy_kwh"),
        decimal_text(F.col("used_capacity"), 2).alias("used_capacity"),
    )


_TELEMETRY_BAD_KINDS: tuple[str, ...] = (
    "unknown_rack",
    "negative_energy",
    "used_over_capacity",
    "missing_used_capacity",
    "bad_number",
    "missing_hour",
    "hour_not_on_the_hour",
    "duplicate_key",
)


def malformed_telemetry(anchors: DataFrame, plan: WorldPlan, seed: int, count: int) -> DataFrame:
    """`count` telemetry rows (text) that break the rules; based on anchor compute racks."""
    spark = anchors.sparkSession
    window_hours = (
        F.unix_seconds(F.col("window_end")) - F.unix_seconds(F.col("window_start"))
    ) / F.lit(SECONDS_PER_HOUR)
    bad = spark.range(count).select(
        F.col("id").alias("bad_id"),
        pick(seed, "bad-tel", anchor_count(plan), F.col("id")).alias("anchor_idx"),
        F.pmod(F.col("id"), F.lit(len(_TELEMETRY_BAD_KINDS))).alias("kind"),
    )
    based = bad.join(F.broadcast(anchors), on="anchor_idx", how="inner")
    offset = pick(seed, "bad-tel-hour", window_hours, F.col("bad_id"))
    at_hour = based.withColumn(
        "hour", F.timestamp_seconds(F.unix_seconds("window_start") + offset * SECONDS_PER_HOUR)
    )
    values = telemetry_values(at_hour, plan, seed, keep=("bad_id", "kind"))
    kind = F.col("kind")
    none = F.lit(None).cast("string")
    energy = decimal_text(F.col("it_energy_kwh"), 4)
    return values.select(
        F.when(kind == 0, F.format_string("%s-x%05d", F.col("site_id"), F.col("bad_id")))
        .otherwise(F.col("rack_id"))
        .alias("rack_id"),
        F.when(kind == 5, none)
        .when(
            kind == 6, F.date_format(F.col("hour") + F.expr("INTERVAL 30 MINUTES"), ISO_TIMESTAMP)
        )
        .otherwise(F.date_format("hour", ISO_TIMESTAMP))
        .alias("hour"),
        F.when(kind == 1, decimal_text(-(F.col("it_energy_kwh") + F.lit(1.5)), 4))
        .when(kind == 4, F.lit("n/a"))
        .when(kind == 7, decimal_text(F.col("it_energy_kwh") * 1.1 + F.lit(0.5), 4))
        .otherwise(energy)
        .alias("it_energy_kwh"),
        F.when(kind == 2, decimal_text(F.col("capacity") * 1.25 + F.lit(1.0), 2))
        .when(kind == 3, none)
        .otherwise(decimal_text(F.col("used_capacity"), 2))
        .alias("used_capacity"),
    )


# --- usage --------------------------------------------------------------------------

_SERIES_SCHEMA = T.StructType(
    [
        T.StructField("s_idx", T.LongType()),
        T.StructField("payer_account_id", T.StringType()),
        T.StructField("usage_account_id", T.StringType()),
        T.StructField("product_code", T.StringType()),
        T.StructField("region_code", T.StringType()),
        T.StructField("usage_prefix", T.StringType()),
        T.StructField("tz_offset", T.IntegerType()),
        T.StructField("price_factor", T.DoubleType()),
        T.StructField("multiplier", T.DoubleType()),
        T.StructField("n_windows", T.LongType()),
        T.StructField("n_main", T.LongType()),
        T.StructField("n_alt", T.LongType()),
    ]
)
_WINDOW_SCHEMA = T.StructType(
    [
        T.StructField("s_idx", T.LongType()),
        T.StructField("w_idx", T.LongType()),
        T.StructField("w_start", T.LongType()),
        T.StructField("w_hours", T.LongType()),
    ]
)
_LINE_SCHEMA = T.StructType(
    [
        T.StructField("product_code", T.StringType()),
        T.StructField("is_alt", T.BooleanType()),
        T.StructField("lt_idx", T.LongType()),
        T.StructField("suffix", T.StringType()),
        T.StructField("usage_unit", T.StringType()),
        T.StructField("amount_low", T.DoubleType()),
        T.StructField("amount_high", T.DoubleType()),
        T.StructField("price_usd", T.DoubleType()),
    ]
)


def usage_tables(spark: SparkSession, plan: WorldPlan) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(series, windows, line types): the small tables every usage row is drawn from."""
    lines: list[tuple[object, ...]] = []
    counts: dict[tuple[str, bool], int] = {}
    for line in LINE_TYPES:
        key = (line.product_code, line.alternate)
        index = counts.get(key, 0)
        counts[key] = index + 1
        lines.append(
            (
                line.product_code,
                line.alternate,
                index,
                line.suffix,
                line.unit,
                line.amount_low,
                line.amount_high,
                line.price_usd,
            )
        )
    series_rows = []
    window_rows: list[tuple[object, ...]] = []
    for i, s in enumerate(plan.series):
        cluster = plan.cluster(s.region_code)
        series_rows.append(
            (
                i,
                s.payer_account_id,
                s.usage_account_id,
                s.product_code,
                s.region_code,
                cluster.usage_prefix,
                cluster.tz_offset,
                cluster.price_factor,
                s.multiplier,
                len(s.windows),
                counts.get((s.product_code, False), 0),
                counts.get((s.product_code, True), 0),
            )
        )
        window_rows.extend((i, j, start, hours) for j, (start, hours) in enumerate(s.windows))
    return (
        spark.createDataFrame(series_rows, _SERIES_SCHEMA),
        spark.createDataFrame(window_rows, _WINDOW_SCHEMA),
        spark.createDataFrame(lines, _LINE_SCHEMA),
    )


def usage_rows(
    row_ids: DataFrame,
    tables: tuple[DataFrame, DataFrame, DataFrame],
    n_series: int,
    seed: int,
    keep: tuple[str, ...] = (),
) -> DataFrame:
    """Typed usage rows for `row_id`s: series round robin, hour and line item by hash."""
    series, windows, lines = tables
    rid = F.col("row_id")
    with_series = row_ids.withColumn("s_idx", F.pmod(rid, F.lit(n_series))).join(
        F.broadcast(series), on="s_idx", how="inner"
    )
    with_window = with_series.withColumn(
        "w_idx", pick(seed, "use-window", F.col("n_windows"), rid)
    ).join(F.broadcast(windows), on=["s_idx", "w_idx"], how="inner")
    is_alt = (F.col("n_alt") > 0) & (uniform(seed, "use-alt", rid) < ALT_UNIT_SHARE)
    with_line = (
        with_window.withColumn("is_alt", is_alt)
        .withColumn(
            "lt_idx",
            pick(
                seed,
                "use-line",
                F.when(F.col("is_alt"), F.col("n_alt")).otherwise(F.col("n_main")),
                rid,
            ),
        )
        .join(F.broadcast(lines), on=["product_code", "is_alt", "lt_idx"], how="inner")
    )
    start = F.col("w_start") + pick(seed, "use-hour", F.col("w_hours"), rid) * SECONDS_PER_HOUR
    u_amount = uniform(seed, "use-amount", rid)
    log_range = F.log(F.col("amount_high") / F.col("amount_low"))
    raw = F.col("amount_low") * F.exp(u_amount * log_range) * F.col("multiplier")
    amount = F.round(
        raw
        * F.when(F.col("is_alt"), F.lit(1.0)).otherwise(
            shape(F.floor(start / F.lit(SECONDS_PER_HOUR)), F.col("tz_offset"))
        ),
        6,
    )
    usage_type = F.when(F.col("usage_prefix") == F.lit(""), F.col("suffix")).otherwise(
        F.concat_ws("-", F.col("usage_prefix"), F.col("suffix"))
    )
    return with_line.select(
        F.timestamp_seconds(start).alias("usage_start"),
        "payer_account_id",
        "usage_account_id",
        "product_code",
        "region_code",
        usage_type.alias("usage_type"),
        "usage_unit",
        amount.alias("usage_amount"),
        F.round(amount * F.col("price_usd") * F.col("price_factor"), 8).alias("cost_usd"),
        *keep,
    )


def usage_text(usage: DataFrame, keep: tuple[str, ...] = ()) -> DataFrame:
    """The usage dataset's columns as CSV text."""
    return usage.select(
        F.date_format("usage_start", ISO_TIMESTAMP).alias("usage_start"),
        "payer_account_id",
        "usage_account_id",
        "product_code",
        "region_code",
        "usage_type",
        "usage_unit",
        decimal_text(F.col("usage_amount"), 6).alias("usage_amount"),
        decimal_text(F.col("cost_usd"), 8).alias("cost_usd"),
        *keep,
    )


USAGE_BAD_KINDS_TYPED: tuple[str, ...] = (
    "unknown_account",
    "unknown_product",
    "unknown_region",
    "payer_mismatch",
    "negative_amount",
    "missing_usage_start",
    "missing_usage_unit",
    "start_not_on_the_hour",
)
USAGE_BAD_KINDS_TEXT: tuple[str, ...] = (
    *USAGE_BAD_KINDS_TYPED,
    "bad_number",
    "bad_timestamp",
)
UNKNOWN_PRODUCT = "AmazonQLDB"
UNKNOWN_REGION = "ap-south-1"  # a real AWS region, but not a cluster of this world


def malformed_usage(
    tables: tuple[DataFrame, DataFrame, DataFrame],
    n_series: int,
    n_valid: int,
    plan: WorldPlan,
    seed: int,
    count: int,
    *,
    text: bool,
) -> DataFrame:
    """`count` usage rows that break the rules: text for CSV, typed for Parquet."""
    spark = tables[0].sparkSession
    kinds = USAGE_BAD_KINDS_TEXT if text else USAGE_BAD_KINDS_TYPED
    bad = spark.range(count).select(
        F.col("id").alias("bad_id"),
        pick(seed, "bad-use", max(n_valid, 1), F.col("id")).alias("row_id"),
        F.pmod(F.col("id"), F.lit(len(kinds))).alias("kind"),
    )
    base = usage_rows(bad, tables, n_series, seed, keep=("bad_id", "kind"))
    kind = F.col("kind")
    internal_payer = next(
        a.account_id for a in plan.accounts if a.is_internal and a.key == "internal"
    )
    external_payer = next(
        a.account_id
        for a in plan.accounts
        if not a.is_internal and a.account_id == a.payer_account_id
    )
    other_payer = F.when(
        F.col("payer_account_id") == F.lit(internal_payer), F.lit(external_payer)
    ).otherwise(F.lit(internal_payer))
    typed = base.select(
        F.when(kind == 5, F.lit(None).cast("timestamp"))
        .when(kind == 7, F.col("usage_start") + F.expr("INTERVAL 17 MINUTES"))
        .otherwise(F.col("usage_start"))
        .alias("usage_start"),
        F.when(kind == 3, other_payer)
        .otherwise(F.col("payer_account_id"))
        .alias("payer_account_id"),
        F.when(kind == 0, F.format_string("9999%08d", F.col("bad_id")))
        .otherwise(F.col("usage_account_id"))
        .alias("usage_account_id"),
        F.when(kind == 1, F.lit(UNKNOWN_PRODUCT))
        .otherwise(F.col("product_code"))
        .alias("product_code"),
        F.when(kind == 2, F.lit(UNKNOWN_REGION))
        .otherwise(F.col("region_code"))
        .alias("region_code"),
        "usage_type",
        F.when(kind == 6, F.lit(None).cast("string"))
        .otherwise(F.col("usage_unit"))
        .alias("usage_unit"),
        F.when(kind == 4, -(F.col("usage_amount") + F.lit(1.0)))
        .otherwise(F.col("usage_amount"))
        .alias("usage_amount"),
        "cost_usd",
        "kind",
        F.date_format("usage_start", "dd/MM/yyyy HH:mm").alias("local_style_start"),
    )
    if not text:
        return typed.drop("kind", "local_style_start")
    as_text = usage_text(typed, keep=("kind", "local_style_start"))
    return as_text.select(
        F.when(kind == 9, F.col("local_style_start"))
        .otherwise(F.col("usage_start"))
        .alias("usage_start"),
        "payer_account_id",
        "usage_account_id",
        "product_code",
        "region_code",
        "usage_type",
        "usage_unit",
        F.when(kind == 8, F.lit("12.5.1")).otherwise(F.col("usage_amount")).alias("usage_amount"),
        "cost_usd",
    )
