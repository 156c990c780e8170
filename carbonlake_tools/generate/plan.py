"""The synthetic world's plan: clusters, sites, accounts, products and usage series.

Everything here is small (it grows with log10(scale)) and built on the driver from
seeded `random.Random` streams; the hourly datasets are produced by Spark executors
from this plan (see `frames.py`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import math
import random
from dataclasses import dataclass, field

from carbon_core.calendar import parse_month
from carbon_core.reference.tables import shipped_text

# --- sizes --------------------------------------------------------------------

BASE_SCALE = 20_000  # the smallest world: one site per region, a handful of payers
MIN_RACKS_PER_SITE = 3  # a compute, a network and a storage (or second compute) rack
LIFECYCLE_SITE_RACKS = 8  # the site that shows every rack life-cycle case
EDGE_SITE_WEIGHT = 0.25
PRELAUNCH_SITE_WEIGHT = 0.5
BIG_SITE_WEIGHT = 2.0

# Design PUE of generated sites. AWS reports a 2024 global PUE of 1.15, best sites at
# 1.04 (Europe), 1.05 (Americas) and 1.07 (Asia Pacific), and 1.25 as the public-cloud
# average (docs/sample-world.md); invoices deviate by at most -3 %..+5 % from
# IT x design PUE, so designs in [1.08, 1.36] keep every cluster-month in 1.04..1.45.
MIN_DESIGN_PUE = 1.08
MAX_DESIGN_PUE = 1.36
EDGE_DESIGN_PUE = 1.32  # colocation PoPs: the landlord's cooling, less efficient
# The sites' building embodied carbon is given for a hall of this many rack positions and
# scaled to the racks a world gives the site, so that buildings weigh what they do in real
# footprints (a few % of the total) however few racks a small world has.
BUILDING_RACK_POSITIONS = 500

# --- clusters -----------------------------------------------------------------

KIND_REGION = "region"
KIND_EDGE = "edge"
EDGE_CLUSTER_ID = "edge-global"
PRELAUNCH_CLUSTER_ID = "eusc-de-east-1"
MIDMONTH_CLUSTER_ID = "mx-central-1"
MIDMONTH_LAUNCH_DAY = 14
DARK_MONTH_CLUSTER = "sa-east-1"  # no usage at all in the last generated month
INTERNAL_ONLY_MONTH_CLUSTER = "ca-central-1"  # only internal usage in the second-to-last month

# --- products -----------------------------------------------------------------

EC2 = "AmazonEC2"
S3 = "AmazonS3"
CLOUDFRONT = "AmazonCloudFront"
BRAKET = "AmazonBraket"  # foundational, but no rack anywhere: its usage carries nothing
LAMBDA = "AWSLambda"
RDS = "AmazonRDS"
STEP_FUNCTIONS = "AWSStepFunctions"  # runs on AWSLambda: a service built on a service

FOUNDATIONAL = "foundational"
NON_FOUNDATIONAL = "non_foundational"


@dataclass(frozen=True)
class Product:
    """A service_catalog row."""

    product_code: str
    kind: str
    allocation_unit: str
    runs_on: str | None = None
    owner_key: str | None = None  # key of the internal account that operates it


PRODUCTS: tuple[Product, ...] = (
    Product(EC2, FOUNDATIONAL, "vCPU-Hours"),
    Product(S3, FOUNDATIONAL, "TB-Hours"),
    Product(CLOUDFRONT, FOUNDATIONAL, "GB"),
    Product(BRAKET, FOUNDATIONAL, "Shots"),
    Product(LAMBDA, NON_FOUNDATIONAL, "Lambda-GB-Second", runs_on=EC2, owner_key="lambda"),
    Product(RDS, NON_FOUNDATIONAL, "DB-vCPU-Hours", runs_on=EC2, owner_key="rds"),
    Product(
        STEP_FUNCTIONS,
        NON_FOUNDATIONAL,
        "State-Transitions",
        runs_on=LAMBDA,
        owner_key="stepfunctions",
    ),
)
PRODUCTS_BY_CODE: dict[str, Product] = {p.product_code: p for p in PRODUCTS}


@dataclass(frozen=True)
class LineType:
    """One kind of usage line item of a product (CUR `usage_type` without region prefix)."""

    product_code: str
    suffix: str
    unit: str
    amount_low: float
    amount_high: float
    price_usd: float
    alternate: bool  # in another unit than the product's allocation unit


LINE_TYPES: tuple[LineType, ...] = (
    LineType(EC2, "BoxUsage:m7i.large", "vCPU-Hours", 0.5, 2.0, 0.0504, False),
    LineType(EC2, "BoxUsage:m7i.xlarge", "vCPU-Hours", 1.0, 4.0, 0.0504, False),
    LineType(EC2, "BoxUsage:c7g.2xlarge", "vCPU-Hours", 2.0, 8.0, 0.0363, False),
    LineType(EC2, "BoxUsage:r7i.4xlarge", "vCPU-Hours", 4.0, 16.0, 0.0661, False),
    LineType(EC2, "BoxUsage:c7i.16xlarge", "vCPU-Hours", 16.0, 64.0, 0.0446, False),
    LineType(EC2, "DataTransfer-Out-Bytes", "GB", 0.1, 200.0, 0.09, True),
    LineType(S3, "TimedStorage-ByteHrs", "TB-Hours", 0.01, 40.0, 0.0315, False),
    LineType(S3, "TimedStorage-INT-FA-ByteHrs", "TB-Hours", 0.01, 20.0, 0.0315, False),
    LineType(S3, "Requests-Tier1", "Requests", 100.0, 1e6, 0.000005, True),
    LineType(CLOUDFRONT, "DataTransfer-Out-Bytes", "GB", 1.0, 2000.0, 0.085, False),
    LineType(CLOUDFRONT, "Requests-HTTPS", "Requests", 1e3, 1e7, 0.000001, True),
    LineType(BRAKET, "Task-Shots", "Shots", 100.0, 10_000.0, 0.00035, False),
    LineType(BRAKET, "Task", "Tasks", 1.0, 10.0, 0.3, True),
    LineType(LAMBDA, "Lambda-GB-Second", "Lambda-GB-Second", 100.0, 5e5, 0.0000166667, False),
    LineType(LAMBDA, "Lambda-GB-Second-ARM", "Lambda-GB-Second", 100.0, 2e5, 0.0000133334, False),
    LineType(LAMBDA, "Request", "Requests", 100.0, 1e6, 0.0000002, True),
    LineType(RDS, "InstanceUsage:db.r6g.xlarge", "DB-vCPU-Hours", 1.0, 4.0, 0.12, False),
    LineType(RDS, "InstanceUsage:db.m7g.4xlarge", "DB-vCPU-Hours", 4.0, 16.0, 0.105, False),
    LineType(RDS, "RDS:GP3-Storage", "GB-Mo", 1.0, 500.0, 0.000158, True),
    LineType(STEP_FUNCTIONS, "StateTransition", "State-Transitions", 100.0, 1e5, 0.000025, False),
)


@dataclass(frozen=True)
class Cluster:
    """A clusters row plus what the generator needs to shape its data."""

    cluster_id: str
    kind: str
    launch_date: dt.date
    name: str
    tz_offset: int  # hours from UTC: shapes the daily cycle
    usage_prefix: str  # CUR usage_type prefix ("" for us-east-1, as AWS does)
    price_factor: float  # regional price level for cost_usd


@dataclass(frozen=True)
class Site:
    """A sites row plus the generator's behaviour flags for it."""

    site_id: str
    cluster_id: str
    country_code: str | None
    subdivision_code: str | None
    postal_code: str | None
    latitude: float | None
    longitude: float | None
    design_pue: float
    building_embodied_kgco2e: float  # of a BUILDING_RACK_POSITIONS building; scaled to n_racks
    building_in_service_date: dt.date | None
    weight: float = 1.0
    min_racks: int = MIN_RACKS_PER_SITE
    compute_product: str = EC2
    has_storage: bool = True
    decommissioned: bool = False  # every rack retired before the first month
    zero_energy_first_month: bool = False  # racks installed but metered at 0 kWh
    lifecycle_demo: bool = False  # racks entering / retiring during the months
    invoice_mode: str = "kwh"  # kwh | amount | mixed | none
    billing_day: int = 15
    meters: tuple[float, ...] = (1.0,)
    invoice_gap: bool = False
    fuel: str = "full"  # full | previous_only | none
    gas_unit: str = "therm"
    water: bool = True
    wue_l_per_kwh: float = 0.15  # AWS's 2024 global WUE, L/kWh of IT energy
    base_load_kw: float = 0.0  # kW drawn besides the racks (lights, security of a dark hall)
    n_racks: int = 0
    rack_offset: int = 0


@dataclass(frozen=True)
class Account:
    """An accounts row."""

    account_id: str
    payer_account_id: str
    is_internal: bool
    name: str
    key: str = ""  # internal role (lambda, rds, ...) or payer name


@dataclass(frozen=True)
class Series:
    """One (payer, account, product, region) usage series with its active hour windows."""

    payer_account_id: str
    usage_account_id: str
    product_code: str
    region_code: str
    multiplier: float
    windows: tuple[tuple[int, int], ...]  # (start epoch second, hours)


@dataclass(frozen=True)
class WorldPlan:
    """Everything small about the world; hourly rows are derived from it by Spark."""

    seed: int
    scale: int
    months: tuple[dt.date, ...]
    start: dt.date
    end: dt.date  # exclusive: first day after the last month
    clusters: tuple[Cluster, ...]
    sites: tuple[Site, ...]
    accounts: tuple[Account, ...]
    series: tuple[Series, ...]
    boundaries: dict[str, str] = field(default_factory=dict)  # site_id -> market boundary

    @property
    def hours(self) -> int:
        """Hours from the first month's start to the last month's end."""
        return (self.end - self.start).days * 24

    @property
    def total_racks(self) -> int:
        """Racks of all sites (in service or not)."""
        return sum(s.n_racks for s in self.sites)

    def cluster(self, cluster_id: str) -> Cluster:
        """The cluster of an id."""
        return next(c for c in self.clusters if c.cluster_id == cluster_id)


def rng(seed: int, stream: str) -> random.Random:
    """An independent, reproducible random stream (str seeds hash with SHA-512)."""
    return random.Random(f"carbonlake:{seed}:{stream}")


def same_day_months_later(day: dt.date, count: int) -> dt.date:
    """The same day-of-month `count` months later (day must exist in every month)."""
    index = day.year * 12 + day.month - 1 + count
    return dt.date(index // 12, index % 12 + 1, day.day)


def growth(scale: int) -> float:
    """Orders of magnitude above the smallest world (0 at BASE_SCALE and below)."""
    return max(0.0, math.log10(max(scale, 1) / BASE_SCALE))


def month_list(start_month: str, months: int) -> tuple[dt.date, ...]:
    """The generated months, first days."""
    if months < 1:
        raise ValueError("months must be at least 1")
    first = parse_month(start_month)
    return tuple(same_day_months_later(first, i) for i in range(months))


# --- clusters and sites ------------------------------------------------------

_REGIONS: tuple[tuple[str, str, dt.date, int, str, float], ...] = (
    ("us-east-1", "US East (N. Virginia)", dt.date(2006, 8, 25), -5, "", 1.0),
    ("us-east-2", "US East (Ohio)", dt.date(2016, 10, 17), -5, "USE2", 1.0),
    ("us-west-1", "US West (N. California)", dt.date(2009, 12, 3), -8, "USW1", 1.16),
    ("us-west-2", "US West (Oregon)", dt.date(2011, 11, 9), -8, "USW2", 1.0),
    ("ca-central-1", "Canada (Central)", dt.date(2016, 12, 8), -5, "CAN1", 1.1),
    ("eu-central-1", "Europe (Frankfurt)", dt.date(2014, 10, 23), 1, "EUC1", 1.15),
    ("eu-west-1", "Europe (Ireland)", dt.date(2007, 12, 10), 0, "EU", 1.08),
    ("ap-northeast-1", "Asia Pacific (Tokyo)", dt.date(2011, 3, 2), 9, "APN1", 1.25),
    ("ap-southeast-2", "Asia Pacific (Sydney)", dt.date(2012, 11, 12), 10, "APS2", 1.24),
    ("sa-east-1", "South America (Sao Paulo)", dt.date(2011, 12, 14), -3, "SAE1", 1.55),
)
LIVE_REGIONS: tuple[str, ...] = tuple(r[0] for r in _REGIONS)


def _clusters(months: tuple[dt.date, ...]) -> tuple[Cluster, ...]:
    middle = months[len(months) // 2]
    last_year = months[-1].year
    regions = [Cluster(cid, KIND_REGION, d, n, tz, p, f) for cid, n, d, tz, p, f in _REGIONS]
    return (
        *regions,
        # Launches during a generated month: live in that month, pre-launch before it.
        Cluster(
            MIDMONTH_CLUSTER_ID,
            KIND_REGION,
            middle.replace(day=MIDMONTH_LAUNCH_DAY),
            "Mexico (Central)",
            -6,
            "MXC1",
            1.2,
        ),
        # Launches after every generated month: draws power while being built.
        Cluster(
            PRELAUNCH_CLUSTER_ID,
            KIND_REGION,
            dt.date(last_year + 2, 1, 1),
            "AWS European Sovereign Cloud (Germany)",
            1,
            "EUSC",
            1.2,
        ),
        Cluster(EDGE_CLUSTER_ID, KIND_EDGE, dt.date(2008, 11, 18), "Global", 0, "", 1.0),
    )


def _anchor_sites() -> list[Site]:
    """The hand-placed sites: real places, every special case of the methodology."""
    d = dt.date
    return [
        Site(
            "use1-iad-a",
            "us-east-1",
            "US",
            "US-VA",
            "20147",
            39.0438,
            -77.4874,
            1.13,
            42_000_000.0,
            d(2009, 5, 1),
            weight=BIG_SITE_WEIGHT,
            min_racks=LIFECYCLE_SITE_RACKS,
            lifecycle_demo=True,
            meters=(0.7, 0.3),  # two meters, two invoice streams that add up
            wue_l_per_kwh=0.18,
        ),
        # A subdivision but no country: the country comes from the US-VA prefix.
        Site(
            "use1-iad-b",
            "us-east-1",
            None,
            "US-VA",
            "20166",
            38.9807,
            -77.4312,
            1.16,
            30_000_000.0,
            d(2013, 9, 1),
            billing_day=8,
            wue_l_per_kwh=0.15,
        ),
        # Decommissioned: every rack retired, the building still draws some power.
        Site(
            "use1-iad-c",
            "us-east-1",
            "US",
            "US-VA",
            "20148",
            38.9668,
            -77.5196,
            1.3,
            18_000_000.0,
            d(2007, 3, 1),
            decommissioned=True,
            fuel="none",
            water=False,
            base_load_kw=2.0,
        ),
        # Fuel records for earlier years only: Scope 1 of the latest year is provisional.
        Site(
            "use2-cmh-a",
            "us-east-2",
            "US",
            "US-OH",
            "43215",
            39.9612,
            -82.9988,
            1.12,
            35_000_000.0,
            d(2016, 6, 1),
            fuel="previous_only",
            gas_unit="scf",
            wue_l_per_kwh=0.12,
        ),
        # ZIP+4; and a missing invoice in the middle (gap filled from telemetry).
        Site(
            "use2-cmh-b",
            "us-east-2",
            "US",
            "US-OH",
            "43026-1234",
            40.0334,
            -83.1582,
            1.1,
            28_000_000.0,
            d(2018, 2, 1),
            invoice_gap=True,
            billing_day=22,
        ),
        Site(
            "usw1-sjc-a",
            "us-west-1",
            "US",
            "US-CA",
            "95112",
            37.3541,
            -121.9552,
            1.2,
            26_000_000.0,
            d(2010, 4, 1),
            invoice_mode="mixed",
            wue_l_per_kwh=1.2,
        ),
        Site(
            "usw2-pdx-a",
            "us-west-2",
            "US",
            "US-OR",
            "97818",
            45.8399,
            -119.7006,
            1.08,
            40_000_000.0,
            d(2011, 5, 1),
            billing_day=1,  # this utility bills calendar months
            wue_l_per_kwh=0.15,
        ),
        # Racks installed but metered at 0 kWh in the first month: capacity weights.
        Site(
            "cac1-yul-a",
            "ca-central-1",
            "CA",
            "CA-QC",
            "H4S 1R7",
            45.5017,
            -73.5673,
            1.1,
            25_000_000.0,
            d(2016, 8, 1),
            zero_energy_first_month=True,
            billing_day=1,  # calendar-month bills: the unmetered month is billed at 0 kWh too
            gas_unit="m3",
            wue_l_per_kwh=0.2,
        ),
        Site(
            "euc1-fra-a",
            "eu-central-1",
            "DE",
            "DE-HE",
            "60314",
            50.1109,
            8.6821,
            1.12,
            33_000_000.0,
            d(2014, 6, 1),
            invoice_mode="amount",
            gas_unit="m3",
            wue_l_per_kwh=0.3,
        ),
        Site(
            "euw1-dub-a",
            "eu-west-1",
            "IE",
            "IE-D",
            "D24 X2F8",
            53.3498,
            -6.2603,
            1.08,
            31_000_000.0,
            d(2008, 1, 1),
            gas_unit="m3",
            wue_l_per_kwh=0.1,
        ),
        Site(
            "apn1-nrt-a",
            "ap-northeast-1",
            "JP",
            "JP-13",
            "135-0061",
            35.6762,
            139.6503,
            1.22,
            29_000_000.0,
            d(2011, 1, 1),
            invoice_mode="amount",
            billing_day=22,
            gas_unit="m3",
            wue_l_per_kwh=0.3,
        ),
        Site(
            "aps2-syd-a",
            "ap-southeast-2",
            "AU",
            "AU-NSW",
            "2015",
            -33.8688,
            151.2093,
            1.24,
            27_000_000.0,
            d(2012, 8, 1),
            invoice_mode="mixed",
            fuel="none",
            wue_l_per_kwh=1.5,
        ),
        Site(
            "sae1-gru-a",
            "sa-east-1",
            "BR",
            "BR-SP",
            "06460-040",
            -23.5019,
            -46.8489,
            1.32,
            24_000_000.0,
            d(2011, 9, 1),
            invoice_mode="amount",
            gas_unit="m3",
            wue_l_per_kwh=1.8,
        ),
        Site(
            "mxc1-qro-a",
            MIDMONTH_CLUSTER_ID,
            "MX",
            "MX-QUE",
            "76246",
            20.5888,
            -100.3899,
            1.28,
            22_000_000.0,
            d(2023, 6, 1),
            invoice_mode="amount",
            gas_unit="m3",
            wue_l_per_kwh=1.6,
        ),
        # Pre-launch, in the DE boundary shared with Frankfurt.
        Site(
            "eusc-ber-a",
            PRELAUNCH_CLUSTER_ID,
            "DE",
            "DE-BB",
            "14471",
            52.3906,
            13.0645,
            1.14,
            20_000_000.0,
            d(2024, 3, 1),
            weight=PRELAUNCH_SITE_WEIGHT,
            has_storage=False,
            fuel="none",
            gas_unit="m3",
        ),
        # Edge PoPs (colocation): CloudFront racks; some landlords report no water.
        # A ZIP that lost its leading zero (Boston 02110).
        Site(
            "edge-bos-a",
            EDGE_CLUSTER_ID,
            "US",
            "US-MA",
            "2110",
            42.3601,
            -71.0589,
            1.32,
            0.0,
            d(2015, 1, 1),
            weight=EDGE_SITE_WEIGHT,
            compute_product=CLOUDFRONT,
            has_storage=False,
            fuel="none",
            wue_l_per_kwh=0.05,  # the landlord reports the hall's water
        ),
        # Only coordinates (London): codes derived offline; no building date (no Scope 3).
        Site(
            "edge-lhr-a",
            EDGE_CLUSTER_ID,
            None,
            None,
            None,
            51.5072,
            -0.1276,
            1.3,
            0.0,
            None,
            weight=EDGE_SITE_WEIGHT,
            compute_product=CLOUDFRONT,
            has_storage=False,
            fuel="none",
            water=False,
        ),
        # No invoice at all: energy entirely from telemetry x design PUE.
        Site(
            "edge-nrt-b",
            EDGE_CLUSTER_ID,
            "JP",
            "JP-13",
            "100-0005",
            35.6812,
            139.7671,
            1.33,
            0.0,
            d(2016, 1, 1),
            weight=EDGE_SITE_WEIGHT,
            compute_product=CLOUDFRONT,
            has_storage=False,
            invoice_mode="none",
            fuel="none",
            water=False,
        ),
        Site(
            "edge-fra-b",
            EDGE_CLUSTER_ID,
            "DE",
            "DE-HE",
            "60549",
            50.0379,
            8.5622,
            1.3,
            0.0,
            d(2014, 1, 1),
            weight=EDGE_SITE_WEIGHT,
            compute_product=CLOUDFRONT,
            has_storage=False,
            fuel="none",
            wue_l_per_kwh=0.04,  # the landlord reports the hall's water
        ),
    ]


# Nearby real ZIPs (all present in zip_to_egrid.csv) for the sites added at larger scales.
_EXTRA_US_ZIPS: dict[str, tuple[str, ...]] = {
    "us-east-1": ("20164", "20105", "20171", "22030", "20151", "20152", "22102"),
    "us-east-2": ("43219", "43017", "43016", "43230"),
    "us-west-1": ("95054", "95134", "95131", "95110", "95035"),
    "us-west-2": ("97838", "97801"),
}
_EXTRA_EDGE: tuple[tuple[str, str, str, str, float, float], ...] = (
    ("edge-sin-a", "SG", "SG-01", "018956", 1.2903, 103.8520),
    ("edge-syd-b", "AU", "AU-NSW", "2000", -33.8651, 151.2099),
    ("edge-cdg-a", "FR", "FR-IDF", "75008", 48.8738, 2.2950),
    ("edge-iad-b", "US", "US-VA", "20147", 39.0300, -77.4700),
    ("edge-gru-a", "BR", "BR-SP", "04543-907", -23.5880, -46.6860),
    ("edge-bom-a", "IN", "IN-MH", "400051", 19.0596, 72.8295),
)


def _near_pue(design_pue: float, offset: float) -> float:
    """A sibling site's design PUE: the region's anchor plus an offset, kept in range."""
    return round(min(MAX_DESIGN_PUE, max(MIN_DESIGN_PUE, design_pue + offset)), 2)


def _extra_sites(anchors: list[Site], scale: int, seed: int) -> list[Site]:
    """More sites per region (and edge PoPs) as the world grows."""
    r = rng(seed, "sites")
    g = growth(scale)
    per_region = 1 + int(2 * g)
    extra: list[Site] = []
    for cluster_id in LIVE_REGIONS:
        own = [s for s in anchors if s.cluster_id == cluster_id]
        template = own[0]
        for i in range(max(0, per_region - len(own))):
            letter = chr(ord("d") + i) if i < 20 else f"z{i}"
            zips = _EXTRA_US_ZIPS.get(cluster_id)
            postal = zips[i % len(zips)] if zips else template.postal_code
            lat = template.latitude or 0.0
            lon = template.longitude or 0.0
            extra.append(
                Site(
                    f"{template.site_id[:-2]}-{letter}",
                    cluster_id,
                    template.country_code,
                    template.subdivision_code,
                    postal,
                    round(lat + r.uniform(-0.15, 0.15), 4),
                    round(lon + r.uniform(-0.15, 0.15), 4),
                    _near_pue(template.design_pue, r.uniform(-0.04, 0.04)),
                    round(r.uniform(20e6, 45e6), -3),
                    dt.date(r.randint(2012, 2022), r.randint(1, 12), 1),
                    billing_day=r.choice((1, 8, 15, 22)),
                    invoice_mode=r.choice(("kwh", "kwh", "kwh", "mixed")),
                    gas_unit=template.gas_unit,
                    wue_l_per_kwh=round(template.wue_l_per_kwh * r.uniform(0.6, 1.4), 2),
                )
            )
    for site_id, country, sub, postal, lat, lon in _EXTRA_EDGE[: int(g)]:
        extra.append(
            Site(
                site_id,
                EDGE_CLUSTER_ID,
                country,
                sub,
                postal,
                lat,
                lon,
                EDGE_DESIGN_PUE,
                0.0,
                dt.date(2017, 1, 1),
                weight=EDGE_SITE_WEIGHT,
                compute_product=CLOUDFRONT,
                has_storage=False,
                fuel="none",
                wue_l_per_kwh=0.05,  # the landlord reports the hall's water
            )
        )
    return extra


def _size_racks(sites: list[Site], scale: int, hours: int) -> list[Site]:
    """Racks per site so that telemetry rows (racks x hours) stay close to usage rows."""
    target = math.ceil(scale / hours)
    weights = sum(s.weight for s in sites if not s.decommissioned)
    sized: list[Site] = []
    offset = 0
    for s in sites:
        share = 0 if s.decommissioned else round(target * s.weight / weights)
        n = max(s.min_racks, share)
        building = round(s.building_embodied_kgco2e * n / BUILDING_RACK_POSITIONS, -2)
        sized.append(_replace(s, n_racks=n, rack_offset=offset, building_embodied_kgco2e=building))
        offset += n
    return sized


def _replace(site: Site, **changes: object) -> Site:
    from dataclasses import replace

    return replace(site, **changes)  # type: ignore[arg-type]


def load_zip_egrid() -> dict[str, str]:
    """The shipped ZIP -> eGRID subregion table."""
    with io.StringIO(shipped_text("zip_to_egrid.csv"), newline="") as handle:
        return {row["postal_code"]: row["egrid_subregion"] for row in csv.DictReader(handle)}


def _market_boundaries(sites: list[Site]) -> dict[str, str]:
    """site_id -> eGRID subregion (US) or country; checks that every US ZIP is real."""
    zips = load_zip_egrid()
    boundaries: dict[str, str] = {}
    for s in sites:
        country = s.country_code or (s.subdivision_code or "")[:2] or None
        if country == "US":
            zip5 = (s.postal_code or "").split("-")[0].zfill(5)
            if zip5 not in zips:
                raise ValueError(f"site {s.site_id}: ZIP {s.postal_code} not in zip_to_egrid")
            boundaries[s.site_id] = zips[zip5]
        elif country:
            boundaries[s.site_id] = country
        elif s.site_id == "edge-lhr-a":
            boundaries[s.site_id] = "GB"  # derived from coordinates by the pipeline
    return boundaries


# --- accounts -------------------------------------------------------------------

_PAYER_NAMES: tuple[str, ...] = (
    "Northwind Traders",
    "Contoso Retail",
    "Fabrikam Media",
    "Tailspin Toys",
    "Wide World Importers",
    "Adventure Works",
    "Litware Labs",
    "Proseware Analytics",
    "Woodgrove Bank",
    "Alpine Ski House",
    "Coho Vineyard",
    "Fourth Coffee",
    "Lucerne Publishing",
    "Margie's Travel",
    "Trey Research",
    "VanArsdel",
    "Wingtip Toys",
    "Humongous Insurance",
    "Blue Yonder Airlines",
    "Graphic Design Institute",
)
_LINKED_SUFFIXES: tuple[str, ...] = ("prod", "staging", "dev", "analytics", "sandbox", "data")
EDGE_ONLY_PAYER = "Relecloud Streaming"
INTERNAL_KEYS: tuple[tuple[str, str], ...] = (
    ("lambda", "Internal - AWS Lambda service"),
    ("rds", "Internal - Amazon RDS service"),
    ("stepfunctions", "Internal - AWS Step Functions service"),
    ("corp-it", "Internal - Corporate IT"),
)


def payer_name(index: int) -> str:
    """The index-th external payer's name: the list in turn, numbered after the first round."""
    name = _PAYER_NAMES[index % len(_PAYER_NAMES)]
    return name if index < len(_PAYER_NAMES) else f"{name} {index // len(_PAYER_NAMES) + 1}"


def default_payers(scale: int) -> int:
    """External payers (besides the edge-only one) of a world of this scale."""
    return min(len(_PAYER_NAMES), 4 + int(2 * growth(scale)))


def _accounts(scale: int, seed: int, payers: int | None = None) -> list[Account]:
    r = rng(seed, "accounts")
    g = growth(scale)
    used: set[str] = set()

    def new_id(leading_zero: bool = False) -> str:
        while True:
            number = r.randrange(10**10, 10**11) if leading_zero else r.randrange(10**11, 10**12)
            text = f"{number:012d}"
            if text not in used:
                used.add(text)
                return text

    accounts: list[Account] = []
    for i in range(default_payers(scale) if payers is None else payers):
        name = payer_name(i)
        payer = new_id()
        accounts.append(Account(payer, payer, False, f"{name} (management)", name))
        for j in range(1 + r.randint(1, 2 + int(g))):
            # Some ids start with 0: they must stay strings end to end.
            linked = new_id(leading_zero=(i + j) % 5 == 1)
            suffix = _LINKED_SUFFIXES[j % len(_LINKED_SUFFIXES)]
            label = suffix if j < len(_LINKED_SUFFIXES) else f"{suffix}-{j}"
            accounts.append(Account(linked, payer, False, f"{name} {label}", name))
    edge_payer = new_id()
    accounts.append(
        Account(edge_payer, edge_payer, False, f"{EDGE_ONLY_PAYER} (management)", "edge")
    )
    for j in range(2):
        accounts.append(
            Account(new_id(), edge_payer, False, f"{EDGE_ONLY_PAYER} cdn-{j + 1}", "edge")
        )
    internal_payer = new_id()
    accounts.append(
        Account(internal_payer, internal_payer, True, "Internal - Management", "internal")
    )
    for key, name in INTERNAL_KEYS:
        accounts.append(Account(new_id(), internal_payer, True, name, key))
    return accounts


def internal_account(accounts: tuple[Account, ...] | list[Account], key: str) -> Account:
    """The internal account with a role key (lambda, rds, stepfunctions, corp-it)."""
    return next(a for a in accounts if a.is_internal and a.key == key)


# --- usage series ---------------------------------------------------------------


def _windows(
    months: tuple[dt.date, ...],
    end: dt.date,
    *,
    since: dt.date | None = None,
    skip: frozenset[dt.date] = frozenset(),
) -> tuple[tuple[int, int], ...]:
    """Per month, the (start epoch, hours) the series is active in."""
    out: list[tuple[int, int]] = []
    bounds = [*months, end]
    for first, nxt in itertools.pairwise(bounds):
        if first in skip:
            continue
        lo = max(first, since) if since else first
        if lo >= nxt:
            continue
        start = dt.datetime(lo.year, lo.month, lo.day, tzinfo=dt.timezone.utc)
        out.append((int(start.timestamp()), (nxt - lo).days * 24))
    return tuple(out)


def _series(
    accounts: list[Account],
    clusters: tuple[Cluster, ...],
    months: tuple[dt.date, ...],
    end: dt.date,
    seed: int,
) -> list[Series]:
    """Who uses what where: guarantees every rule of the methodology has usage behind it."""
    r = rng(seed, "series")
    launch = {c.cluster_id: c.launch_date for c in clusters}
    dark = frozenset({months[-1]})
    internal_only = frozenset({months[-2] if len(months) > 1 else months[-1]})
    external = [a for a in accounts if not a.is_internal and a.key not in ("edge",)]
    edge_accounts = [a for a in accounts if a.key == "edge"]
    wanted: dict[tuple[str, str, str], Account] = {}

    def use(account: Account, product: str, region: str) -> None:
        wanted[(account.account_id, product, region)] = account

    # Every live region has external EC2 usage (round robin), then extra regions at random.
    for i, region in enumerate(LIVE_REGIONS):
        use(external[i % len(external)], EC2, region)
    for account in external:
        for region in r.sample(LIVE_REGIONS, k=r.randint(1, 3)):
            use(account, EC2, region)
    for (_, _, region), account in list(wanted.items()):
        for product, p in ((S3, 0.6), (LAMBDA, 0.35), (RDS, 0.3), (STEP_FUNCTIONS, 0.12)):
            if r.random() < p:
                use(account, product, region)
    # Make sure the non-foundational chain has customers in us-east-1 and eu-west-1.
    for product in (S3, LAMBDA, RDS, STEP_FUNCTIONS):
        use(external[0], product, "us-east-1")
    use(external[1 % len(external)], LAMBDA, "eu-west-1")
    use(external[1 % len(external)], BRAKET, "us-east-1")
    use(external[2 % len(external)], BRAKET, "us-west-1")
    # Lambda has no customer in sa-east-1: the owner keeps what it received there.
    for key in [k for k in wanted if k[1] == LAMBDA and k[2] == DARK_MONTH_CLUSTER]:
        del wanted[key]
    # The mid-month region from its launch day; an early-access customer in the pre-launch one.
    use(external[0], EC2, MIDMONTH_CLUSTER_ID)
    use(external[1 % len(external)], EC2, MIDMONTH_CLUSTER_ID)
    use(external[1 % len(external)], S3, MIDMONTH_CLUSTER_ID)
    use(external[2 % len(external)], EC2, PRELAUNCH_CLUSTER_ID)
    # CloudFront in the edge cluster: the edge-only payer and a few others.
    for account in [*edge_accounts, *(a for a in external if r.random() < 0.3)]:
        use(account, CLOUDFRONT, EDGE_CLUSTER_ID)

    # Internal operators use what their services run on where their services are used.
    owners = {
        p.product_code: internal_account(accounts, p.owner_key or "")
        for p in PRODUCTS
        if p.owner_key
    }
    regions_of = {code: {reg for (_, prod, reg) in wanted if prod == code} for code in owners}
    for region in regions_of[STEP_FUNCTIONS]:
        use(owners[STEP_FUNCTIONS], LAMBDA, region)
        regions_of[LAMBDA].add(region)
    for region in regions_of[LAMBDA] | {DARK_MONTH_CLUSTER}:
        use(owners[LAMBDA], EC2, region)
    for region in regions_of[RDS]:
        use(owners[RDS], EC2, region)
    corp_it = internal_account(accounts, "corp-it")
    for region in ("us-east-1", INTERNAL_ONLY_MONTH_CLUSTER):
        use(corp_it, EC2, region)
        use(corp_it, S3, region)

    series: list[Series] = []
    for (account_id, product, region), account in sorted(wanted.items()):
        skip: frozenset[dt.date] = frozenset()
        if region == DARK_MONTH_CLUSTER:
            skip = dark
        elif region == INTERNAL_ONLY_MONTH_CLUSTER and not account.is_internal:
            skip = internal_only
        since = launch[region] if region == MIDMONTH_CLUSTER_ID else None
        windows = _windows(months, end, since=since, skip=skip)
        if not windows:
            continue
        multiplier = round(math.exp(r.gauss(0.0, 0.8)), 4)
        series.append(
            Series(account.payer_account_id, account_id, product, region, multiplier, windows)
        )
    return series


def build_plan(
    scale: int, seed: int, start_month: str, months: int, payers: int | None = None
) -> WorldPlan:
    """The whole small part of the world for a scale, seed and month range; `payers`
    external payers (besides the edge-only one) instead of the scale's default_payers."""
    if scale < 1:
        raise ValueError("scale must be positive")
    if payers is not None and payers < 3:
        raise ValueError("payers must be at least 3 (the methodology's cases need them)")
    month_starts = month_list(start_month, months)
    end = same_day_months_later(month_starts[-1], 1)
    clusters = _clusters(month_starts)
    anchors = _anchor_sites()
    hours = (end - month_starts[0]).days * 24
    sites = _size_racks([*anchors, *_extra_sites(anchors, scale, seed)], scale, hours)
    accounts = _accounts(scale, seed, payers)
    series = _series(accounts, clusters, month_starts, end, seed)
    return WorldPlan(
        seed=seed,
        scale=scale,
        months=month_starts,
        start=month_starts[0],
        end=end,
        clusters=clusters,
        sites=tuple(sites),
        accounts=tuple(accounts),
        series=tuple(series),
        boundaries=_market_boundaries(sites),
    )
