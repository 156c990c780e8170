"""Site energy per month (docs/methodology.md §3).

Invoice kWh (measured, or estimated as amount / price) spread over months, plus
gap filling of the hours no valid invoice covers: the site's rack telemetry of
those hours times its design PUE.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from carbon_core import schemas
from carbon_core.calendar import MONTH, month_end, month_of, spread_over_months
from carbon_core.factors.codes import normalise_code
from carbon_core.factors.resolve import year_preference

STAGE = "site_energy"
REASON_NO_PRICE = "no electricity price for site"
REASON_BAD_PERIOD = "period_end <= period_start"
REASON_NO_QUANTITY = "invoice has neither energy_kwh nor amount with currency"
REASON_BAD_PRICE = "electricity price is not positive"
_SUBDIVISION_RANK, _COUNTRY_RANK = 0, 1

INVOICE_COLUMNS: tuple[str, ...] = tuple(schemas.UTILITY_INVOICES.columns)
SITE_ENERGY_COLUMNS: tuple[str, ...] = (
    "site_id",
    MONTH,
    "energy_kwh",
    "estimated_energy_share",
    "it_energy_kwh",
)


def _currency_mismatch(price_currency: Column, invoice_currency: Column) -> Column:
    return F.concat(
        F.lit("price currency "),
        F.coalesce(price_currency, F.lit("null")),
        F.lit(" differs from invoice currency "),
        F.coalesce(invoice_currency, F.lit("null")),
    )


def price_invoices(
    invoices: DataFrame, site_codes: DataFrame, electricity_prices: DataFrame
) -> DataFrame:
    """Each invoice with `kwh`, `estimated` (amount-only) and `reject_reason` (null when valid).

    A measured `energy_kwh` wins over an amount. An amount-only invoice takes the price
    of the site's subdivision, else of its country (empty subdivision_code); within that
    level the year of period_start, else nearest earlier, else nearest later. No price,
    a currency mismatch or a non-positive price rejects the invoice. `site_codes` needs
    site_id, country_code, subdivision_code (resolved, docs/methodology.md §4.1).
    """
    prices = electricity_prices.select(
        normalise_code("country_code").alias("p_country"),
        normalise_code("subdivision_code").alias("p_subdivision"),
        F.col("year").cast("int").alias("p_year"),
        F.col("price_per_kwh").cast("double").alias("p_price"),
        normalise_code("currency").alias("p_currency"),
    )
    codes = site_codes.select(
        F.col("site_id").alias("c_site_id"),
        F.col("country_code").alias("c_country"),
        F.col("subdivision_code").alias("c_subdivision"),
    )
    invoice_columns = [*INVOICE_COLUMNS, *schemas_ingest_columns(invoices)]
    amount_only = F.col("energy_kwh").isNull() & F.col("amount").isNotNull()
    level_rank = F.when(
        F.col("p_subdivision") == F.col("c_subdivision"), F.lit(_SUBDIVISION_RANK)
    ).when(
        F.col("p_subdivision").isNull() & (F.col("p_country") == F.col("c_country")),
        F.lit(_COUNTRY_RANK),
    )
    # Another subdivision's price never applies: only the two ranked levels join.
    priced = (
        invoices.select(*invoice_columns)
        .join(F.broadcast(codes), on=F.col("site_id") == F.col("c_site_id"), how="left")
        .join(F.broadcast(prices), on=amount_only & level_rank.isNotNull(), how="left")
        .withColumn("_level_rank", level_rank)
    )
    # One price for the whole invoice: the most precise level, then the preferred year.
    order = [F.col("_level_rank"), *year_preference(F.year("period_start"), F.col("p_year"))]
    pick = F.row_number().over(Window.partitionBy(*invoice_columns).orderBy(*order))
    joined = priced.withColumn("_pick", pick).filter(F.col("_pick") == 1)
    invoice_currency = normalise_code("currency")
    bad_period = ~(F.col("period_end") > F.col("period_start")) | F.col("period_end").isNull()
    reason = (
        F.when(bad_period, F.lit(REASON_BAD_PERIOD))
        .when(F.col("energy_kwh").isNotNull(), F.lit(None).cast(T.StringType()))
        .when(F.col("amount").isNull(), F.lit(REASON_NO_QUANTITY))
        .when(F.col("p_currency").isNull(), F.lit(REASON_NO_PRICE))
        .when(
            invoice_currency.isNull() | (invoice_currency != F.col("p_currency")),
            _currency_mismatch(F.col("p_currency"), invoice_currency),
        )
        .when(~(F.col("p_price") > 0), F.lit(REASON_BAD_PRICE))
    )
    kwh = F.coalesce(F.col("energy_kwh"), F.col("amount") / F.col("p_price"))
    return joined.select(
        *invoice_columns,
        F.when(reason.isNull(), kwh).alias("kwh"),
        F.col("energy_kwh").isNull().alias("estimated"),
        reason.alias("reject_reason"),
    )


def schemas_ingest_columns(df: DataFrame) -> list[str]:
    """The ingestion lineage columns present in a bronze DataFrame."""
    return [name for name, _ in schemas.INGEST_METADATA_FIELDS if name in df.columns]


def invoice_quarantine(priced_invoices: DataFrame, months: DataFrame) -> DataFrame:
    """Rejected invoices as QUARANTINE rows (raw = JSON of the invoice's columns), one per
    run month the invoice touches: a run replaces the rejects of its own months only."""
    lineage = {
        name: (F.col(name) if name in priced_invoices.columns else F.lit(None)).cast(dtype)
        for name, dtype in schemas.INGEST_METADATA_FIELDS
    }
    rejected = priced_invoices.filter(F.col("reject_reason").isNotNull())
    run_months = months.select(F.col(MONTH).alias("_m"))
    return rejected.join(F.broadcast(run_months), on=_touches_month("_m"), how="inner").select(
        F.to_json(F.struct(*INVOICE_COLUMNS)).alias("raw"),
        F.col("reject_reason").alias("reason"),
        lineage["_source_file"].alias("_source_file"),
        lineage["_ingested_at"].alias("_ingested_at"),
        F.lit(STAGE).alias("stage"),
        F.col("_m").alias("month"),
    )


def invoice_energy_by_month(priced_invoices: DataFrame) -> DataFrame:
    """Valid invoices spread over months, summed per site: invoice_kwh, estimated_invoice_kwh."""
    valid = priced_invoices.filter(F.col("reject_reason").isNull()).select(
        "site_id",
        "period_start",
        "period_end",
        F.col("kwh").alias("invoice_kwh"),
        F.when(F.col("estimated"), F.col("kwh"))
        .otherwise(F.lit(0.0))
        .alias("estimated_invoice_kwh"),
    )
    spread = spread_over_months(valid, value_columns=("invoice_kwh", "estimated_invoice_kwh"))
    return spread.groupBy("site_id", MONTH).agg(
        F.sum("invoice_kwh").alias("invoice_kwh"),
        F.sum("estimated_invoice_kwh").alias("estimated_invoice_kwh"),
    )


def site_hourly_it(rack_telemetry: DataFrame, racks: DataFrame, months: DataFrame) -> DataFrame:
    """Telemetry IT kWh summed per site and hour, for hours in the run's months."""
    rack_site = racks.select("rack_id", "site_id")
    in_run = rack_telemetry.withColumn(MONTH, month_of("hour")).join(
        F.broadcast(months), on=MONTH, how="left_semi"
    )
    return (
        in_run.join(rack_site, on="rack_id", how="inner")
        .groupBy("site_id", MONTH, "hour")
        .agg(F.sum("it_energy_kwh").alias("it_energy_kwh"))
    )


def gap_filled_energy(
    hourly_it: DataFrame,
    priced_invoices: DataFrame,
    sites: DataFrame,
    *,
    default_design_pue: float,
) -> DataFrame:
    """Per site-month: it_energy_kwh (all hours) and gap_kwh (uncovered hours' IT kWh x PUE)."""
    covering = priced_invoices.filter(F.col("reject_reason").isNull()).select(
        F.col("site_id").alias("i_site_id"),
        F.col("period_start").alias("i_start"),
        F.col("period_end").alias("i_end"),
    )
    covered = (
        (F.col("site_id") == F.col("i_site_id"))
        & (F.col("i_start") <= F.col("hour"))
        & (F.col("hour") < F.col("i_end"))
    )
    uncovered = hourly_it.join(covering, on=covered, how="left_anti")
    pue = sites.select(
        "site_id",
        F.coalesce(F.col("design_pue"), F.lit(default_design_pue)).alias("design_pue"),
    )
    gap = (
        uncovered.groupBy("site_id", MONTH)
        .agg(F.sum("it_energy_kwh").alias("uncovered_it_kwh"))
        .join(F.broadcast(pue), on="site_id", how="left")
        .select(
            "site_id",
            MONTH,
            (
                F.col("uncovered_it_kwh")
                * F.coalesce(F.col("design_pue"), F.lit(default_design_pue))
            ).alias("gap_kwh"),
        )
    )
    total_it = hourly_it.groupBy("site_id", MONTH).agg(
        F.sum("it_energy_kwh").alias("it_energy_kwh")
    )
    return total_it.join(gap, on=["site_id", MONTH], how="full_outer").select(
        "site_id",
        MONTH,
        F.coalesce("it_energy_kwh", F.lit(0.0)).alias("it_energy_kwh"),
        F.coalesce("gap_kwh", F.lit(0.0)).alias("gap_kwh"),
    )


def site_month_energy(
    site_months: DataFrame, invoice_energy: DataFrame, gap_energy: DataFrame
) -> DataFrame:
    """Per site-month of `site_months` (site_id, month): energy, estimated share, IT energy."""
    joined = site_months.join(invoice_energy, on=["site_id", MONTH], how="left").join(
        gap_energy, on=["site_id", MONTH], how="left"
    )
    invoice_kwh = F.coalesce(F.col("invoice_kwh"), F.lit(0.0))
    gap_kwh = F.coalesce(F.col("gap_kwh"), F.lit(0.0))
    estimated = F.coalesce(F.col("estimated_invoice_kwh"), F.lit(0.0)) + gap_kwh
    energy = invoice_kwh + gap_kwh
    return joined.select(
        "site_id",
        MONTH,
        energy.alias("energy_kwh"),
        F.when(energy > 0, estimated / energy)
        .otherwise(F.lit(0.0))
        .alias("estimated_energy_share"),
        F.coalesce(F.col("it_energy_kwh"), F.lit(0.0)).alias("it_energy_kwh"),
    )


def overlaps_months(df: DataFrame, months: DataFrame) -> DataFrame:
    """Rows whose [period_start, period_end) (or, if inverted, period_start) touches a month."""
    m = months.select(F.col(MONTH).alias("_m"))
    return df.join(F.broadcast(m), on=_touches_month("_m"), how="left_semi")


def _touches_month(month: str) -> Column:
    """[period_start, period_end) (or, if inverted, period_start) touches the month."""
    month_start = F.col(month).cast(T.TimestampType())
    return (F.col("period_start") < month_end(month)) & (
        F.greatest(F.col("period_end"), F.col("period_start") + F.expr("INTERVAL 1 MICROSECOND"))
        > month_start
    )
