"""Load reference tables: shipped CSVs, or a user's replacement of the same name.

Reference tables are small (tens of thousands of rows at most): they are read on
the driver, validated strictly, and handed to Spark for broadcast joins.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from carbon_core import schemas
from carbon_core.errors import InputError

SHIPPED_DIR = Path(__file__).resolve().parent / "data"

REFERENCE_FILES: dict[str, T.StructType] = {
    "grid_factors.csv": schemas.GRID_FACTORS,
    "residual_mix.csv": schemas.RESIDUAL_MIX,
    "zip_to_egrid.csv": schemas.ZIP_TO_EGRID,
    "fuel_factors.csv": schemas.FUEL_FACTORS,
}
_NULLABLE = {
    ("grid_factors.csv", "source"),
    ("residual_mix.csv", "source"),
    ("fuel_factors.csv", "source"),
}
_GRID_LEVELS = {"egrid_subregion", "subdivision", "country", "global"}


@dataclass(frozen=True)
class ReferenceTables:
    """The four reference tables as DataFrames, with the files they came from."""

    grid_factors: DataFrame
    residual_mix: DataFrame
    zip_to_egrid: DataFrame
    fuel_factors: DataFrame
    files: dict[str, str]


def _convert(value: str, dtype: T.DataType) -> object:
    if isinstance(dtype, T.IntegerType):
        return int(value)
    if isinstance(dtype, T.DoubleType):
        number = float(value)
        if number != number or number < 0:
            raise ValueError("must be a non-negative number")
        return number
    return value


def _read_reference_csv(file: Path, schema: T.StructType) -> list[tuple[object, ...]]:
    """Parse and validate one reference CSV; errors name the file, line and column."""
    if not file.is_file():
        raise InputError(f"reference table not found: {file}")
    with file.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [f.name for f in schema.fields if f.name not in header]
        if missing:
            raise InputError(f"reference table {file} lacks column(s): {', '.join(missing)}")
        rows = []
        for line_number, record in enumerate(reader, start=2):
            values: list[object] = []
            for field in schema.fields:
                text = (record.get(field.name) or "").strip()
                if text == "":
                    if (file.name, field.name) in _NULLABLE:
                        values.append(None)
                        continue
                    raise InputError(
                        f"reference table {file}, line {line_number}: column {field.name} is empty"
                    )
                try:
                    values.append(_convert(text, field.dataType))
                except ValueError as error:
                    raise InputError(
                        f"reference table {file}, line {line_number}: column {field.name} "
                        f"has invalid value {text!r} ({error})"
                    ) from None
            rows.append(tuple(values))
    if file.name == "grid_factors.csv":
        bad = sorted({str(r[0]) for r in rows} - _GRID_LEVELS)
        if bad:
            raise InputError(f"reference table {file}: column level has unknown value(s) {bad}")
    if file.name == "zip_to_egrid.csv":
        rows = [(str(r[0]).zfill(5), r[1]) for r in rows]
    return rows


def reference_file(name: str, override_dir: str | Path | None) -> Path:
    """The file used for a reference table: the override's when it has one."""
    if override_dir is not None:
        candidate = Path(override_dir) / name
        if candidate.is_file():
            return candidate
    return SHIPPED_DIR / name


def load_reference_tables(
    spark: SparkSession, override_dir: str | Path | None = None
) -> ReferenceTables:
    """Load reference tables; a file of the same name in override_dir replaces the shipped one."""
    if override_dir is not None and not Path(override_dir).is_dir():
        raise InputError(f"reference folder not found: {override_dir}")
    frames: dict[str, DataFrame] = {}
    files: dict[str, str] = {}
    for name, schema in REFERENCE_FILES.items():
        file = reference_file(name, override_dir)
        rows = _read_reference_csv(file, schema)
        frames[name.removesuffix(".csv")] = spark.createDataFrame(rows, schema)
        files[name] = str(file)
    return ReferenceTables(files=files, **frames)
