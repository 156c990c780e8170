"""carbonlake: carbon accounting for data-center and cloud operators on Spark and Delta Lake."""

from __future__ import annotations

__version__ = "0.1.0"
