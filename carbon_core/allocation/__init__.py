"""Allocation: cluster -> racks -> services -> accounts (docs/methodology.md §7) and invariants."""

from __future__ import annotations

from carbon_core.allocation.engine import AllocationResult, allocate
from carbon_core.allocation.invariants import InvariantResult, assert_invariants, check_invariants
from carbon_core.allocation.racks import rack_embodied_monthly

__all__ = [
    "AllocationResult",
    "InvariantResult",
    "allocate",
    "assert_invariants",
    "check_invariants",
    "rack_embodied_monthly",
]
