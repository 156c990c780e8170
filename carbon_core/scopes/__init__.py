"""Site-month quantities per scope: Scope 1 (fuel), Scope 2 (LBM, MBM), building Scope 3, water."""

from carbon_core.scopes.scope1 import scope1_site_months
from carbon_core.scopes.scope2 import MarketBasedResult, check_annual_months, market_based
from carbon_core.scopes.scope3 import building_embodied_by_month, sites_without_building_date
from carbon_core.scopes.water import water_by_month

__all__ = [
    "MarketBasedResult",
    "building_embodied_by_month",
    "check_annual_months",
    "market_based",
    "scope1_site_months",
    "sites_without_building_date",
    "water_by_month",
]
