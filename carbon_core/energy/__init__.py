"""Site energy per month: invoices, price estimates, gap filling from telemetry."""

from carbon_core.energy.site_energy import (
    gap_filled_energy,
    invoice_energy_by_month,
    invoice_quarantine,
    price_invoices,
    site_hourly_it,
    site_month_energy,
)

__all__ = [
    "gap_filled_energy",
    "invoice_energy_by_month",
    "invoice_quarantine",
    "price_invoices",
    "site_hourly_it",
    "site_month_energy",
]
