"""Site codes (docs/methodology.md §4.1).

Country and subdivision codes are normalised (trim, upper case, empty -> null);
a missing country comes from the subdivision's prefix; a country or subdivision
still missing is derived offline from latitude/longitude (reverse_geocoder's
GeoNames cities, admin1 name mapped to ISO 3166-2 with pycountry). US postal
codes are normalised to five digits. Postal codes are never derived.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import re
import unicodedata
from collections.abc import Sequence
from functools import cache

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

US = "US"
ZIP_LENGTH = 5
# Leading digits of a postal code: "12345-6789", "12345 6789" and "501" all keep their ZIP part.
_ZIP_DIGITS = r"^\s*(\d+)"
# difflib ratio above which a GeoNames admin1 name is taken as an ISO subdivision name
# ("Hesse" ~ "Hessen" = 0.91); below it the subdivision stays unknown.
_NAME_MATCH_CUTOFF = 0.85

SITE_CODES_SCHEMA = T.StructType(
    [
        T.StructField("site_id", T.StringType()),
        T.StructField("country_code", T.StringType()),
        T.StructField("subdivision_code", T.StringType()),
    ]
)


def normalise_code(col: str | Column) -> Column:
    """Trim and upper-case a code; an empty code is null."""
    text = F.upper(F.trim(F.col(col) if isinstance(col, str) else col))
    return F.when(text != F.lit(""), text)


def subdivision_country(subdivision: str | Column) -> Column:
    """The ISO 3166-1 prefix of an ISO 3166-2 code (`US-VA` -> `US`); null without a prefix."""
    code = F.col(subdivision) if isinstance(subdivision, str) else subdivision
    prefix = F.regexp_extract(code, r"^([A-Z]{2})-", 1)
    return F.when(prefix != F.lit(""), prefix)


def normalise_zip(postal_code: str | Column) -> Column:
    """A US postal code as five digits: ZIP+4 cut, leading zeros restored; null if not numeric."""
    code = F.col(postal_code) if isinstance(postal_code, str) else postal_code
    digits = F.regexp_extract(code, _ZIP_DIGITS, 1)
    # lpad both restores lost leading zeros ("501" -> "00501") and cuts a ZIP+4 written
    # without a separator ("123456789" -> "12345").
    return F.when(digits != F.lit(""), F.lpad(digits, ZIP_LENGTH, "0"))


def _fold(name: str) -> str:
    """Accent-, case- and punctuation-insensitive form of a place name."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", " ", ascii_name.lower()).strip()


@cache
def _subdivision_names(country: str) -> tuple[dict[str, str], dict[str, str]]:
    """Folded name -> ISO 3166-2 code for a country: (top-level subdivisions, all)."""
    import pycountry

    top: dict[str, str] = {}
    every: dict[str, str] = {}
    for sub in pycountry.subdivisions.get(country_code=country) or []:
        # pycountry names look like "Madrid, Comunidad de" or "Lleida [Lérida]".
        base = re.sub(r"\[.*?\]", "", sub.name)
        aliases = {base, base.split(",")[0], *re.findall(r"\[(.*?)\]", sub.name)}
        for alias in aliases:
            folded = _fold(alias)
            if not folded:
                continue
            every.setdefault(folded, sub.code)
            if getattr(sub, "parent_code", None) is None:
                top.setdefault(folded, sub.code)
    return top, every


def subdivision_from_name(country: str, admin1: str) -> str | None:
    """The ISO 3166-2 code of a country's first-level region named `admin1` (GeoNames name)."""
    if not country or not admin1:
        return None
    folded = _fold(admin1)
    top, every = _subdivision_names(country.upper())
    for table in (top, every):
        if folded in table:
            return table[folded]
    for table in (top, every):
        close = difflib.get_close_matches(folded, sorted(table), n=1, cutoff=_NAME_MATCH_CUTOFF)
        if close:
            return table[close[0]]
    return None


def reverse_geocode(
    coordinates: Sequence[tuple[float, float]],
) -> list[tuple[str | None, str | None]]:
    """(country, subdivision) for each (latitude, longitude), offline; None where unknown."""
    if not coordinates:
        return []
    import reverse_geocoder as rg

    # mode=1: single process (no multiprocessing pool inside Spark drivers).
    # reverse_geocoder prints a progress line to stdout when it loads its city table.
    with contextlib.redirect_stdout(io.StringIO()):
        places = rg.search([(float(lat), float(lon)) for lat, lon in coordinates], mode=1)
    found: list[tuple[str | None, str | None]] = []
    for place in places:
        country = (place.get("cc") or "").strip().upper() or None
        subdivision = subdivision_from_name(country or "", place.get("admin1") or "")
        found.append((country, subdivision))
    return found


def resolve_site_codes(sites: DataFrame) -> DataFrame:
    """Sites with normalised codes: country and subdivision completed, US postal code as ZIP5.

    Output columns: every column of `sites` with `country_code`, `subdivision_code`
    replaced, plus `postal_zip5` (five-digit ZIP for US sites, else null) and
    `geocoded` (true when a code came from the coordinates). The sites table is small:
    the rows that need geocoding are collected to the driver.
    """
    country = F.coalesce(
        normalise_code("country_code"), subdivision_country(normalise_code("subdivision_code"))
    )
    coded = sites.withColumns(
        {"country_code": country, "subdivision_code": normalise_code("subdivision_code")}
    )
    needs_geocode = (
        (F.col("country_code").isNull() | F.col("subdivision_code").isNull())
        & F.col("latitude").isNotNull()
        & F.col("longitude").isNotNull()
    )
    todo = coded.filter(needs_geocode).select("site_id", "latitude", "longitude").collect()
    derived = reverse_geocode([(r["latitude"], r["longitude"]) for r in todo])
    rows = [(r["site_id"], c, s) for r, (c, s) in zip(todo, derived, strict=True)]
    geo = coded.sparkSession.createDataFrame(rows, SITE_CODES_SCHEMA)

    s, g = coded.alias("s"), geo.alias("g")
    final_country = F.coalesce(F.col("s.country_code"), F.col("g.country_code"))
    # A derived subdivision only counts inside the site's (given or derived) country.
    derived_sub = F.when(
        subdivision_country(F.col("g.subdivision_code")) == final_country,
        F.col("g.subdivision_code"),
    )
    final_sub = F.coalesce(F.col("s.subdivision_code"), derived_sub)
    geocoded = (F.col("s.country_code").isNull() & F.col("g.country_code").isNotNull()) | (
        F.col("s.subdivision_code").isNull() & derived_sub.isNotNull()
    )
    is_us = final_country == F.lit(US)
    others = [c for c in sites.columns if c not in ("country_code", "subdivision_code")]
    return s.join(F.broadcast(g), on=F.col("s.site_id") == F.col("g.site_id"), how="left").select(
        *[F.col(f"s.{c}") for c in others],
        final_country.alias("country_code"),
        final_sub.alias("subdivision_code"),
        F.when(is_us, normalise_zip(F.col("s.postal_code"))).alias("postal_zip5"),
        F.coalesce(geocoded, F.lit(False)).alias("geocoded"),
    )
