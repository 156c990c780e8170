"""Spark Connect (docs/operations.md §2.6): the read side of the library through a local
Connect session gives the classic session's numbers.

The Connect client runs in a subprocess (tests/connect_smoke.py): a Python process with a
Connect session routes every pyspark.sql function to Connect, so it cannot also hold the
suite's classic session.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_catalog import FEB, JAN, _write_lake

from carbon_core.lake import read_table, tables
from carbon_core.reference import load_reference_tables
from carbon_core.summary import summarise_months

SMOKE = Path(__file__).with_name("connect_smoke.py")
REFERENCE = ("grid_factors", "residual_mix", "zip_to_egrid", "fuel_factors")


@pytest.fixture(scope="module")
def connect_client_available():
    # pyspark[connect]'s client dependencies (scripts/setup installs them with [dev]).
    for module in ("grpc", "grpc_status", "google.protobuf", "zstandard"):
        pytest.importorskip(module)


def test_summary_reference_and_delta_io_through_spark_connect(
    spark, tmp_path, connect_client_available
):
    lake = str(tmp_path / "lake")
    _write_lake(spark, lake)
    expected = summarise_months(
        read_table(spark, tables.ACCOUNT_EMISSIONS.uri(lake)),
        read_table(spark, tables.UNALLOCATED.uri(lake)),
        [JAN, FEB],
    )
    reference = load_reference_tables(spark)

    done = subprocess.run(
        [sys.executable, str(SMOKE), lake, str(tmp_path / "out"), "2025-01", "2025-02"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    outcome = json.loads(lines[-1])

    assert outcome["connect"] is True
    assert outcome["tags"] == ["carbonlake-stage:smoke"]  # the previous stage's is gone
    assert outcome["reference_rows"] == {n: getattr(reference, n).count() for n in REFERENCE}
    assert outcome["summaries"] == json.loads(json.dumps([dataclasses.asdict(s) for s in expected]))
    assert outcome["per_month"] == [["2025-01-01", 90.25], ["2025-02-01", 45.5]]
