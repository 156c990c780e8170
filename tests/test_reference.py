"""Reference tables: shipped as package resources (also from a zip), replaceable from any
location the filesystem layer reads, validated with errors naming file, line and column."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from carbon_core.errors import InputError
from carbon_core.reference import load_reference_tables
from carbon_core.reference.tables import shipped_text

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_tables_load_with_their_package_labels(spark):
    reference = load_reference_tables(spark)
    assert reference.files["fuel_factors.csv"] == "carbon_core/reference/data/fuel_factors.csv"
    assert reference.fuel_factors.count() == 20  # 21 lines with the header
    diesel = reference.fuel_factors.where("source_type = 'diesel' AND unit = 'gal'").first()
    assert diesel["kg_per_unit"] == 10.240014
    # postal codes keep their leading zeros
    assert reference.zip_to_egrid.where("postal_code = '02134'").count() == 1


@pytest.mark.parametrize("as_uri", [False, True])
def test_an_override_folder_replaces_only_its_tables(spark, tmp_path, as_uri):
    folder = tmp_path / "my reference"
    folder.mkdir()
    (folder / "fuel_factors.csv").write_text(
        "source_type,unit,kg_per_unit,source\ndiesel,l,2.7,mine\n"
    )
    location = f"file://{folder}" if as_uri else str(folder)
    reference = load_reference_tables(spark, location)
    assert [tuple(r) for r in reference.fuel_factors.collect()] == [("diesel", "l", 2.7, "mine")]
    assert reference.files["fuel_factors.csv"] == f"{location}/fuel_factors.csv"
    assert reference.files["grid_factors.csv"] == "carbon_core/reference/data/grid_factors.csv"
    assert reference.grid_factors.count() == 5147


def test_a_bad_override_names_the_file_line_and_column(spark, tmp_path):
    (tmp_path / "fuel_factors.csv").write_text(
        "source_type,unit,kg_per_unit,source\ndiesel,l,2.7,a\ndiesel,gal,-1,b\n"
    )
    with pytest.raises(InputError) as error:
        load_reference_tables(spark, str(tmp_path))
    assert str(error.value) == (
        f"reference table {tmp_path}/fuel_factors.csv, line 3: column kg_per_unit has invalid "
        "value '-1' (must be a non-negative number)"
    )
    (tmp_path / "fuel_factors.csv").write_text("source_type,unit\ndiesel,l\n")
    with pytest.raises(InputError, match=r"fuel_factors.csv lacks column\(s\): kg_per_unit"):
        load_reference_tables(spark, str(tmp_path))
    with pytest.raises(InputError, match="reference folder not found"):
        load_reference_tables(spark, str(tmp_path / "missing"))


def test_shipped_tables_read_from_a_zip_as_spark_submit_ships_it(tmp_path):
    archive = tmp_path / "carbon_core.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted((ROOT / "carbon_core").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zipped.write(path, path.relative_to(ROOT).as_posix())
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import carbon_core.reference.tables as t; "
        "assert t.__file__.startswith(sys.argv[1]), t.__file__; "
        "print(len(t.shipped_text('grid_factors.csv').splitlines()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(archive)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "5148"
    assert len(shipped_text("grid_factors.csv").splitlines()) == 5148
