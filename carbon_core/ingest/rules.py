"""Validation of landing rows: typing (try_cast), dataset rules, foreign keys, duplicate keys.

Every function here is a pure DataFrame -> DataFrame step. Rows are never
dropped: each failed rule appends its reason to the `_reasons` string (null
while a row passes everything), and `finalise` makes it the `reason` column.
A row lists all the reasons it fails, in the order of the steps (types,
required columns, dataset rules, foreign keys, duplicate key, self-references),
joined by "; ". A malformed CSV line gets only its own reason, because its
values are misaligned and any other reason would be noise.

Foreign keys are checked against the valid (bronze) rows of the parent
datasets, by left joins with the small parent tables broadcast.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from carbon_core import schemas
from carbon_core.ids import id_pattern
from carbon_core.ingest.landing import MALFORMED, RAW, RAW_VALUES, SOURCE_FILE, raw_json
from carbon_core.schemas import Dataset

# The reasons so far, joined by REASON_SEPARATOR; null while the row passes. A string,
# not an array: an array would be allocated per row and step even for valid rows.
REASONS = "_reasons"
REASON = "reason"
REASON_SEPARATOR = "; "

# --- reason texts (stable: tests, dashboards and users filter on them) --------
MALFORMED_LINE = "malformed CSV line"
DUPLICATE_KEY = "duplicate key"
PERIOD_NOT_INCREASING = "period_end not after period_start"
UNKNOWN_FUEL_FACTOR = "unknown fuel factor (source_type, unit)"
LATITUDE_OUT_OF_RANGE = "latitude out of range [-90, 90]"
LONGITUDE_OUT_OF_RANGE = "longitude out of range [-180, 180]"
PUE_BELOW_ONE = "design_pue below 1"
SUBDIVISION_MISMATCH = "subdivision_code does not match country_code"
NOT_FOUNDATIONAL = "product_code is not a foundational product"
CAPACITY_NOT_POSITIVE = "capacity not > 0"
NETWORK_CAPACITY = "network rack capacity not empty or 0"
RETIRED_BEFORE_SERVICE = "retired_date not after in_service_date"
NOT_ON_THE_HOUR = "{column} not on the hour"
USED_OUT_OF_RANGE = "used_capacity out of range [0, capacity]"
NETWORK_USED = "used_capacity given for a network rack"
PAYER_NOT_SELF_PAYING = "payer_account_id is not a payer account"
WRONG_PAYER = "usage_account_id's payer is not payer_account_id"
MISSING_ENERGY_OR_AMOUNT = "missing energy_kwh or amount with currency"
MISSING_SITE_OR_BOUNDARY = "missing site_id or market_boundary"
MALFORMED_TAGS = "malformed tags (expected key=value pairs with a non-empty key, separated by ';')"


# The ids' regex by default (ingest.id_pattern: carbon_core/ids.py).
ID_PATTERN: str = id_pattern()

# Measured timestamps checked against the plausibility horizon (contracts may run into the
# future; dates of sites and racks are not measurements).
HORIZON_COLUMNS: dict[str, tuple[str, ...]] = {
    "usage": ("usage_start",),
    "rack_telemetry": ("hour",),
    "utility_invoices": ("period_start",),
    "fuel_records": ("period_start",),
    "site_water": ("period_start",),
}
ANY_UNIT = "*"


@dataclass(frozen=True)
class Plausibility:
    """What an id and a measured value may be (config `ingest`, docs/data-contract.md §1
    and §1.2)."""

    latest: dt.datetime | None = None  # measured timestamps after this are quarantined
    usage_amount_ceilings: Mapping[str, float] = field(default_factory=lambda: {ANY_UNIT: 1.0e9})
    rack_energy_ceiling_kwh: float = 1.0e4
    # id_pattern(ingest.id_pattern); ID_PATTERN, defined below, by default
    id_pattern: str = field(default_factory=lambda: ID_PATTERN)


def after_horizon_reason(column: str) -> str:
    return f"{column} beyond the plausibility horizon (ingest.future_horizon_days)"


USAGE_ABOVE_CEILING = "usage_amount above its unit's ceiling (ingest.usage_amount_ceilings)"
RACK_ENERGY_ABOVE_CEILING = "it_energy_kwh above ingest.rack_energy_ceiling_kwh"


def plausibility_checks(dataset: Dataset, plausibility: Plausibility) -> list[Check]:
    """Reasons for values that parse but cannot be true: timestamps beyond the horizon,
    amounts above their ceiling."""
    checks: list[Check] = []
    if plausibility.latest is not None:
        latest = F.lit(plausibility.latest).cast(T.TimestampType())
        checks += [
            (F.col(c) > latest, after_horizon_reason(c))
            for c in HORIZON_COLUMNS.get(dataset.name, ())
        ]
    if dataset.name == "usage":
        ceilings = dict(plausibility.usage_amount_ceilings)
        ceiling: Column = F.lit(ceilings.pop(ANY_UNIT, float("inf")))
        for unit, value in sorted(ceilings.items()):
            ceiling = F.when(F.col("usage_unit") == unit, F.lit(value)).otherwise(ceiling)
        checks.append((F.col("usage_amount") > ceiling, USAGE_ABOVE_CEILING))
    if dataset.name == "rack_telemetry":
        checks.append(
            (
                F.col("it_energy_kwh") > F.lit(plausibility.rack_energy_ceiling_kwh),
                RACK_ENERGY_ABOVE_CEILING,
            )
        )
    return checks


# Columns holding ids, besides those named *_id.
ID_CODE_COLUMNS = ("product_code", "region_code")


def id_columns(dataset: Dataset) -> tuple[str, ...]:
    """The dataset's id columns (string columns named *_id, product and region codes)."""
    return tuple(
        f.name
        for f in dataset.schema.fields
        if isinstance(f.dataType, T.StringType)
        and (f.name.endswith("_id") or f.name in ID_CODE_COLUMNS)
    )


def invalid_id_reason(column: str) -> str:
    """'invalid id in <column>': an id outside ID_PATTERN."""
    return f"invalid id in {column} (not matching ingest.id_pattern)"


def invalid_reason(dtype: T.DataType, column: str) -> str:
    """'invalid <type> in <column>': a value that does not parse as the column's type."""
    return f"invalid {dtype.simpleString()} in {column}"


def missing_reason(column: str) -> str:
    """'missing <column>': a required value is empty."""
    return f"missing {column}"


def unknown_reason(column: str) -> str:
    """'unknown <column>': a foreign key with no valid parent row."""
    return f"unknown {column}"


def negative_reason(column: str) -> str:
    """'negative <column>': a quantity below zero."""
    return f"negative {column}"


def enum_reason(column: str, allowed: Sequence[str]) -> str:
    """'<column> not in (a, b)': a value outside its enumeration."""
    return f"{column} not in ({', '.join(allowed)})"


# --- enumerations -------------------------------------------------------------
CLUSTER_KINDS = ("region", "edge")
COMPUTE, STORAGE, NETWORK = "compute", "storage", "network"
RACK_TYPES = (COMPUTE, STORAGE, NETWORK)
CAPACITY_RACK_TYPES = (COMPUTE, STORAGE)
FOUNDATIONAL, NON_FOUNDATIONAL = "foundational", "non_foundational"
CATALOG_KINDS = (FOUNDATIONAL, NON_FOUNDATIONAL)
INSTRUMENTS = ("ppa", "rec", "go", "green_tariff", "supplier")

LATITUDE_LIMIT = 90.0
LONGITUDE_LIMIT = 180.0
MIN_PUE = 1.0

# Parents whose valid rows a dataset's foreign keys point to (self-references excluded).
PARENTS: dict[str, tuple[str, ...]] = {
    "clusters": (),
    "sites": ("clusters",),
    "accounts": (),
    "service_catalog": ("accounts",),
    "racks": ("sites", "service_catalog"),
    "rack_telemetry": ("racks",),
    "usage": ("accounts", "service_catalog", "clusters"),
    "business_units": ("accounts",),
    "electricity_prices": (),
    "utility_invoices": ("sites",),
    "fuel_records": ("sites",),
    "energy_contracts": ("sites",),
    "site_water": ("sites",),
}

# --- Column -> Column parsers -------------------------------------------------
# Years a reader can hold: a date from 1900 to 9999, an instant from 1900 to 2999 (an
# offset would carry 9999-12-31T23:00-05:00 past the year 9999 that Python, pandas and
# Arrow's datetimes end at; year 0000 would not even reach Python's datetime).
_DATE_YEAR = r"(?:19|[2-9]\d)\d{2}"
_INSTANT_YEAR = r"(?:19|2\d)\d{2}"
_DATE_RE = rf"^{_DATE_YEAR}-\d{{2}}-\d{{2}}$"
# ISO-8601: date, optional [T ]HH:MM[:SS[.fraction]], optional Z or +HH:MM offset.
_TIMESTAMP_RE = (
    rf"^({_INSTANT_YEAR}-\d{{2}}-\d{{2}})"  # 1: date
    r"(?:[T ](\d{2}:\d{2})(:\d{2}(?:\.\d{1,9})?)?)?"  # 2: HH:MM, 3: :SS.fraction
    r"(Z|[+-]\d{2}:?\d{2})?$"  # 4: offset
)
# What machines write (and Spark's cast reads exactly as the normalised form): tried first.
_CANONICAL_TIMESTAMP_RE = (
    rf"^{_INSTANT_YEAR}-\d{{2}}-\d{{2}}[T ]\d{{2}}:\d{{2}}:\d{{2}}(?:\.\d{{1,9}})?"
    r"(?:Z|[+-]\d{2}:\d{2})?$"
)
_INFINITIES = (float("inf"), float("-inf"))


# Trimmed from both ends of a landing value: what a spreadsheet or a Windows line end
# leaves around it (Spark's trim takes spaces only).
BLANKS = " \t\r\n"


def clean_text(column: Column) -> Column:
    """Trimmed string (BLANKS); empty becomes null."""
    trimmed = F.btrim(column, F.lit(BLANKS))
    return F.when(trimmed != F.lit(""), trimmed)


def parse_double(text: Column) -> Column:
    """A finite double, else null (NaN and infinities would poison every sum)."""
    value = text.try_cast(T.DoubleType())
    finite = ~F.isnan(value) & ~value.isin(*_INFINITIES)
    return F.when(finite, value)


def parse_boolean(text: Column) -> Column:
    """true/false in any case, else null."""
    lowered = F.lower(text)
    return F.when(lowered == "true", F.lit(True)).when(lowered == "false", F.lit(False))


def parse_timestamp(text: Column) -> Column:
    """ISO-8601 instant; no offset means UTC, a plain date means midnight UTC."""

    def part(group: int) -> Column:
        return F.regexp_extract(text, _TIMESTAMP_RE, group)

    normalised = F.concat(
        part(1),
        F.lit("T"),
        F.when(part(2) == "", F.lit("00:00")).otherwise(part(2)),
        F.when(part(3) == "", F.lit(":00")).otherwise(part(3)),
        F.when(part(4) == "", F.lit("Z")).otherwise(part(4)),
    )
    # The canonical form skips the four extractions (a third of telemetry's parse time).
    return F.when(text.rlike(_CANONICAL_TIMESTAMP_RE), text.try_cast(T.TimestampType())).when(
        text.rlike(_TIMESTAMP_RE), normalised.try_cast(T.TimestampType())
    )


def parse_date(text: Column) -> Column:
    """YYYY-MM-DD; a timestamp at midnight UTC (Parquet writers' dates) is accepted too."""
    as_timestamp = parse_timestamp(text)
    at_midnight = as_timestamp == F.date_trunc("day", as_timestamp)
    return F.when(text.rlike(_DATE_RE), text.try_cast(T.DateType())).when(
        at_midnight, as_timestamp.cast(T.DateType())
    )


def parse_value(text: Column, dtype: T.DataType) -> Column:
    """Typed value of cleaned text; null when it does not parse."""
    if isinstance(dtype, T.StringType):
        return text
    if isinstance(dtype, T.DoubleType):
        return parse_double(text)
    if isinstance(dtype, T.BooleanType):
        return parse_boolean(text)
    if isinstance(dtype, T.TimestampType):
        return parse_timestamp(text)
    if isinstance(dtype, T.DateType):
        return parse_date(text)
    return text.try_cast(dtype)


def on_the_hour(column: Column) -> Column:
    """True when a timestamp has no minutes, seconds or fraction."""
    return column == F.date_trunc("hour", column)


# --- DataFrame steps ----------------------------------------------------------
Check = tuple[Column, str]  # (the rule is broken, reason)
Parents = Mapping[str, DataFrame]  # dataset name -> its valid (bronze) rows


def _with_reasons(reasons: Column | None, checks: Sequence[Check]) -> Column:
    """`reasons` (null: none yet) followed by the reason of each broken check; null if none."""
    broken = [F.when(condition, F.lit(reason)) for condition, reason in checks]
    joined = F.concat_ws(REASON_SEPARATOR, *([] if reasons is None else [reasons]), *broken)
    return F.nullif(joined, F.lit(""))


def add_reasons(df: DataFrame, checks: Sequence[Check]) -> DataFrame:
    """Append a reason for each broken check (a null condition counts as passed)."""
    if not checks:
        return df
    others = [F.col(f"`{c}`") for c in df.columns if c != REASONS]
    return df.select(*others, _with_reasons(F.col(REASONS), checks).alias(REASONS))


def _typed_value(value: Column, dtype: T.DataType) -> Column:
    """A value landed with its contract type (typed Parquet): a double must be finite, a
    date or instant within the years a reader can hold (as the text parsers accept)."""
    if isinstance(dtype, T.DoubleType):
        return parse_double(value)
    if isinstance(dtype, T.TimestampType):
        return F.when(F.year(value).between(1900, 2999), value)
    if isinstance(dtype, T.DateType):
        return F.when(F.year(value).between(1900, 9999), value)
    return value


# Country and subdivision codes are compared upper-case everywhere downstream. They are
# upper-cased with the typing, before anything reads a key: "us" and "US" are one key
# to the repeated-key pre-pass as to the duplicate check.
UPPER_CASE_CODES: dict[str, tuple[str, ...]] = {
    "sites": ("country_code", "subdivision_code"),
    "electricity_prices": ("country_code", "subdivision_code"),
}


def typed_column(df: DataFrame, dataset: Dataset, name: str) -> Column:
    """One landing column as its contract type, parsed as cast_typed parses it (null when
    it does not parse)."""
    dtype = dataset.schema[name].dataType
    if dict(df.dtypes)[name] == dtype.simpleString() and not isinstance(dtype, T.StringType):
        return F.col(name)
    return parse_value(clean_text(F.col(name)), dtype)


def cast_typed(df: DataFrame, dataset: Dataset, id_regex: str | None = None) -> DataFrame:
    """Landing strings -> typed columns; unparseable values and empty required ones are reasons.

    A column that arrives already typed as the contract says (landing.py keeps typed
    Parquet columns) is taken as it is, but for NaN and infinite doubles. The codes of
    UPPER_CASE_CODES come out upper-case. Ids must match id_regex (ID_PATTERN by default).
    """
    landed = dict(df.dtypes)
    fields = dataset.schema.fields
    typed = {
        f.name
        for f in fields
        if landed[f.name] == f.dataType.simpleString() and not isinstance(f.dataType, T.StringType)
    }
    values = {
        f.name: F.col(f.name) if f.name in typed else clean_text(F.col(f.name)) for f in fields
    }
    present = {f.name: f"_present_{i}" for i, f in enumerate(fields)}
    # Two projections: the reasons read the parsed columns instead of repeating the
    # parsers, which sit inside conditionals that Spark does not deduplicate (one
    # projection would parse every value once more per reason that reads it).
    parsed = df.select(
        *(
            (
                _typed_value(values[f.name], f.dataType)
                if f.name in typed
                else parse_value(values[f.name], f.dataType)
            ).alias(f.name)
            for f in fields
        ),
        *(values[f.name].isNotNull().alias(present[f.name]) for f in fields),
        RAW_VALUES,
        SOURCE_FILE,
        MALFORMED,
    )
    invalid = [
        (F.col(present[f.name]) & F.col(f.name).isNull(), invalid_reason(f.dataType, f.name))
        for f in fields
    ]
    missing = [(~F.col(present[name]), missing_reason(name)) for name in dataset.required]
    pattern = id_regex or ID_PATTERN
    ids = [
        (F.col(name).isNotNull() & ~F.col(name).rlike(pattern), invalid_id_reason(name))
        for name in id_columns(dataset)
    ]
    upper = UPPER_CASE_CODES.get(dataset.name, ())
    return parsed.select(
        *(F.upper(F.col(c)).alias(c) if c in upper else F.col(c) for c in dataset.columns),
        RAW_VALUES,
        SOURCE_FILE,
        MALFORMED,
        _with_reasons(None, [*invalid, *missing, *ids]).alias(REASONS),
    )


def _contract(df: DataFrame, dataset: Dataset) -> DataFrame:
    """The validation steps' common output: typed columns, lineage, reasons."""
    return df.select(*dataset.columns, RAW, SOURCE_FILE, MALFORMED, REASONS)


def lookup(
    df: DataFrame,
    parent: DataFrame,
    *,
    on: Sequence[tuple[str, str]],
    flag: str,
    carry: Mapping[str, str] | None = None,
    unique: bool = True,
) -> DataFrame:
    """Left-join a parent's keys: `flag` is true where found; carried columns come along.

    `on` pairs (child column, parent column); `carry` maps new names to parent
    columns. Parents are bronze tables, unique on their key by construction;
    pass unique=False for any other table, which is then deduplicated so the
    row count never changes.
    """
    carry = dict(carry or {})
    key_names = [f"{flag}__{i}" for i in range(len(on))]
    keys = parent.select(
        *(F.col(p).alias(k) for (_, p), k in zip(on, key_names, strict=True)),
        *(F.col(p).alias(name) for name, p in carry.items()),
        F.lit(True).alias(flag),
    ).where(reduce(lambda a, b: a & b, (F.col(k).isNotNull() for k in key_names)))
    if not unique:
        keys = keys.dropDuplicates(key_names)
    pairs = zip(on, key_names, strict=True)
    condition = [F.col(f"l.{c}") == F.col(f"r.{k}") for (c, _), k in pairs]
    return (
        df.alias("l")
        .join(F.broadcast(keys).alias("r"), on=condition, how="left")
        .select("l.*", *(F.col(f"r.{name}") for name in carry), F.col(f"r.{flag}"))
    )


def _found(flag: str) -> Column:
    return F.col(flag).isNotNull()


def _unknown(column: str, flag: str) -> Check:
    return F.col(column).isNotNull() & ~_found(flag), unknown_reason(column)


def _not_in(column: str, allowed: Sequence[str]) -> Check:
    return ~F.col(column).isin(*allowed), enum_reason(column, allowed)


def _negative(column: str) -> Check:
    return F.col(column) < 0, negative_reason(column)


def _missing_when(dataset: Dataset, column: str, condition: Column) -> Check:
    """A conditionally required value is empty (an unparseable one already has its reason)."""
    dtype = dataset.schema[column].dataType
    reasons = F.split(F.col(REASONS), REASON_SEPARATOR)
    was_invalid = F.coalesce(F.array_contains(reasons, invalid_reason(dtype, column)), F.lit(False))
    # last, so the split runs only for rows that lack the value
    return condition & F.col(column).isNull() & ~was_invalid, missing_reason(column)


def _period() -> Check:
    return F.col("period_end") <= F.col("period_start"), PERIOD_NOT_INCREASING


def _with_site(df: DataFrame, parents: Parents, extra: Sequence[Check]) -> DataFrame:
    """Rules of the site-bound periodic datasets: site exists, period increases, and extra."""
    looked_up = lookup(df, parents["sites"], on=[("site_id", "site_id")], flag="_site")
    return add_reasons(looked_up, [_unknown("site_id", "_site"), _period(), *extra])


# --- dataset rules ------------------------------------------------------------


def clusters_rules(df: DataFrame, parents: Parents, fuel_factors: DataFrame) -> DataFrame:
    """kind in (region, edge)."""
    return add_reasons(df, [_not_in("kind", CLUSTER_KINDS)])


def sites_rules(df: DataFrame, parents: Parents, fuel_factors: DataFrame) -> DataFrame:
    """Cluster exists; coordinates, PUE and embodied carbon in range; subdivision in its country."""
    looked_up = lookup(df, parents["clusters"], on=[("cluster_id", "cluster_id")], flag="_c")
    prefix = F.substring_index(F.col("subdivision_code"), "-", 1)
    return add_reasons(
        looked_up,
        [
            _unknown("cluster_id", "_c"),
            (F.abs(F.col("latitude")) > LATITUDE_LIMIT, LATITUDE_OUT_OF_RANGE),
            (F.abs(F.col("longitude")) > LONGITUDE_LIMIT, LONGITUDE_OUT_OF_RANGE),
            (F.col("design_pue") < MIN_PUE, PUE_BELOW_ONE),
            _negative("building_embodied_kgco2e"),
            (prefix != F.col("country_code"), SUBDIVISION_MISMATCH),
        ],
    )


def racks_rules(df: DataFrame, parents: Parents, fuel_factors: DataFrame) -> DataFrame:
    """Site exists; type known; foundational product and capacity unless network; dates ordered."""
    with_site = lookup(df, parents["sites"], on=[("site_id", "site_id")], flag="_site")
    looked_up = lookup(
        with_site,
        parents["service_catalog"],
        on=[("product_code", "product_code")],
        flag="_product",
        carry={"_product_kind": "kind"},
    )
    hosts_service = F.col("rack_type").isin(*CAPACITY_RACK_TYPES)
    is_network = F.col("rack_type") == NETWORK
    capacity = F.col("capacity")
    return add_reasons(
        looked_up,
        [
            _unknown("site_id", "_site"),
            _not_in("rack_type", RACK_TYPES),
            _missing_when(schemas.RACKS, "product_code", hosts_service),
            _unknown("product_code", "_product"),
            (_found("_product") & (F.col("_product_kind") != FOUNDATIONAL), NOT_FOUNDATIONAL),
            _missing_when(schemas.RACKS, "capacity", hosts_service),
            (hosts_service & (capacity <= 0), CAPACITY_NOT_POSITIVE),
            (is_network & (capacity != 0), NETWORK_CAPACITY),
            _negative("embodied_kgco2e"),
            (F.col("retired_date") <= F.col("in_service_date"), RETIRED_BEFORE_SERVICE),
        ],
    )


def rack_telemetry_rules(df: DataFrame, parents: Parents, fuel_factors: DataFrame) -> DataFrame:
    """Rack exists; hour on the hour; energy >= 0; used capacity within the rack's capacity."""
    looked_up = lookup(
        df,
        parents["racks"],
        on=[("rack_id", "rack_id")],
        flag="_rack",
        carry={"_rack_type": "rack_type", "_capacity": "capacity"},
    )
    used = F.col("used_capacity")
    hosts_service = F.col("_rack_type").isin(*CAPACITY_RACK_TYPES)
    out_of_range = (used < 0) | (used > F.col("_capacity"))
    return add_reasons(
        looked_up,
        [
            _unknown("rack_id", "_rack"),
            (~on_the_hour(F.col("hour")), NOT_ON_THE_HOUR.format(column="hour")),
            _negative("it_energy_kwh"),
            _missing_when(schemas.RACK_TELEMETRY, "used_capacity", hosts_service),
            (hosts_service & out_of_range, USED_OUT_OF_RANGE),
            ((F.col("_rack_type") == NETWORK) & used.isNotNull(), NETWORK_USED),
        ],
    )


def accounts_rules(df: DataFrame, parents: Parents, fuel_factors: DataFrame) -> DataFrame:
    """No row rule beyond types; the payer check is a self-reference (accounts_self_rules)."""
    return df


def service_catalog_rules(df: DataFrame, parents: Parents, fuel_factors: DataFrame) -> DataFrame:
    """kind known; non-foundational products name runs_on and an existing owner account."""
    looked_up = lookup(
        df, parents["accounts"], on=[("owner_account_id", "account_id")], flag="_owner"
    )
    non_foundational = F.col("kind") == NON_FOUNDATIONAL
    return add_reasons(
        looked_up,
        [
            _not_in("kind", CATALOG_KINDS),
            _missing_when(schemas.SERVICE_CATALOG, "runs_on", non_foundational),
            _missing_when(schemas.SERVICE_CATALOG, "owner_account_id", non_foundational),
            _unknown("owner_account_id", "_owner"),
        ],
    )


def _with_accounts_payer(
    df: DataFrame, accounts: DataFrame, column: str, *, flag: str
) -> DataFrame:
    """Look `column` up among the accounts: `flag` where found, and that account's payer
    as `<flag>_payer`."""
    return lookup(
        df,
        accounts,
        on=[(column, "account_id")],
        flag=flag,
        carry={f"{flag}_payer": "payer_account_id"},
    )


def usage_rules(df: DataFrame, parents: Parents, fuel_factors: DataFrame) -> DataFrame:
    """Hourly start; accounts, payer link, product and region exist; amount >= 0."""
    accounts = parents["accounts"]
    with_payer = lookup(df, accounts, on=[("payer_account_id", "account_id")], flag="_payer")
    with_account = _with_accounts_payer(with_payer, accounts, "usage_account_id", flag="_account")
    with_product = lookup(
        with_account,
        parents["service_catalog"],
        on=[("product_code", "product_code")],
        flag="_product",
    )
    looked_up = lookup(
        with_product, parents["clusters"], on=[("region_code", "cluster_id")], flag="_region"
    )
    wrong_payer = _found("_account") & (F.col("_account_payer") != F.col("payer_account_id"))
    return add_reasons(
        looked_up,
        [
            (~on_the_hour(F.col("usage_start")), NOT_ON_THE_HOUR.format(column="usage_start")),
            _unknown("payer_account_id", "_payer"),
            _unknown("usage_account_id", "_account"),
            (wrong_payer, WRONG_PAYER),
            _unknown("product_code", "_product"),
            _unknown("region_code", "_region"),
            _negative("usage_amount"),
        ],
    )


TAG_SEPARATOR = ";"
TAG_KEY_VALUE = "="


def malformed_tags(tags: Column) -> Column:
    """True when a non-empty `k=v;k=v` segment lacks '=' or has an empty key (empty segments,
    e.g. after a trailing ';', are ignored); null tags are not malformed."""
    pairs = F.filter(F.split(tags, TAG_SEPARATOR), lambda pair: F.trim(pair) != "")
    return F.exists(
        pairs,
        lambda pair: (
            ~pair.contains(TAG_KEY_VALUE)
            | (F.trim(F.substring_index(pair, TAG_KEY_VALUE, 1)) == "")
        ),
    )


def business_units_rules(df: DataFrame, parents: Parents, fuel_factors: DataFrame) -> DataFrame:
    """Account exists; tags are key=value pairs."""
    looked_up = lookup(df, parents["accounts"], on=[("account_id", "account_id")], flag="_account")
    return add_reasons(
        looked_up,
        [_unknown("account_id", "_account"), (malformed_tags(F.col("tags")), MALFORMED_TAGS)],
    )


def electricity_prices_rules(df: DataFrame, parents: Parents, fuel_factors: DataFrame) -> DataFrame:
    """price >= 0 (codes are upper-cased by cast_typed)."""
    return add_reasons(df, [_negative("price_per_kwh")])


def utility_invoices_rules(df: DataFrame, parents: Parents, fuel_factors: DataFrame) -> DataFrame:
    """Site exists; period increases; kWh, or amount with currency; no negative values."""
    no_energy = F.col("energy_kwh").isNull()
    no_amount = F.col("amount").isNull() | F.col("currency").isNull()
    return _with_site(
        df,
        parents,
        [
            (no_energy & no_amount, MISSING_ENERGY_OR_AMOUNT),
            _negative("energy_kwh"),
            _negative("amount"),
        ],
    )


def fuel_records_rules(df: DataFrame, parents: Parents, fuel_factors: DataFrame) -> DataFrame:
    """Site exists; period increases; quantity >= 0; (source_type, unit) has a fuel factor."""
    with_factor = lookup(
        df,
        fuel_factors,
        on=[("source_type", "source_type"), ("unit", "unit")],
        flag="_factor",
        unique=False,
    )
    has_fuel = F.col("source_type").isNotNull() & F.col("unit").isNotNull()
    return _with_site(
        with_factor,
        parents,
        [_negative("quantity"), (has_fuel & ~_found("_factor"), UNKNOWN_FUEL_FACTOR)],
    )


def energy_contracts_rules(df: DataFrame, parents: Parents, fuel_factors: DataFrame) -> DataFrame:
    """Instrument known; site or market boundary; site exists; period increases; no negatives."""
    no_scope = F.col("site_id").isNull() & F.col("market_boundary").isNull()
    looked_up = lookup(df, parents["sites"], on=[("site_id", "site_id")], flag="_site")
    return add_reasons(
        looked_up,
        [
            _not_in("instrument", INSTRUMENTS),
            (no_scope, MISSING_SITE_OR_BOUNDARY),
            _unknown("site_id", "_site"),
            _period(),
            _negative("energy_kwh"),
            _negative("emission_factor_kg_per_kwh"),
        ],
    )


def site_water_rules(df: DataFrame, parents: Parents, fuel_factors: DataFrame) -> DataFrame:
    """Site exists; period increases; withdrawal >= 0."""
    return _with_site(df, parents, [_negative("withdrawal_l")])


Rules = Callable[[DataFrame, Parents, DataFrame], DataFrame]
DATASET_RULES: dict[str, Rules] = {
    "clusters": clusters_rules,
    "sites": sites_rules,
    "racks": racks_rules,
    "rack_telemetry": rack_telemetry_rules,
    "accounts": accounts_rules,
    "service_catalog": service_catalog_rules,
    "usage": usage_rules,
    "business_units": business_units_rules,
    "electricity_prices": electricity_prices_rules,
    "utility_invoices": utility_invoices_rules,
    "fuel_records": fuel_records_rules,
    "energy_contracts": energy_contracts_rules,
    "site_water": site_water_rules,
}


def _is_clean() -> Column:
    return F.col(REASONS).isNull() & ~F.col(MALFORMED)


KEY_HASH = "_key_hash"
# Rows whose key may be repeated: only these go through the duplicate-key window.
KEY_CANDIDATE = "_key_candidate"


def _key_hash(key: Sequence[str]) -> Column:
    return F.xxhash64(*key)


def repeated_key_hashes(
    landing: DataFrame, dataset: Dataset, partitions: int | None = None
) -> DataFrame:
    """Hashes (`_key_hash`) of the parsed keys that occur more than once in the landing rows.

    Every row counts, valid or not, so the rows carrying these hashes are a superset
    of the duplicate keys among valid rows (and a hash collision only adds a few).
    The aggregation shuffles one long per row, where ranking every row by key would
    shuffle and sort whole rows with their raw text, spilling many times the input to
    disk at scale. `partitions` sets how many tasks count the hashes (each
    holds its share of the distinct keys in memory); None leaves it to the session.
    """
    keys = cast_typed(landing, dataset).select(_key_hash(dataset.key).alias(KEY_HASH))
    if partitions is not None:
        # Hashed to their counting task as they are: the keys hardly ever repeat within
        # a file, so counting before the shuffle would only add a count to every row.
        keys = keys.repartition(partitions, KEY_HASH)
    return keys.groupBy(KEY_HASH).count().where(F.col("count") > 1).select(KEY_HASH)


def _mark_key_candidates(df: DataFrame, dataset: Dataset, repeated: DataFrame | None) -> DataFrame:
    """KEY_CANDIDATE: every row when repeated is None, only rows with a repeated key hash
    otherwise, no row for a dataset without a key."""
    if not dataset.key:
        return df.withColumn(KEY_CANDIDATE, F.lit(False))
    if repeated is None:
        return df.withColumn(KEY_CANDIDATE, F.lit(True))
    found = repeated.select(KEY_HASH, F.lit(True).alias(KEY_CANDIDATE))
    hashed = df.withColumn(KEY_HASH, _key_hash(dataset.key))
    return (
        hashed.join(F.broadcast(found), on=KEY_HASH, how="left")
        .drop(KEY_HASH)
        .withColumn(KEY_CANDIDATE, F.coalesce(F.col(KEY_CANDIDATE), F.lit(False)))
    )


def flag_duplicates(df: DataFrame, key: Sequence[str]) -> DataFrame:
    """Among otherwise valid rows, keep the smallest (_source_file, raw) per key; flag the rest."""
    if not key:
        return df
    ranked_by = Window.partitionBy(*key, "_clean").orderBy(SOURCE_FILE, RAW)
    rank = F.row_number().over(ranked_by)
    return add_reasons(
        df.select("*", _is_clean().alias("_clean")),
        [(F.col("_clean") & (rank > 1), DUPLICATE_KEY)],
    ).drop("_clean")


def _kept(df: DataFrame, kept_before: DataFrame | None) -> DataFrame:
    """The rows kept so far: this ingest's clean rows and, when given, bronze's rows of
    other files (an incremental ingest's earlier files)."""
    kept = df.where(_is_clean())
    if kept_before is None:
        return kept
    return kept.select(kept_before.columns).unionByName(kept_before)


def reject_keys_kept_before(
    df: DataFrame, dataset: Dataset, kept_before: DataFrame | None
) -> DataFrame:
    """A clean row whose key bronze already holds from another file is a duplicate key:
    the row ingested first stays (docs/data-contract.md §2)."""
    if not dataset.key or kept_before is None:
        return df
    flag = "_kept_before"
    keys = kept_before.select(*dataset.key, F.lit(True).alias(flag))
    # Not broadcast: the hourly datasets' keys of a month can be many.
    joined = df.join(keys, on=list(dataset.key), how="left")
    return add_reasons(joined, [(_is_clean() & _found(flag), DUPLICATE_KEY)]).drop(flag)


def accounts_self_rules(df: DataFrame, kept_before: DataFrame | None = None) -> DataFrame:
    """A payer is a kept account whose own row names itself as payer."""
    kept = _kept(df, kept_before)
    looked_up = _with_accounts_payer(df, kept, "payer_account_id", flag="_payer")
    not_self_paying = _found("_payer") & (F.col("_payer_payer") != F.col("payer_account_id"))
    return add_reasons(
        looked_up,
        [_unknown("payer_account_id", "_payer"), (not_self_paying, PAYER_NOT_SELF_PAYING)],
    )


def service_catalog_self_rules(df: DataFrame, kept_before: DataFrame | None = None) -> DataFrame:
    """runs_on names a kept product of the catalog."""
    kept = _kept(df, kept_before)
    looked_up = lookup(df, kept, on=[("runs_on", "product_code")], flag="_runs_on")
    return add_reasons(looked_up, [_unknown("runs_on", "_runs_on")])


SELF_RULES: dict[str, Callable[[DataFrame, DataFrame | None], DataFrame]] = {
    "accounts": accounts_self_rules,
    "service_catalog": service_catalog_self_rules,
}


def finalise(df: DataFrame, dataset: Dataset) -> DataFrame:
    """The reasons -> `reason` (null: valid row); `raw` kept for rejected rows only."""
    reason = F.when(F.col(MALFORMED), F.lit(MALFORMED_LINE)).otherwise(F.col(REASONS))
    return df.select(*dataset.columns, RAW, SOURCE_FILE, reason.alias(REASON)).select(
        *dataset.columns,
        # bronze does not keep raw, so valid rows carry none
        F.when(F.col(REASON).isNotNull(), F.col(RAW)).alias(RAW),
        SOURCE_FILE,
        REASON,
    )


def check_rows(
    landing: DataFrame,
    dataset: Dataset,
    parents: Parents,
    fuel_factors: DataFrame,
    repeated_keys: DataFrame | None = None,
    plausibility: Plausibility | None = None,
) -> DataFrame:
    """Types, row rules (foreign keys included) and plausibility of every landing row,
    before key checks.

    The output has the typed columns, lineage, the reasons so far and KEY_CANDIDATE
    (see repeated_key_hashes; None marks every row of a keyed dataset a candidate).
    `raw`, the landing values as JSON, is made only where it can be needed: rows
    already rejected, key candidates (the duplicate check orders by it) and every row
    of the datasets with self-references; valid rows carry none.
    """
    # Candidates are marked before the rules so that rank_key_candidates' filter on them
    # reaches below the rules: the ranking pass checks only the candidates, not every row.
    plausibility = plausibility or Plausibility()
    marked = _mark_key_candidates(
        cast_typed(landing, dataset, plausibility.id_pattern), dataset, repeated_keys
    )
    checked = add_reasons(
        DATASET_RULES[dataset.name](marked, parents, fuel_factors),
        plausibility_checks(dataset, plausibility),
    )
    needs_raw = ~_is_clean() | F.col(KEY_CANDIDATE) | F.lit(dataset.name in SELF_RULES)
    return checked.select(
        *dataset.columns,
        F.when(needs_raw, raw_json(F.col(RAW_VALUES))).alias(RAW),
        SOURCE_FILE,
        MALFORMED,
        REASONS,
        KEY_CANDIDATE,
    )


def rank_key_candidates(checked: DataFrame, dataset: Dataset) -> DataFrame:
    """The key candidates of check_rows' output, duplicates flagged (a few rows, unless
    every row is a candidate): what resolve_keys needs a window for."""
    candidates = checked.where(F.col(KEY_CANDIDATE)).drop(KEY_CANDIDATE)
    return _contract(flag_duplicates(candidates, dataset.key), dataset)


def resolve_keys(
    checked: DataFrame,
    dataset: Dataset,
    ranked_candidates: DataFrame | None = None,
    kept_before: DataFrame | None = None,
) -> DataFrame:
    """check_rows' output -> one row per landing row with `reason` (null = valid).

    Duplicate keys are resolved among key candidates passing every other rule, so
    one row per key is kept; self-references (an account's payer, a product's
    runs_on) are then checked against those kept rows, which keeps bronze consistent.
    `ranked_candidates` is rank_key_candidates(checked), given when the caller kept it
    (evaluated inline, the candidates cost a second evaluation of `checked`).
    `kept_before`, the dataset's bronze rows of other files (typed columns), makes a key
    already there a duplicate and counts those rows as kept for the self-references.
    """
    if ranked_candidates is None:
        ranked_candidates = rank_key_candidates(checked, dataset)
    others = _contract(checked.where(~F.col(KEY_CANDIDATE)), dataset)
    deduplicated = _contract(
        reject_keys_kept_before(ranked_candidates.unionByName(others), dataset, kept_before),
        dataset,
    )
    self_rules = SELF_RULES.get(dataset.name)
    final = (
        _contract(self_rules(deduplicated, kept_before), dataset) if self_rules else deduplicated
    )
    return finalise(final, dataset)


def validate(
    landing: DataFrame,
    dataset: Dataset,
    parents: Parents,
    fuel_factors: DataFrame,
) -> DataFrame:
    """Landing rows -> typed rows with `reason` (null = valid), one row per landing row:
    check_rows then resolve_keys, every row a key candidate."""
    return resolve_keys(check_rows(landing, dataset, parents, fuel_factors), dataset)
