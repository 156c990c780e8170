"""Load reference tables: shipped CSVs, or a user's replacement of the same name.

Reference tables are small (tens of thousands of rows at most): they are read on
the driver, validated strictly, and handed to Spark for broadcast joins.
"""

from __future__ import annotations

import csv
import importlib.resources
import io
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from carbon_core import schemas
from carbon_core.errors import InputError
from carbon_core.hadoop import HadoopFiles, join

# Read as package resources: they work from a wheel, a zip on --py-files or a source tree.
SHIPPED_PACKAGE = "carbon_core.reference"
SHIPPED_FOLDER = "data"

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


def shipped_text(name: str) -> str:
    """The text of a shipped reference table (e.g. 'fuel_factors.csv')."""
    resource = importlib.resources.files(SHIPPED_PACKAGE).joinpath(SHIPPED_FOLDER, name)
    if not resource.is_file():
        raise InputError(f"reference table not found: shipped {name}")
    return resource.read_text(encoding="utf-8")


def shipped_label(name: str) -> str:
    """How the run log names a shipped table: its place in the package."""
    return f"{SHIPPED_PACKAGE.replace('.', '/')}/{SHIPPED_FOLDER}/{name}"


def _read_reference_csv(
    text: str, name: str, file: str, schema: T.StructType
) -> list[tuple[object, ...]]:
    """Parse and validate one reference CSV's text; errors name the file, line and column."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [f.name for f in schema.fields if f.name not in header]
    if missing:
        raise InputError(f"reference table {file} lacks column(s): {', '.join(missing)}")
    rows = []
    for line_number, record in enumerate(reader, start=2):
        values: list[object] = []
        for field in schema.fields:
            text_value = (record.get(field.name) or "").strip()
            if text_value == "":
                if (name, field.name) in _NULLABLE:
                    values.append(None)
                    continue
                raise InputError(
                    f"reference table {file}, line {line_number}: column {field.name} is empty"
                )
            try:
                values.append(_convert(text_value, field.dataType))
            except ValueError as error:
                raise InputError(
                    f"reference table {file}, line {line_number}: column {field.name} "
                    f"has invalid value {text_value!r} ({error})"
                ) from None
        rows.append(tuple(values))
    if name == "grid_factors.csv":
        bad = sorted({str(r[0]) for r in rows} - _GRID_LEVELS)
        if bad:
            raise InputError(f"reference table {file}: column level has unknown value(s) {bad}")
    if name == "zip_to_egrid.csv":
        rows = [(str(r[0]).zfill(5), r[1]) for r in rows]
    return rows


def load_reference_tables(spark: SparkSession, override_dir: str | None = None) -> ReferenceTables:
    """Load reference tables; a file of the same name in override_dir (a URI or a local
    path) replaces the shipped one."""
    overrides = HadoopFiles(spark, override_dir) if override_dir is not None else None
    if overrides is not None and override_dir is not None and not overrides.is_dir(override_dir):
        raise InputError(f"reference folder not found: {override_dir}")
    frames: dict[str, DataFrame] = {}
    files: dict[str, str] = {}
    for name, schema in REFERENCE_FILES.items():
        candidate = join(override_dir, name) if override_dir is not None else None
        if overrides is not None and candidate is not None and overrides.exists(candidate):
            label, text = candidate, overrides.read_text(candidate)
        else:
            label, text = shipped_label(name), shipped_text(name)
        rows = _read_reference_csv(text, name, label, schema)
        frames[name.removesuffix(".csv")] = spark.createDataFrame(rows, schema)
        files[name] = label
    return ReferenceTables(files=files, **frames)
