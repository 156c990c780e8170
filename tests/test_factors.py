"""Site codes and emission-factor resolution (docs/methodology.md §4 and §5)."""

from __future__ import annotations

from helpers import frame

from carbon_core import schemas
from carbon_core.factors import (
    attach_market_zones,
    resolve_location_factors,
    resolve_residual_mix,
    resolve_site_codes,
    subdivision_from_name,
)


def test_subdivision_names_map_to_iso_codes():
    # GeoNames admin1 names -> ISO 3166-2 (accents, case, near spellings).
    assert subdivision_from_name("CA", "Quebec") == "CA-QC"
    assert subdivision_from_name("CA", "Québec") == "CA-QC"
    assert subdivision_from_name("DE", "Hesse") == "DE-HE"  # pycountry says "Hessen"
    assert subdivision_from_name("AU", "new south wales") == "AU-NSW"
    assert subdivision_from_name("US", "Virginia") == "US-VA"
    assert subdivision_from_name("US", "Atlantis") is None
    assert subdivision_from_name("", "Virginia") is None


def _sites(spark, rows):
    return frame(spark, schemas.SITES.schema, rows)


def test_codes_zip_and_factor_levels_with_year_fallback(spark):
    sites = _sites(
        spark,
        [
            # Country from the subdivision prefix; ZIP+4 cut -> 22030 -> SRVC.
            {
                "site_id": "va",
                "cluster_id": "c",
                "subdivision_code": " us-va ",
                "postal_code": "22030-1234",
            },
            # Lost leading zero: "2134" -> 02134 -> NEWE.
            {"site_id": "bos", "cluster_id": "c", "country_code": "US", "postal_code": "2134"},
            # US site without a resolvable ZIP: no eGRID, boundary US, country factor.
            {"site_id": "us_nozip", "cluster_id": "c", "country_code": "us"},
            # Australian and Canadian sites at subdivision level.
            {
                "site_id": "syd",
                "cluster_id": "c",
                "country_code": "AU",
                "subdivision_code": "AU-NSW",
            },
            {"site_id": "mtl", "cluster_id": "c", "latitude": 45.50, "longitude": -73.57},
            # Coordinates only: Frankfurt -> DE (DE-HE has no factor: country level).
            {"site_id": "fra", "cluster_id": "c", "latitude": 50.11, "longitude": 8.68},
            # Country only, factor years 2020 and 2027 around 2025/2021.
            {"site_id": "fr", "cluster_id": "c", "country_code": "fr"},
            # Nothing at all: global factor, no market boundary.
            {"site_id": "nowhere", "cluster_id": "c"},
        ],
    )
    codes = {r["site_id"]: r for r in resolve_site_codes(sites).collect()}
    assert (codes["va"]["country_code"], codes["va"]["subdivision_code"]) == ("US", "US-VA")
    assert codes["va"]["postal_zip5"] == "22030"
    assert codes["bos"]["postal_zip5"] == "02134"
    assert (codes["mtl"]["country_code"], codes["mtl"]["subdivision_code"]) == ("CA", "CA-QC")
    assert codes["mtl"]["geocoded"] is True
    assert (codes["fra"]["country_code"], codes["fra"]["subdivision_code"]) == ("DE", "DE-HE")
    assert codes["syd"]["postal_zip5"] is None  # postal codes only matter for US sites
    assert codes["nowhere"]["country_code"] is None

    zips = frame(
        spark,
        schemas.ZIP_TO_EGRID,
        [
            {"postal_code": "22030", "egrid_subregion": "SRVC"},
            {"postal_code": "02134", "egrid_subregion": "NEWE"},
        ],
    )
    grid_rows = [
        ("egrid_subregion", "SRVC", 2022, 0.30, "egrid2022"),
        ("egrid_subregion", "NEWE", 2023, 0.25, "egrid2023"),
        ("subdivision", "US-VA", 2025, 0.99, "never used: eGRID wins"),
        ("subdivision", "AU-NSW", 2023, 0.70, "nsw"),
        ("subdivision", "CA-QC", 2019, 0.002, "nir"),
        ("country", "AU", 2025, 0.60, "au"),
        ("country", "CA", 2025, 0.10, "ca"),
        ("country", "US", 2025, 0.40, "us"),
        ("country", "DE", 2024, 0.35, "de"),
        ("country", "FR", 2020, 0.05, "fr2020"),
        ("country", "FR", 2027, 0.04, "fr2027"),
        ("global", "WORLD", 2024, 0.47, "world"),
    ]
    grid = spark.createDataFrame(grid_rows, schemas.GRID_FACTORS)
    years = spark.createDataFrame([(2021,), (2025,)], "year int")
    zones = attach_market_zones(resolve_site_codes(sites), zips)
    factors = {
        (r["site_id"], r["year"]): (
            r["factor_level"],
            r["factor_zone"],
            r["factor_year"],
            r["factor_source"],
            r["location_factor"],
        )
        for r in resolve_location_factors(zones, grid, years).collect()
    }
    # 2025: eGRID 2022 is the nearest earlier year; 2021: nearest later (2022).
    assert factors[("va", 2025)] == ("egrid_subregion", "SRVC", 2022, "egrid2022", 0.30)
    assert factors[("va", 2021)] == ("egrid_subregion", "SRVC", 2022, "egrid2022", 0.30)
    assert factors[("bos", 2025)] == ("egrid_subregion", "NEWE", 2023, "egrid2023", 0.25)
    assert factors[("us_nozip", 2025)] == ("country", "US", 2025, "us", 0.40)
    # A 2023 state factor beats a 2025 country factor.
    assert factors[("syd", 2025)] == ("subdivision", "AU-NSW", 2023, "nsw", 0.70)
    assert factors[("syd", 2021)] == ("subdivision", "AU-NSW", 2023, "nsw", 0.70)
    assert factors[("mtl", 2025)] == ("subdivision", "CA-QC", 2019, "nir", 0.002)
    assert factors[("fra", 2025)] == ("country", "DE", 2024, "de", 0.35)
    # 2025: earlier 2020 beats the nearer later 2027; 2021: earlier 2020 again.
    assert factors[("fr", 2025)] == ("country", "FR", 2020, "fr2020", 0.05)
    assert factors[("nowhere", 2025)] == ("global", "WORLD", 2024, "world", 0.47)
    assert len(factors) == 16  # 8 sites x 2 years, one factor each

    boundaries = {r["site_id"]: r["market_boundary"] for r in zones.collect()}
    assert boundaries == {
        "va": "SRVC",
        "bos": "NEWE",
        "us_nozip": "US",
        "syd": "AU",
        "mtl": "CA",
        "fra": "DE",
        "fr": "FR",
        "nowhere": None,
    }

    mix = spark.createDataFrame(
        [("NEWE", 2022, 0.5, "rm22"), ("NEWE", 2026, 0.6, "rm26"), ("DE", 2027, 0.7, "de27")],
        schemas.RESIDUAL_MIX,
    )
    residual = {
        (r["market_boundary"], r["year"]): (r["residual_factor"], r["residual_year"])
        for r in resolve_residual_mix(zones, mix, years).collect()
    }
    # NEWE: 2025 -> earlier 2022; 2021 -> later 2022. DE: only later 2027.
    assert residual == {
        ("NEWE", 2025): (0.5, 2022),
        ("NEWE", 2021): (0.5, 2022),
        ("DE", 2025): (0.7, 2027),
        ("DE", 2021): (0.7, 2027),
    }
