"""Rows of the small datasets (one CSV file each), valid and malformed.

Rows are dicts of text, built on the driver from the plan and from the daily IT
energy of each site (a small aggregate of the generated telemetry), so that invoices,
water and contracts are consistent with the racks' telemetry.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from carbon_core.reference.tables import shipped_text
from carbonlake_tools.generate.plan import (
    PRODUCTS,
    Site,
    WorldPlan,
    internal_account,
    rng,
    same_day_months_later,
)

Row = dict[str, str | None]
DailyEnergy = dict[str, dict[dt.date, float]]  # site_id -> day -> IT kWh


@dataclass(frozen=True)
class Table:
    """A small dataset's rows: valid ones, then the malformed ones (with their kind)."""

    columns: tuple[str, ...]
    valid: list[Row]
    malformed: list[tuple[str, Row]]

    @property
    def rows(self) -> list[Row]:
        """Every row to write, valid first."""
        return self.valid + [row for _, row in self.malformed]


def text_date(day: dt.date) -> str:
    """A date as YYYY-MM-DD."""
    return day.isoformat()


def text_ts(day: dt.date) -> str:
    """Midnight UTC of a date as an ISO-8601 timestamp."""
    return f"{day.isoformat()}T00:00:00Z"


def text_num(value: float, digits: int) -> str:
    """A number with a fixed number of decimals."""
    return f"{value:.{digits}f}"


def malformed_count(n_valid: int, share: float) -> int:
    """About `share` of the rows, at least one when share > 0."""
    if share <= 0:
        return 0
    return max(1, round(n_valid * share))


def _corrupt(
    valid: list[Row],
    kinds: tuple[str, ...],
    count: int,
    r: random.Random,
    make: Mapping[str, object],
) -> list[tuple[str, Row]]:
    """`count` malformed rows, kinds in turn, each a corrupted copy of a random valid row."""
    out: list[tuple[str, Row]] = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        row = dict(r.choice(valid)) if valid else {}
        change = make[kind]
        row.update(change(row, i) if callable(change) else change)  # type: ignore[arg-type]
        out.append((kind, row))
    return out


# --- clusters, sites, accounts, catalog -----------------------------------------------

CLUSTER_COLUMNS = ("cluster_id", "kind", "launch_date", "name")
SITE_COLUMNS = (
    "site_id",
    "cluster_id",
    "country_code",
    "subdivision_code",
    "postal_code",
    "latitude",
    "longitude",
    "design_pue",
    "building_embodied_kgco2e",
    "building_in_service_date",
)
ACCOUNT_COLUMNS = ("account_id", "payer_account_id", "is_internal", "name")
CATALOG_COLUMNS = ("product_code", "kind", "allocation_unit", "runs_on", "owner_account_id")


def clusters_table(plan: WorldPlan, share: float) -> Table:
    """The clusters dataset."""
    valid: list[Row] = [
        {
            "cluster_id": c.cluster_id,
            "kind": c.kind,
            "launch_date": text_date(c.launch_date),
            "name": c.name,
        }
        for c in plan.clusters
    ]
    bad = {
        "bad_kind": {"cluster_id": "il-central-1", "kind": "zone", "name": "Israel (Tel Aviv)"},
        "missing_cluster_id": {"cluster_id": None, "name": "Middle East (UAE)"},
        "bad_date": {"cluster_id": "af-south-1", "launch_date": "2020-04-31"},
        "missing_launch_date": {"cluster_id": "me-south-1", "launch_date": None},
    }
    count = malformed_count(len(valid), share)
    return Table(
        CLUSTER_COLUMNS, valid, _corrupt(valid, tuple(bad), count, rng(plan.seed, "bad-c"), bad)
    )


def _site_row(s: Site) -> Row:
    return {
        "site_id": s.site_id,
        "cluster_id": s.cluster_id,
        "country_code": s.country_code,
        "subdivision_code": s.subdivision_code,
        "postal_code": s.postal_code,
        "latitude": None if s.latitude is None else text_num(s.latitude, 4),
        "longitude": None if s.longitude is None else text_num(s.longitude, 4),
        "design_pue": text_num(s.design_pue, 2),
        "building_embodied_kgco2e": text_num(s.building_embodied_kgco2e, 1),
        "building_in_service_date": (
            None if s.building_in_service_date is None else text_date(s.building_in_service_date)
        ),
    }


def sites_table(plan: WorldPlan, share: float) -> Table:
    """The sites dataset."""
    valid = [_site_row(s) for s in plan.sites]
    bad = {
        "unknown_cluster": lambda row, i: {
            "site_id": f"apse3-cgk-{i}",
            "cluster_id": "ap-southeast-3",
        },
        "missing_cluster_id": lambda row, i: {"site_id": f"bad-site-{i}", "cluster_id": None},
        "bad_latitude": lambda row, i: {"site_id": f"bad-site-{i}", "latitude": "45°50'N"},
        "missing_site_id": {"site_id": None},
        "bad_date": lambda row, i: {
            "site_id": f"bad-site-{i}",
            "building_in_service_date": "2015-13-01",
        },
        "bad_pue": lambda row, i: {"site_id": f"bad-site-{i}", "design_pue": "1,2"},
    }
    count = malformed_count(len(valid), share)
    return Table(
        SITE_COLUMNS, valid, _corrupt(valid, tuple(bad), count, rng(plan.seed, "bad-s"), bad)
    )


def accounts_table(plan: WorldPlan, share: float) -> Table:
    """The accounts dataset."""
    valid: list[Row] = [
        {
            "account_id": a.account_id,
            "payer_account_id": a.payer_account_id,
            "is_internal": "true" if a.is_internal else "false",
            "name": a.name,
        }
        for a in plan.accounts
    ]
    # Unused 12-digit ids starting with 8 (every valid id starts with 0-9 at random).
    known = {a.account_id for a in plan.accounts}
    fresh = (f"8{i:011d}" for i in range(10**6) if f"8{i:011d}" not in known)
    bad = {
        "missing_payer": lambda row, i: {"account_id": next(fresh), "payer_account_id": None},
        "unknown_payer": lambda row, i: {
            "account_id": next(fresh),
            "payer_account_id": next(fresh),
        },
        "bad_boolean": lambda row, i: {"account_id": next(fresh), "is_internal": "yes"},
        "missing_account_id": {"account_id": None},
        "missing_is_internal": lambda row, i: {"account_id": next(fresh), "is_internal": None},
    }
    count = malformed_count(len(valid), share)
    return Table(
        ACCOUNT_COLUMNS, valid, _corrupt(valid, tuple(bad), count, rng(plan.seed, "bad-a"), bad)
    )


def catalog_table(plan: WorldPlan, share: float) -> Table:
    """The service_catalog dataset."""
    valid: list[Row] = [
        {
            "product_code": p.product_code,
            "kind": p.kind,
            "allocation_unit": p.allocation_unit,
            "runs_on": p.runs_on,
            "owner_account_id": (
                internal_account(plan.accounts, p.owner_key).account_id if p.owner_key else None
            ),
        }
        for p in PRODUCTS
    ]
    owner = internal_account(plan.accounts, "lambda").account_id
    bad = {
        "bad_kind": {"product_code": "AmazonEKS", "kind": "managed", "runs_on": None},
        "missing_runs_on": {
            "product_code": "AmazonECS",
            "kind": "non_foundational",
            "allocation_unit": "Task-Hours",
            "runs_on": None,
            "owner_account_id": owner,
        },
        "missing_allocation_unit": {
            "product_code": "AmazonEFS",
            "kind": "foundational",
            "allocation_unit": None,
            "runs_on": None,
            "owner_account_id": None,
        },
        "missing_owner": {
            "product_code": "AmazonMQ",
            "kind": "non_foundational",
            "allocation_unit": "Broker-Hours",
            "runs_on": "AmazonEC2",
            "owner_account_id": None,
        },
        "unknown_runs_on": {
            "product_code": "AmazonSageMaker",
            "kind": "non_foundational",
            "allocation_unit": "ML-Hours",
            "runs_on": "AmazonGPU",
            "owner_account_id": owner,
        },
    }
    count = malformed_count(len(valid), share)
    return Table(
        CATALOG_COLUMNS, valid, _corrupt(valid, tuple(bad), count, rng(plan.seed, "bad-p"), bad)
    )


# --- business units ----------------------------------------------------------------

BUSINESS_UNIT_COLUMNS = ("account_id", "business_unit", "cost_center", "tags")
# External payers' business units, in turn by payer; internal accounts form Platform.
# conf/local.yaml's example targets name these.
EXTERNAL_BUSINESS_UNITS: tuple[tuple[str, str], ...] = (
    ("Retail", "RET"),
    ("Media", "MED"),
    ("Financial Services", "FIN"),
)
INTERNAL_BUSINESS_UNIT = ("Platform", "PLT")
# The edge-only payer's accounts (with CloudFront usage) are left unmapped on purpose.
UNMAPPED_KEYS = frozenset({"edge"})


def _tag_text(value: str) -> str:
    return "-".join(value.lower().replace("(", "").replace(")", "").replace("'", "").split())


def business_units_table(plan: WorldPlan, share: float) -> Table:
    """The business_units dataset: every account but the edge-only payer's, by payer."""
    payers = [a for a in plan.accounts if a.account_id == a.payer_account_id]
    external_payers = [a.payer_account_id for a in payers if not a.is_internal]
    valid: list[Row] = []
    for account in plan.accounts:
        if account.key in UNMAPPED_KEYS:
            continue
        if account.is_internal:
            (unit, code), owner = INTERNAL_BUSINESS_UNIT, f"platform-{account.key}"
            env = "prod"
        else:
            index = external_payers.index(account.payer_account_id)
            unit, code = EXTERNAL_BUSINESS_UNITS[index % len(EXTERNAL_BUSINESS_UNITS)]
            owner = _tag_text(account.key)
            env = account.name.removeprefix(account.key).strip()  # "prod", "(management)"...
        production = account.account_id == account.payer_account_id or env == "prod"
        valid.append(
            {
                "account_id": account.account_id,
                "business_unit": unit,
                "cost_center": f"{code}-{100 if production else 200}",
                "tags": f"env={_tag_text(env)};owner={owner}",
            }
        )
    known = {a.account_id for a in plan.accounts}
    fresh = (f"8{i:011d}" for i in range(10**6) if f"8{i:011d}" not in known)
    bad = {
        "missing_account_id": {"account_id": None},
        "missing_business_unit": {"business_unit": None},
        "unknown_account": lambda row, i: {"account_id": next(fresh)},
        "duplicate_account": {},  # an exact copy: one of the two is kept
        "tags_without_equals": {"tags": "env;owner=nobody"},
        "tags_empty_key": {"tags": "env=prod;=orphan"},
    }
    # Every kind at least once: the table is small, and each kind is a rule to exercise.
    count = max(malformed_count(len(valid), share), len(bad)) if share > 0 else 0
    return Table(
        BUSINESS_UNIT_COLUMNS,
        valid,
        _corrupt(valid, tuple(bad), count, rng(plan.seed, "bad-bu"), bad),
    )


# --- electricity prices and invoices -------------------------------------------------

PRICE_COLUMNS = ("country_code", "subdivision_code", "year", "price_per_kwh", "currency")
PRICE_GROWTH = 0.03
# (country, subdivision, price in the first generated year, currency, years):
# "all" = every year around the data; "no_last" = the latest year missing (the
# nearest earlier year applies); "last_only" = only the latest year (the nearest
# later year applies to earlier invoices).
_PRICES: tuple[tuple[str, str, float, str, str], ...] = (
    ("US", "", 0.0812, "USD", "all"),
    ("US", "US-VA", 0.0791, "USD", "no_last"),
    ("US", "US-OH", 0.0745, "USD", "all"),
    ("US", "US-CA", 0.1962, "USD", "all"),
    ("CA", "", 0.1120, "CAD", "all"),
    ("CA", "CA-QC", 0.0541, "CAD", "all"),
    ("DE", "", 0.1720, "EUR", "all"),
    ("IE", "", 0.2050, "EUR", "all"),
    ("JP", "", 21.50, "JPY", "all"),
    ("AU", "", 0.2100, "AUD", "all"),
    ("AU", "AU-NSW", 0.2350, "AUD", "all"),
    ("BR", "", 0.7100, "BRL", "last_only"),
    ("MX", "", 2.3500, "MXN", "all"),
)
PriceTable = dict[tuple[str, str], dict[int, tuple[float, str]]]


def price_table(plan: WorldPlan) -> PriceTable:
    """(country, subdivision) -> year -> (price, currency) for the years around the data."""
    r = rng(plan.seed, "prices")
    first, last = plan.start.year, plan.months[-1].year
    table: PriceTable = {}
    for country, sub, price, currency, years in _PRICES:
        chosen = range(first - 2, last + 1)
        if years == "no_last":
            chosen = range(first - 2, last)
        elif years == "last_only":
            chosen = range(last, last + 1)
        table[(country, sub)] = {
            y: (
                round(price * (1 + PRICE_GROWTH * (y - first)) * r.uniform(0.97, 1.03), 4),
                currency,
            )
            for y in chosen
        }
    return table


def prices_table(plan: WorldPlan, prices: PriceTable, share: float) -> Table:
    """The electricity_prices dataset."""
    valid: list[Row] = [
        {
            "country_code": country,
            "subdivision_code": sub or None,
            "year": str(year),
            "price_per_kwh": text_num(price, 4),
            "currency": currency,
        }
        for (country, sub), years in prices.items()
        for year, (price, currency) in sorted(years.items())
    ]
    year = str(plan.start.year)
    # Keys that no valid row uses, so a rejected row never hides a valid price.
    bad = {
        "missing_currency": {"country_code": "FR", "subdivision_code": None, "currency": None},
        "negative_price": {
            "country_code": "NL",
            "subdivision_code": None,
            "year": year,
            "price_per_kwh": "-0.1200",
            "currency": "EUR",
        },
        "bad_year": {"country_code": "SG", "subdivision_code": None, "year": f"FY{year}"},
        "missing_country": {"country_code": None, "subdivision_code": None, "year": "2019"},
        "bad_price": {
            "country_code": "ES",
            "subdivision_code": None,
            "year": year,
            "price_per_kwh": "0,15",
            "currency": "EUR",
        },
    }
    count = malformed_count(len(valid), share)
    return Table(
        PRICE_COLUMNS, valid, _corrupt(valid, tuple(bad), count, rng(plan.seed, "bad-e"), bad)
    )


def site_price(site: Site, prices: PriceTable, year: int) -> tuple[float, str] | None:
    """The price docs/methodology.md §3.2 applies to a site's amount-only invoice."""
    country = site.country_code or (site.subdivision_code or "")[:2]
    level = prices.get((country, site.subdivision_code or ""))
    if level is None:
        level = prices.get((country, ""))
    if not level:
        return None
    earlier = [y for y in level if y <= year]
    chosen = max(earlier) if earlier else min(level)
    return level[chosen]


class Energy:
    """Facility-energy estimates of sites from their daily IT energy."""

    def __init__(self, plan: WorldPlan, daily: DailyEnergy) -> None:
        self.plan = plan
        self.daily = daily
        self.days = (plan.end - plan.start).days

    def it(self, site: Site, lo: dt.date, hi: dt.date) -> float:
        """IT kWh over [lo, hi), extrapolating days outside the months at the mean rate."""
        per_day = self.daily.get(site.site_id, {})
        inside = [lo + dt.timedelta(days=i) for i in range((hi - lo).days)]
        covered = [d for d in inside if self.plan.start <= d < self.plan.end]
        known = sum(per_day.get(d, 0.0) for d in covered)
        mean = sum(per_day.values()) / self.days
        return known + mean * (len(inside) - len(covered))

    def facility(self, site: Site, lo: dt.date, hi: dt.date, pue_factor: float = 1.0) -> float:
        """Facility kWh over [lo, hi): (IT + building base load) x PUE."""
        base = site.base_load_kw * 24 * (hi - lo).days
        return (self.it(site, lo, hi) + base) * site.design_pue * pue_factor

    def annual(self, site: Site) -> float:
        """A year's facility kWh at the months' mean rate."""
        return self.facility(site, self.plan.start, self.plan.end) / self.days * 365


INVOICE_COLUMNS = (
    "invoice_id",
    "site_id",
    "period_start",
    "period_end",
    "energy_kwh",
    "amount",
    "currency",
)


def _billing_periods(site: Site, plan: WorldPlan) -> list[tuple[dt.date, dt.date]]:
    """Billing periods from the `billing_day`, starting before and ending after the months."""
    first = plan.start.replace(day=site.billing_day)
    current = first if site.billing_day == 1 else same_day_months_later(first, -1)
    periods = []
    while current < plan.end:
        nxt = same_day_months_later(current, 1)
        periods.append((current, nxt))
        current = nxt
    return periods


def invoices_table(plan: WorldPlan, energy: Energy, prices: PriceTable, share: float) -> Table:
    """The utility_invoices dataset: kWh = telemetry x PUE, some amount-only, one gap."""
    r = rng(plan.seed, "invoices")
    valid: list[Row] = []
    for site in plan.sites:
        if site.invoice_mode == "none":
            continue
        periods = _billing_periods(site, plan)
        gap = len(periods) // 2 if site.invoice_gap else -1
        for index, (lo, hi) in enumerate(periods):
            if index == gap:
                continue
            kwh = energy.facility(site, lo, hi, r.uniform(0.97, 1.05))
            amount_only = site.invoice_mode == "amount" or (
                site.invoice_mode == "mixed" and index % 2 == 1
            )
            price = site_price(site, prices, lo.year)
            for meter, part in enumerate(site.meters, start=1):
                meter_kwh = kwh * part
                row: Row = {
                    "invoice_id": f"INV-{site.site_id}-M{meter}-{lo:%Y%m%d}",
                    "site_id": site.site_id,
                    "period_start": text_date(lo),
                    "period_end": text_date(hi),
                    "energy_kwh": None if amount_only else text_num(meter_kwh, 1),
                    "amount": None,
                    "currency": None,
                }
                if price is not None and (amount_only or site.country_code == "US"):
                    row["amount"] = text_num(meter_kwh * price[0] * r.uniform(0.99, 1.01), 2)
                    row["currency"] = price[1]
                valid.append(row)
    middle = plan.months[len(plan.months) // 2]
    bad = {
        "period_end_not_after_start": lambda row, i: {
            "invoice_id": f"INV-BAD-{i:04d}",
            "period_end": row["period_start"],
        },
        "no_energy_nor_amount": lambda row, i: {
            "invoice_id": f"INV-BAD-{i:04d}",
            "energy_kwh": None,
            "amount": None,
            "currency": None,
        },
        "amount_without_currency": lambda row, i: {
            "invoice_id": f"INV-BAD-{i:04d}",
            "energy_kwh": None,
            "amount": "18250.40",
            "currency": None,
        },
        "negative_energy": lambda row, i: {
            "invoice_id": f"INV-BAD-{i:04d}",
            "energy_kwh": "-1250.0",
        },
        "unknown_site": lambda row, i: {"invoice_id": f"INV-BAD-{i:04d}", "site_id": "use1-iad-q"},
        "duplicate_invoice_id": lambda row, i: {
            "energy_kwh": text_num(float(row["energy_kwh"] or 1000.0) * 1.02, 1)
        },
        "bad_date": lambda row, i: {"invoice_id": f"INV-BAD-{i:04d}", "period_start": "15/10/2024"},
        # Parsable, but rejected by the energy step: no conversion between currencies ...
        "currency_mismatch": lambda row, i: {
            "invoice_id": f"INV-BAD-{i:04d}",
            "site_id": "euc1-fra-a",
            "period_start": text_date(middle),
            "period_end": text_date(middle + dt.timedelta(days=10)),
            "energy_kwh": None,
            "amount": "4210.00",
            "currency": "USD",
        },
        # ... and no price for the site's country (GB, from the London PoP's coordinates).
        "no_price": lambda row, i: {
            "invoice_id": f"INV-BAD-{i:04d}",
            "site_id": "edge-lhr-a",
            "period_start": text_date(middle),
            "period_end": text_date(middle + dt.timedelta(days=10)),
            "energy_kwh": None,
            "amount": "1980.00",
            "currency": "GBP",
        },
    }
    with_kwh = [row for row in valid if row["energy_kwh"] is not None]
    count = malformed_count(len(valid), share)
    return Table(
        INVOICE_COLUMNS,
        valid,
        _corrupt(with_kwh, tuple(bad), count, rng(plan.seed, "bad-i"), bad),
    )


# --- fuel ----------------------------------------------------------------------------

FUEL_COLUMNS = (
    "record_id",
    "site_id",
    "period_start",
    "period_end",
    "source_type",
    "quantity",
    "unit",
)
SCF_PER_THERM = 96.7
M3_PER_THERM = 2.74
_QUARTER_GAS = (1.6, 0.8, 0.5, 1.2)  # heating season first
DIESEL_GAL_PER_RACK_YEAR = 40.0
GAS_THERM_PER_RACK_QUARTER = 10.0
REFRIGERANTS = ("R-410A", "R-134a")


def fuel_pairs() -> set[tuple[str, str]]:
    """(source_type, unit) pairs of the shipped fuel_factors.csv."""
    with io.StringIO(shipped_text("fuel_factors.csv"), newline="") as handle:
        return {(row["source_type"], row["unit"]) for row in csv.DictReader(handle)}


def _quarters(year: int) -> Iterator[tuple[int, dt.date, dt.date]]:
    for q in range(4):
        lo = dt.date(year, 3 * q + 1, 1)
        yield q, lo, same_day_months_later(lo, 3)


def fuel_table(plan: WorldPlan, share: float) -> Table:
    """The fuel_records dataset: yearly diesel, quarterly gas, refrigerant leaks."""
    r = rng(plan.seed, "fuel")
    last_year = plan.months[-1].year
    valid: list[Row] = []

    def add(site: Site, tag: str, lo: dt.date, hi: dt.date, source: str, qty: float, unit: str):
        valid.append(
            {
                "record_id": f"FUEL-{site.site_id}-{lo:%Y%m%d}-{tag}",
                "site_id": site.site_id,
                "period_start": text_date(lo),
                "period_end": text_date(hi),
                "source_type": source,
                "quantity": text_num(qty, 2),
                "unit": unit,
            }
        )

    for site in plan.sites:
        if site.fuel == "none":
            continue
        years = range(plan.start.year - 1, last_year + (0 if site.fuel == "previous_only" else 1))
        for year in years:
            # Fuel and leaks grow with the site's racks: Scope 1 stays near 1-3 % of the
            # site's footprint (generator tests, heating, refrigerant top-ups).
            diesel = site.n_racks * DIESEL_GAL_PER_RACK_YEAR * r.uniform(0.8, 1.2)
            add(site, "DSL", dt.date(year, 1, 1), dt.date(year + 1, 1, 1), "diesel", diesel, "gal")
            for q, lo, hi in _quarters(year):
                if lo >= plan.end:
                    break
                therm = site.n_racks * GAS_THERM_PER_RACK_QUARTER * _QUARTER_GAS[q]
                therm *= r.uniform(0.9, 1.1)
                per_unit = {"therm": 1.0, "scf": SCF_PER_THERM, "m3": M3_PER_THERM}
                add(
                    site,
                    "GAS",
                    lo,
                    hi,
                    "natural_gas",
                    therm * per_unit[site.gas_unit],
                    site.gas_unit,
                )
            for _ in range(r.randint(0, 2)):
                day = dt.date(year, 1, 1) + dt.timedelta(days=r.randrange(365))
                if day < plan.end:
                    leak = r.choice(REFRIGERANTS)
                    add(
                        site,
                        leak,
                        day,
                        day + dt.timedelta(days=1),
                        leak,
                        site.n_racks * r.uniform(0.02, 0.2),
                        "kg",
                    )
    # A leak inside the first month at the biggest site, whatever the draws above.
    big = plan.sites[0]
    leak_day = plan.start + dt.timedelta(days=9)
    leak_kg = round(max(1.0, big.n_racks * 0.1), 2)
    add(big, "R-410A-SVC", leak_day, leak_day + dt.timedelta(days=1), "R-410A", leak_kg, "kg")
    known = fuel_pairs()
    for row in valid:
        if (row["source_type"], row["unit"]) not in known:
            raise ValueError(f"fuel pair not in fuel_factors.csv: {row}")
    bad = {
        "unknown_unit": lambda row, i: {
            "record_id": f"FUEL-BAD-{i:04d}",
            "source_type": "diesel",
            "unit": "barrel",
        },
        "unknown_source_type": lambda row, i: {
            "record_id": f"FUEL-BAD-{i:04d}",
            "source_type": "coal",
            "unit": "short_ton",
        },
        "period_end_not_after_start": lambda row, i: {
            "record_id": f"FUEL-BAD-{i:04d}",
            "period_end": row["period_start"],
        },
        "negative_quantity": lambda row, i: {
            "record_id": f"FUEL-BAD-{i:04d}",
            "quantity": "-40.00",
        },
        "unknown_site": lambda row, i: {"record_id": f"FUEL-BAD-{i:04d}", "site_id": "use1-iad-q"},
        "missing_quantity": lambda row, i: {"record_id": f"FUEL-BAD-{i:04d}", "quantity": None},
        "bad_number": lambda row, i: {"record_id": f"FUEL-BAD-{i:04d}", "quantity": "1.200,50"},
    }
    count = malformed_count(len(valid), share)
    return Table(
        FUEL_COLUMNS, valid, _corrupt(valid, tuple(bad), count, rng(plan.seed, "bad-f"), bad)
    )


# --- energy contracts -------------------------------------------------------------------

CONTRACT_COLUMNS = (
    "contract_id",
    "instrument",
    "site_id",
    "market_boundary",
    "period_start",
    "period_end",
    "energy_kwh",
    "emission_factor_kg_per_kwh",
)
SUPPLIER_FACTOR = 0.2961  # an Irish supplier's fuel-mix disclosure, kg/kWh


def contracts_table(plan: WorldPlan, energy: Energy, share: float) -> Table:
    """The energy_contracts dataset: PPAs, RECs, GOs, a green tariff, a supplier contract."""
    r = rng(plan.seed, "contracts")
    annual: dict[str, float] = {}
    for site in plan.sites:
        boundary = plan.boundaries.get(site.site_id)
        if boundary:
            annual[boundary] = annual.get(boundary, 0.0) + energy.annual(site)
    by_id = {s.site_id: s for s in plan.sites}
    first, last = plan.start.year, plan.months[-1].year
    valid: list[Row] = []

    def add(
        cid: str,
        kind: str,
        lo: dt.date,
        hi: dt.date,
        kwh: float,
        factor: float = 0.0,
        *,
        site: str | None = None,
        boundary: str | None = None,
    ) -> None:
        valid.append(
            {
                "contract_id": cid,
                "instrument": kind,
                "site_id": site,
                "market_boundary": boundary,
                "period_start": text_ts(lo),
                "period_end": text_ts(hi),
                "energy_kwh": text_num(kwh * r.uniform(0.95, 1.05), 1),
                "emission_factor_kg_per_kwh": text_num(factor, 4),
            }
        )

    # A ten-year wind PPA in northern Virginia (SRVC), started mid-July.
    add(
        "PPA-SRVC-0001",
        "ppa",
        dt.date(2023, 7, 15),
        dt.date(2033, 7, 15),
        0.45 * annual.get("SRVC", 0.0) * 10,
        boundary="SRVC",
    )
    # Quarterly unbundled RECs in Ohio (RFCW), bought on the 10th.
    lo = same_day_months_later(plan.start.replace(day=10), -1)
    while lo < plan.end:
        add(
            f"REC-RFCW-{lo:%Y%m}",
            "rec",
            lo,
            same_day_months_later(lo, 3),
            0.35 * annual.get("RFCW", 0.0) / 4,
            boundary="RFCW",
        )
        lo = same_day_months_later(lo, 3)
    # Oregon (NWPP): far more PPA energy than the boundary uses -> surplus.
    add(
        "PPA-NWPP-0001",
        "ppa",
        dt.date(2021, 11, 20),
        dt.date(2036, 11, 20),
        3.0 * annual.get("NWPP", 0.0) * 15,
        boundary="NWPP",
    )
    for year in range(first - 1, last + 1):
        add(
            f"GT-CAMX-{year}",
            "green_tariff",
            dt.date(year, 3, 1),
            dt.date(year + 1, 3, 1),
            0.5 * annual.get("CAMX", 0.0),
            boundary="CAMX",
        )
        # Guarantees of origin: German ones per calendar year (pre-launch site included).
        add(
            f"GO-DE-{year}",
            "go",
            dt.date(year, 1, 1),
            dt.date(year + 1, 1, 1),
            0.6 * annual.get("DE", 0.0),
            boundary="DE",
        )
        add(
            f"GO-IE-{year}",
            "go",
            dt.date(year, 6, 1),
            dt.date(year + 1, 6, 1),
            0.3 * annual.get("IE", 0.0),
            boundary="IE",
        )
        # A site-bound supplier contract with a non-zero factor, April to April.
        add(
            f"SUP-euw1-dub-a-{year}",
            "supplier",
            dt.date(year, 4, 1),
            dt.date(year + 1, 4, 1),
            0.5 * energy.annual(by_id["euw1-dub-a"]),
            SUPPLIER_FACTOR,
            site="euw1-dub-a",
        )
    # An on-site solar PPA in Sydney.
    add(
        "PPA-aps2-syd-a-ONSITE",
        "ppa",
        dt.date(2022, 3, 1),
        dt.date(2037, 3, 1),
        0.08 * energy.annual(by_id["aps2-syd-a"]) * 15,
        site="aps2-syd-a",
    )
    bad = {
        "bad_instrument": lambda row, i: {
            "contract_id": f"CTR-BAD-{i:04d}",
            "instrument": "carbon_offset",
        },
        "no_site_nor_boundary": lambda row, i: {
            "contract_id": f"CTR-BAD-{i:04d}",
            "site_id": None,
            "market_boundary": None,
        },
        "negative_energy": lambda row, i: {
            "contract_id": f"CTR-BAD-{i:04d}",
            "energy_kwh": "-5000.0",
        },
        "missing_factor": lambda row, i: {
            "contract_id": f"CTR-BAD-{i:04d}",
            "emission_factor_kg_per_kwh": None,
        },
        "period_end_not_after_start": lambda row, i: {
            "contract_id": f"CTR-BAD-{i:04d}",
            "period_end": row["period_start"],
        },
        "unknown_site": lambda row, i: {
            "contract_id": f"CTR-BAD-{i:04d}",
            "site_id": "use1-iad-q",
            "market_boundary": None,
        },
        "negative_factor": lambda row, i: {
            "contract_id": f"CTR-BAD-{i:04d}",
            "emission_factor_kg_per_kwh": "-0.0100",
        },
    }
    count = malformed_count(len(valid), share)
    return Table(
        CONTRACT_COLUMNS, valid, _corrupt(valid, tuple(bad), count, rng(plan.seed, "bad-k"), bad)
    )


# --- water ---------------------------------------------------------------------------

WATER_COLUMNS = ("site_id", "period_start", "period_end", "withdrawal_l")


def water_table(plan: WorldPlan, energy: Energy, share: float) -> Table:
    """The site_water dataset: quarterly withdrawal = WUE x IT energy (WUE's definition)."""
    r = rng(plan.seed, "water")
    valid: list[Row] = []
    for site in plan.sites:
        if not site.water:
            continue
        for year in range(plan.start.year, plan.months[-1].year + 1):
            for _, lo, hi in _quarters(year):
                if hi <= plan.start or lo >= plan.end:
                    continue
                litres = site.wue_l_per_kwh * energy.it(site, lo, hi) * r.uniform(0.9, 1.1)
                valid.append(
                    {
                        "site_id": site.site_id,
                        "period_start": text_ts(lo),
                        "period_end": text_ts(hi),
                        "withdrawal_l": text_num(litres, 0),
                    }
                )
    bad = {
        "negative_withdrawal": {"withdrawal_l": "-125000"},
        "unknown_site": {"site_id": "use1-iad-q"},
        "period_end_not_after_start": lambda row, i: {"period_end": row["period_start"]},
        "missing_withdrawal": {"withdrawal_l": None},
        "bad_date": {"period_start": "2024-10-32T00:00:00Z"},
    }
    count = malformed_count(len(valid), share)
    return Table(
        WATER_COLUMNS, valid, _corrupt(valid, tuple(bad), count, rng(plan.seed, "bad-w"), bad)
    )
