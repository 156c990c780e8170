"""The hostile corpus (tests/data/hostile/README.md): careless and malicious landing files,
each with its exact outcome. Every file is ingested, quarantined row by row with its
reason, listed as skipped with its reason, or stops the ingest with a one-line error
naming it; rows in = bronze + quarantine for every file read."""

from __future__ import annotations

import collections
import re
import shutil
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from carbon_core.config import IngestSettings
from carbon_core.errors import InputError
from carbon_core.ingest import ingest_landing
from carbon_core.ingest.ledger import read_ledger
from carbon_core.ingest.rules import invalid_id_reason
from carbon_core.lake import read_table
from tests.test_ingest import _reference

CORPUS = Path(__file__).parent / "data" / "hostile"
PARENTS = {
    "clusters/a.csv": "cluster_id,kind,launch_date,name\nc1,region,2020-01-01,Region One\n",
    "accounts/a.csv": (
        "account_id,payer_account_id,is_internal,name\np1,p1,false,Payer\nu1,p1,false,User\n"
    ),
    "service_catalog/a.csv": (
        "product_code,kind,allocation_unit,runs_on,owner_account_id\n"
        "EC2,foundational,vCPU-Hours,,\n"
    ),
}
# Every usage file may be all quarantined: the share gate has its own case below.
NO_GATE = IngestSettings(max_quarantined_share=1.0)

# An invalid id is also unknown (no parent has it); a payer also is not the account's.
INVALID_ACCOUNT = invalid_id_reason("usage_account_id") + "; unknown usage_account_id"
INVALID_PAYER = (
    invalid_id_reason("payer_account_id")
    + "; unknown payer_account_id; usage_account_id's payer is not payer_account_id"
)
INVALID_AMOUNT = "invalid double in usage_amount"
UNKNOWN_FORMAT = "unknown format (landing files are .csv, .csv.gz or .parquet)"

# file -> (bronze rows, {reason: quarantined rows}) for the files read, or the reason a
# file is skipped. Generated at test time: huge_field.csv, changed_types.parquet.
EXPECTED: dict[str, tuple[int, dict[str, int]] | str] = {
    "bom.csv": (2, {}),
    "crlf.csv": (2, {}),
    # read a line per record: the field's line break makes its two lines malformed
    "quoted_newlines_and_quotes.csv": (1, {"malformed CSV line": 2}),
    "latin1_bytes.csv": (1, {}),
    "extra_columns.csv": (1, {}),
    "missing_optional_column.csv": (1, {}),
    "missing_required_column.csv": (0, {"missing usage_amount": 1}),
    "renamed_column.csv": (0, {"missing usage_start": 1}),
    "reordered_columns.csv": (1, {}),
    "upper_case_header.csv": (1, {}),
    "timestamps_with_offsets.csv": (2, {"usage_start not on the hour": 1}),
    "timestamps_dst.csv": (4, {}),
    "timestamps_without_zone.csv": (3, {}),
    "timestamps_bad.csv": (0, {"invalid timestamp in usage_start": 3}),
    "future_timestamp.csv": (
        0,
        {"usage_start beyond the plausibility horizon (ingest.future_horizon_days)": 1},
    ),
    "numbers_special.csv": (
        2,
        {
            INVALID_AMOUNT: 4,
            "usage_amount above its unit's ceiling (ingest.usage_amount_ceilings)": 2,
            "malformed CSV line": 1,  # 1,5 unquoted is two fields
        },
    ),
    "ids_sql.csv": (0, {INVALID_ACCOUNT: 1, INVALID_PAYER: 1}),
    "ids_html.csv": (
        0,
        {INVALID_ACCOUNT: 1, invalid_id_reason("product_code") + "; unknown product_code": 1},
    ),
    "ids_formula.csv": (0, {INVALID_ACCOUNT: 4}),
    "ids_path.csv": (0, {INVALID_PAYER: 2, INVALID_ACCOUNT: 3}),
    # the unclosed quote's line is malformed too: a record ends with its line
    "malformed_lines.csv": (0, {"malformed CSV line": 2}),
    "header_only.csv": (0, {}),
    "name with spaces üñî.csv": (1, {}),
    "huge_field.csv": (1, {}),
    "changed_types.parquet": (2, {}),
    "empty.csv": "empty file (0 bytes)",
    "notes.txt": UNKNOWN_FORMAT,
    "usage.tsv": UNKNOWN_FORMAT,
    "usage.csv.bz2": UNKNOWN_FORMAT,
}

# landing -> the error's text (every one names its file).
ERRORS = {
    "semicolon_delimiter": (
        "usage/a.csv: the header names none of the usage columns (it reads "
        "'usage_start;payer_account_id;usage_account_id;product_code;region_code;usage_typ'): "
        "check the delimiter (',') and the header line"
    ),
    "blank_header_line": "accounts/a.csv: blank header line",
    "duplicate_header": "usage/a.csv: duplicate column(s) in the header: usage_amount",
    "truncated_parquet": "usage/a.parquet: not a readable Parquet file (truncated or corrupt)",
    "corrupt_parquet": "usage/a.parquet: not a readable Parquet file (truncated or corrupt)",
    "renamed_header_many_rows": (
        "ingest usage: 100% of 120 rows quarantined, mostly 'missing usage_start' (120): "
        "check the delimiter and header of its files"
    ),
}


def _write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)


def _ingest(spark, landing, lake, dataset, **options):
    """ingest_landing of one dataset; (its report, the lines it printed)."""
    lines: list[str] = []
    report = ingest_landing(
        spark,
        landing,
        lake,
        reference=_reference(spark),
        datasets=[dataset],
        log=lines.append,
        **options,
    )
    return report, lines


@pytest.fixture(scope="module")
def base_lake(spark, tmp_path_factory) -> Path:
    """A lake whose bronze holds the parents of usage."""
    root = tmp_path_factory.mktemp("hostile")
    _write(root / "landing", PARENTS)
    lake = root / "lake"
    ingest_landing(
        spark,
        root / "landing",
        lake,
        reference=_reference(spark),
        datasets=["clusters", "accounts", "service_catalog"],
        log=None,
    )
    return lake


@pytest.fixture(scope="module")
def corpus_ingest(spark, base_lake, tmp_path_factory):
    """Every usage file of the corpus in one landing, ingested once."""
    root = tmp_path_factory.mktemp("hostile_usage")
    landing, lake = root / "landing", root / "lake"
    shutil.copytree(base_lake, lake)
    shutil.copytree(CORPUS / "usage", landing / "usage")
    header = (CORPUS / "usage" / "crlf.csv").read_text().splitlines()[0]
    huge = "x" * (10 * 1024 * 1024)  # a 10 MB usage_type
    (landing / "usage" / "huge_field.csv").write_text(
        f"{header}\n2025-01-01T00:00:00Z,p1,u1,EC2,c1,{huge},vCPU-Hours,1,0.1\n"
    )
    # Parquet whose columns are all strings (the contract's timestamp and double included).
    spark.createDataFrame(
        [("2025-01-01T00:00:00Z", "p1", "u1", "EC2", "c1", "vCPU-Hours", "1.5")] * 2,
        "usage_start string, payer_account_id string, usage_account_id string, "
        "product_code string, region_code string, usage_unit string, usage_amount string",
    ).coalesce(1).write.parquet(str(root / "pq"))
    (part,) = (root / "pq").glob("part-*.parquet")
    shutil.copy(part, landing / "usage" / "changed_types.parquet")
    report, lines = _ingest(spark, landing, lake, "usage", gates=NO_GATE)
    return landing, lake, report, lines


def _by_name(entries: dict) -> dict:
    return {Path(file).name: entry for file, entry in entries.items()}


def test_the_readme_lists_every_case():
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    cases = [*EXPECTED, *ERRORS, "blank_header.csv"]
    assert len(cases) >= 25
    missing = [c for c in cases if f"`{c}`" not in readme]
    assert not missing, missing
    on_disk = {p.name for p in (CORPUS / "usage").iterdir()}
    assert on_disk | {"huge_field.csv", "changed_types.parquet"} == set(EXPECTED)
    assert {p.name for p in (CORPUS / "errors").iterdir()} == set(ERRORS)


def test_every_corpus_file_is_ingested_quarantined_or_listed(spark, corpus_ingest):
    _, lake, report, lines = corpus_ingest
    entries = _by_name(read_ledger(spark, str(lake), "usage")["usage"])
    assert set(entries) == set(EXPECTED)  # every file has its ledger row
    quarantine = (
        read_table(spark, lake / "quarantine" / "usage")
        .groupBy("_source_file", "reason")
        .count()
        .collect()
    )
    reasons: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for row in quarantine:
        reasons[Path(row["_source_file"]).name][row["reason"]] = row["count"]
    bronze = collections.Counter(
        Path(r["_source_file"]).name
        for r in read_table(spark, lake / "bronze" / "usage").select("_source_file").collect()
    )
    for name, expected in EXPECTED.items():
        entry = entries[name]
        if isinstance(expected, str):
            assert (entry.status, entry.reason) == ("skipped", expected), name
            assert any(line.endswith(f"{name}: {expected}") for line in lines), name
            continue
        bronze_rows, quarantined = expected
        got = (bronze.get(name, 0), reasons.get(name, {}))
        assert got == (bronze_rows, quarantined), name
        # rows in = bronze + quarantine, file by file
        assert entry.rows_read == bronze_rows + sum(quarantined.values()), name
        assert (entry.bronze_rows, entry.quarantined_rows) == (
            bronze_rows,
            sum(quarantined.values()),
        ), name
    assert report["usage"].line().count("4 files skipped") == 1


def test_values_survive_as_written(spark, corpus_ingest):
    _, lake, _, _ = corpus_ingest
    rows = {
        (Path(r["_source_file"]).name, r["usage_type"], r["usage_amount"], r["usage_start"])
        for r in read_table(spark, lake / "bronze" / "usage")
        .select(
            "_source_file",
            F.substring("usage_type", 1, 40).alias("usage_type"),
            "usage_amount",
            F.date_format("usage_start", "yyyy-MM-dd HH:mm").alias("usage_start"),
        )
        .collect()
    }
    # a quote inside a quoted field is doubled (RFC 4180)
    assert ("quoted_newlines_and_quotes.csv", 'say "hi"', 1.0, "2025-01-01 00:00") in rows
    # a Latin-1 byte is not UTF-8: it becomes U+FFFD, the row is kept
    assert ("latin1_bytes.csv", "Caf\ufffd", 1.0, "2025-01-01 00:00") in rows
    # offsets are instants; the repeated local hour of a DST change is two hours
    dst = sorted(r[3] for r in rows if r[0] == "timestamps_dst.csv")
    assert dst == ["2025-03-09 06:00", "2025-03-09 07:00", "2025-11-02 05:00", "2025-11-02 06:00"]
    assert sorted(r[3] for r in rows if r[0] == "timestamps_without_zone.csv") == [
        "2025-01-01 00:00",
        "2025-01-01 01:00",
        "2025-01-02 00:00",
    ]
    # -0 is zero, 1.5e3 a number
    assert sorted(r[2] for r in rows if r[0] == "numbers_special.csv") == [0.0, 1500.0]
    assert ("huge_field.csv", "x" * 40, 1.0, "2025-01-01 00:00") in rows
    assert any(r[0] == "name with spaces üñî.csv" for r in rows)


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_a_broken_file_of_a_required_dataset_stops_the_ingest_naming_it(
    spark, base_lake, tmp_path, case
):
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    shutil.copytree(base_lake, lake)
    shutil.copytree(CORPUS / "errors" / case, landing)
    datasets = [p.name for p in landing.iterdir()]
    rows_before = {
        d: read_table(spark, lake / "bronze" / d).count()
        for d in datasets
        if (lake / "bronze" / d).exists()
    }
    with pytest.raises(InputError) as raised:
        ingest_landing(
            spark, landing, lake, reference=_reference(spark), datasets=datasets, log=None
        )
    message = str(raised.value)
    assert ERRORS[case] in message, message
    assert "\n" not in message and "\tat " not in message
    if "%" not in ERRORS[case]:
        assert str(landing) in message  # the file's full path
    # nothing of the dataset was taken: bronze as before, no ledger row for the file
    for d, rows in rows_before.items():
        assert read_table(spark, lake / "bronze" / d).count() == rows
    ledger = read_ledger(spark, str(lake))
    assert not any(str(landing) in f for entries in ledger.values() for f in entries)


def test_a_broken_file_of_an_optional_dataset_is_listed_and_the_rest_ingested(
    spark, base_lake, tmp_path
):
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    shutil.copytree(base_lake, lake)
    shutil.copytree(CORPUS / "optional", landing)
    report, lines = _ingest(spark, landing, lake, "business_units")
    assert report["business_units"].bronze_rows == 1
    entries = _by_name(read_ledger(spark, str(lake), "business_units")["business_units"])
    assert (entries["blank_header.csv"].status, entries["blank_header.csv"].reason) == (
        "skipped",
        "blank header line",
    )
    assert entries["ok.csv"].status == "ingested"
    assert any(
        re.search(r"skipped file, not read: .*blank_header.csv: blank header", x) for x in lines
    )


def test_a_skipped_file_fixed_later_is_ingested(spark, base_lake, tmp_path):
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    shutil.copytree(base_lake, lake)
    late = landing / "business_units" / "late.csv"
    late.parent.mkdir(parents=True)
    late.write_bytes(b"")
    ingest_landing(
        spark, landing, lake, reference=_reference(spark), datasets=["business_units"], log=None
    )
    assert _by_name(read_ledger(spark, str(lake))["business_units"])["late.csv"].status == "skipped"
    late.write_text("account_id,business_unit\nu1,Retail\n")
    report = ingest_landing(
        spark, landing, lake, reference=_reference(spark), datasets=["business_units"], log=None
    )
    assert report["business_units"].bronze_rows == 1
    entry = _by_name(read_ledger(spark, str(lake))["business_units"])["late.csv"]
    assert (entry.status, entry.reason, entry.bronze_rows) == ("ingested", None, 1)
