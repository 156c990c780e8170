"""Optional dependency sets: the forecast and the report need packages that a plain
install (and so an executor that only runs the accounting) does not have."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from carbon_core.errors import CarbonlakeError

# pip install 'carbonlake[forecast]': the fits run in Python workers (applyInPandas).
FORECAST_PACKAGES: tuple[str, ...] = ("numpy", "pandas", "pyarrow", "statsmodels")
# pip install 'carbonlake[report]': drawn on the driver.
REPORT_PACKAGES: tuple[str, ...] = ("pandas", "pyarrow", "plotly")


def missing_packages(packages: Sequence[str]) -> list[str]:
    """The packages of the list that this interpreter cannot import."""
    return [name for name in packages if importlib.util.find_spec(name) is None]


def require_extra(extra: str, packages: Sequence[str]) -> None:
    """Fail with a one-line error naming the missing packages and the extra to install."""
    missing = missing_packages(packages)
    if missing:
        raise CarbonlakeError(
            f"{extra} needs {', '.join(missing)}, not installed here: "
            f"pip install 'carbonlake[{extra}]'"
        )
