"""Landing zone -> bronze tables + quarantine (typing, dataset rules, foreign keys, duplicates)."""

from carbon_core.ingest.bronze import (
    INGEST_ORDER,
    DatasetReport,
    IngestReport,
    bronze_months,
    ingest_dataset,
    ingest_landing,
    read_bronze,
)
from carbon_core.ingest.landing import read_landing
from carbon_core.ingest.rules import validate

__all__ = [
    "INGEST_ORDER",
    "DatasetReport",
    "IngestReport",
    "bronze_months",
    "ingest_dataset",
    "ingest_landing",
    "read_bronze",
    "read_landing",
    "validate",
]
