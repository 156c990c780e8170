"""Customer exports: columns, rounding, edge clusters, internal accounts, layout, backfill."""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from carbon_core import schemas
from carbon_core.errors import InputError
from carbon_core.export import EXPORT_COLUMNS, export_carbon, to_export_rows

REFRESHED = dt.datetime(2025, 3, 2, 10, 30, 0)
JAN, FEB = dt.date(2025, 1, 1), dt.date(2025, 2, 1)
OLD = dt.date(2022, 1, 1)


def _gold_row(month, payer, account, internal, region, location, product, s1, s2l, s2m, s3):
    # energy and water are not exported; totals as the gold table defines them
    return (
        month, "v2.0", payer, account, internal, region, location, product,
        100.0, s1, s2l, s2m, s3, 5.0, s1 + s2l + s3, s1 + s2m + s3,
    )  # fmt: skip


@pytest.fixture(scope="module")
def gold(spark):
    rows = [
        _gold_row(JAN, "P1", "A1", False, "us-east-1", "US East (N. Virginia)", "AmazonEC2",
                  1.0, 1234.5678904, 1000.0, 0.0004),
        _gold_row(JAN, "P1", "A2", False, "edge-1", "Global", "AmazonS3", 0.0, 2.0, 1.0, 0.0),
        _gold_row(JAN, "P1", "A2", False, "edge-2", "Global", "AmazonS3", 0.0, 3.0, 1.0, 0.0),
        _gold_row(JAN, "P1", "I1", True, "us-east-1", "US East (N. Virginia)", "AWSLambda",
                  9.0, 9.0, 9.0, 9.0),
        _gold_row(FEB, "P2", "B1", False, "us-east-1", "US East (N. Virginia)", "AmazonEC2",
                  0.0, 10.0, 0.0, 0.0),
        _gold_row(OLD, "P2", "B1", False, "us-east-1", "US East (N. Virginia)", "AmazonEC2",
                  0.0, 7.0, 0.0, 0.0),
    ]  # fmt: skip
    clusters = [
        ("us-east-1", "region", dt.date(2010, 1, 1), "US East (N. Virginia)"),
        ("edge-1", "edge", dt.date(2010, 1, 1), "Global"),
        ("edge-2", "edge", dt.date(2010, 1, 1), "Global"),
    ]
    return (
        spark.createDataFrame(rows, schemas.ACCOUNT_EMISSIONS),
        spark.createDataFrame(clusters, schemas.CLUSTERS.schema),
    )


def test_export_rows_round_to_grams_and_map_edge_clusters(gold):
    emissions, clusters = gold
    rows = {
        (r["usage_period_start"], r["usage_account_id"], r["region_code"]): r
        for r in to_export_rows(emissions, clusters, refreshed_at=REFRESHED).collect()
    }
    # internal account I1 is never exported; the two edge clusters merge into 'global'
    assert set(rows) == {
        ("2025-01-01T00:00:00Z", "A1", "us-east-1"),
        ("2025-01-01T00:00:00Z", "A2", "global"),
        ("2025-02-01T00:00:00Z", "B1", "us-east-1"),
        ("2022-01-01T00:00:00Z", "B1", "us-east-1"),
    }
    a1 = rows[("2025-01-01T00:00:00Z", "A1", "us-east-1")]
    assert list(a1.asDict()) == list(EXPORT_COLUMNS)
    assert a1["usage_period_end"] == "2025-02-01T00:00:00Z"
    # LBM: 1 + 1234.5678904 + 0.0004 = 1235.5682904 kg = 1.2355682904 t -> 1.235568
    assert a1["total_lbm_emissions_value"] == Decimal("1.235568")
    # MBM: 1 + 1000 + 0.0004 = 1001.0004 kg -> 1.001000 t
    assert a1["total_mbm_emissions_value"] == Decimal("1.001000")
    assert a1["total_scope_2_lbm_emissions_value"] == Decimal("1.234568")
    # 0.0004 kg = 0.4 g rounds to 0 at gram resolution
    assert a1["total_scope_3_lbm_emissions_value"] == Decimal("0.000000")
    assert a1["total_scope_3_mbm_emissions_value"] == Decimal("0.000000")
    assert a1["total_lbm_emissions_unit"] == "MTCO2e"
    assert a1["last_refresh_timestamp"] == "2025-03-02T10:30:00Z"
    edge = rows[("2025-01-01T00:00:00Z", "A2", "global")]
    assert edge["location"] == "Global"
    assert edge["total_scope_2_lbm_emissions_value"] == Decimal("0.005000")  # (2 + 3) kg


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_export_layout_backfill_and_idempotent_reexport(spark, gold, tmp_path):
    emissions, clusters = gold
    out = tmp_path / "exports"
    report = export_carbon(
        spark, emissions, clusters, out, months=[FEB], refreshed_at=REFRESHED, log=lambda _: None
    )
    # first export of both payers backfills up to 38 months back from 2025-02 (2022-01 is
    # 38 months before 2025-02 inclusive), so P2's 2022-01 file set is written too
    assert sorted(report.backfilled_payers) == ["P1", "P2"]
    assert report.written == [("P1", "2025-01"), ("P2", "2022-01"), ("P2", "2025-02")]
    file = out / "P1" / "2025-01" / "carbon_P1_2025-01.csv"
    assert sorted(p.name for p in file.parent.iterdir()) == [file.name]
    rows = _read_csv(file)
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    assert {r["usage_account_id"] for r in rows} == {"A1", "A2"}  # no internal I1
    assert (
        next(r for r in rows if r["usage_account_id"] == "A1")["total_lbm_emissions_value"]
        == "1.235568"
    )
    before = file.read_bytes()

    # a later export of an already exported payer only writes the requested months
    again = export_carbon(
        spark, emissions, clusters, out, months=[JAN], refreshed_at=REFRESHED, log=lambda _: None
    )
    assert again.backfilled_payers == []
    assert again.written == [("P1", "2025-01")]
    assert file.read_bytes() == before
    assert not (out / "_staging").exists()


def test_export_parquet(spark, gold, tmp_path):
    emissions, clusters = gold
    out = tmp_path / "pq"
    export_carbon(
        spark, emissions, clusters, out, months=[FEB], refreshed_at=REFRESHED,
        fmt="parquet", history_months=1, log=lambda _: None,
    )  # fmt: skip
    files = sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*.parquet")
        if p.relative_to(out).parts[0] != "_manifest"  # the export manifest's own Delta files
    )
    assert files == ["P2/2025-02/carbon_P2_2025-02.parquet"]
    table = spark.read.parquet(str(out / files[0]))
    assert table.columns == list(EXPORT_COLUMNS)
    assert table.first()["total_scope_2_lbm_emissions_value"] == Decimal("0.010000")


def test_export_files_list_rows_in_key_order(spark, gold, tmp_path):
    # Rows spread over partitions in reverse key order: the file must still be sorted,
    # so that a re-export of the same month is byte-identical whatever the plan did.
    _, clusters = gold
    accounts = [f"A{i:02d}" for i in range(30)]
    rows = [
        _gold_row(JAN, "P1", a, False, "us-east-1", "US East (N. Virginia)", product,
                  0.0, 1.0, 1.0, 0.0)
        for a in reversed(accounts)
        for product in ("AmazonS3", "AmazonEC2")
    ]  # fmt: skip
    emissions = spark.createDataFrame(rows, schemas.ACCOUNT_EMISSIONS).repartition(4)
    out = tmp_path / "sorted"
    export_carbon(
        spark, emissions, clusters, out, months=[JAN], refreshed_at=REFRESHED, log=lambda _: None
    )
    listed = _read_csv(out / "P1" / "2025-01" / "carbon_P1_2025-01.csv")
    keys = [(r["usage_account_id"], r["product_code"]) for r in listed]
    assert keys == [(a, p) for a in accounts for p in ("AmazonEC2", "AmazonS3")]


# Text cells from input that a spreadsheet would run, and text that CSV must quote.
HOSTILE_LOCATIONS = {
    "A1": '=HYPERLINK("http://evil.example","click")',
    "A2": "+1+2",
    "A3": "-2+3",
    "A4": "@SUM(A1:A9)",
    "A5": "\tTabbed",
    "A6": "\rReturned",
    "A7": 'US "East", (Ohio)\nsecond line',
    "A8": "Plain, but with a comma",
}


def test_csv_exports_are_rfc_4180_with_formulas_neutralised_for_every_reader(spark, gold, tmp_path):
    _, clusters = gold
    rows = [
        _gold_row(JAN, "P1", account, False, "us-east-1", location, "AmazonEC2",
                  0.0, 1.0, 1.0, 0.0)
        for account, location in HOSTILE_LOCATIONS.items()
    ]  # fmt: skip
    emissions = spark.createDataFrame(rows, schemas.ACCOUNT_EMISSIONS)
    out = tmp_path / "hostile"
    export_carbon(
        spark, emissions, clusters, out, months=[JAN], refreshed_at=REFRESHED, log=lambda _: None
    )
    file = out / "P1" / "2025-01" / "carbon_P1_2025-01.csv"
    # OWASP: a cell starting with = + - @ tab or CR gets a leading apostrophe; others as is.
    expected = {
        a: ("'" + text if text[0] in "=+-@\t\r" else text) for a, text in HOSTILE_LOCATIONS.items()
    }
    text = file.read_text(encoding="utf-8")
    assert '"US ""East"", (Ohio)\nsecond line"' in text  # quotes doubled, field quoted
    with file.open(newline="", encoding="utf-8") as handle:
        by_python = {r["usage_account_id"]: r["location"] for r in csv.DictReader(handle)}
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv(file, dtype=str, keep_default_na=False)
    by_pandas = dict(zip(frame["usage_account_id"], frame["location"], strict=True))
    duckdb = pytest.importorskip("duckdb")
    by_duckdb = dict(
        duckdb.sql(
            f"SELECT usage_account_id, location FROM read_csv('{file}', header = true, "
            "quote = '\"', escape = '\"', all_varchar = true)"
        ).fetchall()
    )
    by_spark = {
        r["usage_account_id"]: r["location"]
        for r in spark.read.option("header", True)
        .option("multiLine", True)
        .option("escape", '"')
        .csv(str(file))
        .collect()
    }
    for reader, got in (
        ("csv", by_python),
        ("pandas", by_pandas),
        ("duckdb", by_duckdb),
        ("spark", by_spark),
    ):
        assert got == expected, reader


@pytest.mark.parametrize(
    "payer", ["..", ".", "../escape", "a/b", "a\\b", "a\nb", "", "x\x00"], ids=repr
)
def test_a_payer_id_unsafe_as_a_folder_name_is_refused_before_any_path_is_built(
    spark, gold, tmp_path, payer
):
    _, clusters = gold
    row = _gold_row(JAN, payer, "A1", False, "us-east-1", "x", "AmazonEC2", 0.0, 1.0, 1.0, 0.0)
    emissions = spark.createDataFrame([row], schemas.ACCOUNT_EMISSIONS)
    out = tmp_path / "root" / "exports"
    january = {"months": [JAN], "refreshed_at": REFRESHED, "log": lambda _: None}
    with pytest.raises(InputError, match="not safe as a folder name"):
        export_carbon(spark, emissions, clusters, out, **january)
    # nothing written, inside the export root or next to it
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
