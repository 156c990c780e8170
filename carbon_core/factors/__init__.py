"""Geospatial emission-factor resolution: site codes, eGRID lookup, factor levels and years."""

from carbon_core.factors.codes import (
    normalise_code,
    normalise_zip,
    resolve_site_codes,
    reverse_geocode,
    subdivision_from_name,
)
from carbon_core.factors.resolve import (
    LEVEL_COUNTRY,
    LEVEL_EGRID,
    LEVEL_GLOBAL,
    LEVEL_SUBDIVISION,
    attach_market_zones,
    nearest_year,
    resolve_location_factors,
    resolve_residual_mix,
)

__all__ = [
    "LEVEL_COUNTRY",
    "LEVEL_EGRID",
    "LEVEL_GLOBAL",
    "LEVEL_SUBDIVISION",
    "attach_market_zones",
    "nearest_year",
    "normalise_code",
    "normalise_zip",
    "resolve_location_factors",
    "resolve_residual_mix",
    "resolve_site_codes",
    "reverse_geocode",
    "subdivision_from_name",
]
