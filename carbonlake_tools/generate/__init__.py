"""Synthetic world generator: a consistent landing zone for every dataset."""

from __future__ import annotations

from carbonlake_tools.generate.world import MALFORMED_SUFFIX, generate_world

__all__ = ["MALFORMED_SUFFIX", "generate_world"]
