"""Shipped, versioned reference tables (emission factors, ZIP lookup) and their loader."""

from carbon_core.reference.tables import REFERENCE_FILES, ReferenceTables, load_reference_tables

__all__ = ["REFERENCE_FILES", "ReferenceTables", "load_reference_tables"]
