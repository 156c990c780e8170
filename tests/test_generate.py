"""The synthetic world generator: determinism, counts, malformed rows, referential consistency."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carbon_core.reference.tables import shipped_text
from carbon_core.schemas import DATASETS
from carbonlake_tools.generate import MALFORMED_SUFFIX, frames, generate_world, plan

SCALE = 20_000
MONTHS = 2  # 2024-10 and 2024-11
SHARE = 0.002
SEED = 7
DATASET_NAMES = [d.name for d in DATASETS]


def _lines(folder: Path) -> Counter[str]:
    """Data lines (header excluded) of every CSV file of a dataset, as a multiset."""
    lines: Counter[str] = Counter()
    for file in sorted(folder.glob("*.csv")):
        with file.open(encoding="utf-8") as handle:
            lines.update(handle.read().splitlines()[1:])
    return lines


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory, spark: SparkSession) -> dict[str, object]:
    """A world and its clean twin (same seed, no malformed rows): two independent runs."""
    root = tmp_path_factory.mktemp("worlds")
    dirty, clean = root / "dirty", root / "clean"
    # Leftovers of an earlier generation must disappear (each dataset folder is replaced).
    (clean / "usage").mkdir(parents=True)
    (clean / "usage" / "old.csv").write_text("usage_start\n2020-01-01T00:00:00Z\n")
    args = {"scale": SCALE, "seed": SEED, "months": MONTHS}
    counts = generate_world(spark, dirty, malformed_share=SHARE, **args)
    clean_counts = generate_world(spark, clean, malformed_share=0.0, **args)
    return {"dirty": dirty, "clean": clean, "counts": counts, "clean_counts": clean_counts}


def test_same_seed_gives_the_same_rows(worlds: dict[str, object], spark: SparkSession) -> None:
    # Two runs with the same seed: the valid rows are identical (as multisets) ...
    for name in DATASET_NAMES:
        dirty = _lines(worlds["dirty"] / name)  # type: ignore[operator]
        clean = _lines(worlds["clean"] / name)  # type: ignore[operator]
        assert not clean - dirty, name
        assert sum(clean.values()) == worlds["clean_counts"][name], name  # type: ignore[index]
    assert not (worlds["clean"] / "usage" / "old.csv").exists()  # type: ignore[operator]
    # ... and so are the malformed ones, built again from the same seed.
    world = plan.build_plan(SCALE, SEED, "2024-10", MONTHS)
    tables = frames.usage_tables(spark, world)
    n_series = len(world.series)
    runs = [
        frames.malformed_usage(tables, n_series, SCALE, world, SEED, 12, text=True).collect()
        for _ in range(2)
    ]
    lines = [sorted(",".join("" if v is None else v for v in row) for row in run) for run in runs]
    assert lines[0] == lines[1]
    # The first 12 of the 40 malformed usage rows written (row k depends only on k).
    dirty_usage = _lines(worlds["dirty"] / "usage")  # type: ignore[operator]
    assert all(line in dirty_usage for line in lines[0])


def test_different_seed_differs(spark: SparkSession) -> None:
    # Driver side: account ids come from the seed.
    ids7 = {a.account_id for a in plan.build_plan(SCALE, 7, "2024-10", MONTHS).accounts}
    ids8 = {a.account_id for a in plan.build_plan(SCALE, 8, "2024-10", MONTHS).accounts}
    assert ids7.isdisjoint(ids8)
    # Executor side: the same row ids give other usage rows with another seed.
    world = plan.build_plan(SCALE, 7, "2024-10", MONTHS)
    tables = frames.usage_tables(spark, world)
    ids = spark.range(50).withColumnRenamed("id", "row_id")
    rows7 = frames.usage_rows(ids, tables, len(world.series), 7).collect()
    rows8 = frames.usage_rows(ids, tables, len(world.series), 8).collect()
    again7 = frames.usage_rows(ids, tables, len(world.series), 7).collect()
    assert sorted(map(tuple, rows7)) == sorted(map(tuple, again7))
    assert set(map(tuple, rows7)) != set(map(tuple, rows8))


def test_counts_and_malformed_rows(worlds: dict[str, object]) -> None:
    counts: dict[str, int] = worlds["counts"]  # type: ignore[assignment]
    clean_counts: dict[str, int] = worlds["clean_counts"]  # type: ignore[assignment]
    # usage: scale valid rows + round(0.002 * 20000) = 40 malformed rows.
    assert counts["usage" + MALFORMED_SUFFIX] == 40
    assert counts["usage"] == SCALE + 40
    assert clean_counts["usage"] == SCALE
    for name in DATASET_NAMES:
        bad = counts[name + MALFORMED_SUFFIX]
        assert bad >= 1, name
        assert clean_counts[name + MALFORMED_SUFFIX] == 0, name
        # The clean world is this world minus exactly its malformed rows.
        dirty = _lines(worlds["dirty"] / name)  # type: ignore[operator]
        clean = _lines(worlds["clean"] / name)  # type: ignore[operator]
        assert not clean - dirty, name
        assert sum((dirty - clean).values()) == bad, name
        assert counts[name] == clean_counts[name] + bad, name
    # About 0.2 % of the telemetry rows are malformed.
    telemetry = clean_counts["rack_telemetry"]
    assert counts["rack_telemetry" + MALFORMED_SUFFIX] == round(telemetry * SHARE)


def _read(spark: SparkSession, folder: Path, name: str) -> DataFrame:
    return spark.read.option("header", True).csv(str(folder / name))


def _orphans(
    label: str, child: DataFrame, parent: DataFrame, child_key: str, parent_key: str
) -> DataFrame:
    """Child rows whose (non-empty) key is not a parent key, tagged with `label`."""
    keys = F.broadcast(parent.select(F.col(parent_key).alias("_key")).distinct())
    present = child.filter(F.col(child_key).isNotNull()).select(F.col(child_key).alias("_ref"))
    missing = present.join(keys, F.col("_ref") == F.col("_key"), how="left_anti")
    return missing.select(F.lit(label).alias("check"), "_ref")


def test_valid_rows_are_consistent(worlds: dict[str, object], spark: SparkSession) -> None:
    clean: Path = worlds["clean"]  # type: ignore[assignment]
    t = {name: _read(spark, clean, name) for name in DATASET_NAMES}
    usage = t["usage"]
    checks = [
        _orphans("site->cluster", t["sites"], t["clusters"], "cluster_id", "cluster_id"),
        _orphans("rack->site", t["racks"], t["sites"], "site_id", "site_id"),
        _orphans("telemetry->rack", t["rack_telemetry"], t["racks"], "rack_id", "rack_id"),
        _orphans("usage->account", usage, t["accounts"], "usage_account_id", "account_id"),
        _orphans("usage->payer", usage, t["accounts"], "payer_account_id", "account_id"),
        _orphans("usage->product", usage, t["service_catalog"], "product_code", "product_code"),
        _orphans("usage->region", usage, t["clusters"], "region_code", "cluster_id"),
        _orphans("runs_on", t["service_catalog"], t["service_catalog"], "runs_on", "product_code"),
        _orphans("owner", t["service_catalog"], t["accounts"], "owner_account_id", "account_id"),
        *(
            _orphans(f"{name}->site", t[name], t["sites"], "site_id", "site_id")
            for name in ("utility_invoices", "fuel_records", "energy_contracts", "site_water")
        ),
    ]
    union = checks[0]
    for check in checks[1:]:
        union = union.unionByName(check)
    assert union.limit(20).collect() == []

    # Each usage row's payer is its account's payer; each payer names itself.
    accounts = t["accounts"].alias("a")
    wrong_payer = usage.join(
        accounts, F.col("usage_account_id") == F.col("a.account_id"), how="inner"
    ).filter(F.col("a.payer_account_id") != usage["payer_account_id"])
    assert wrong_payer.count() == 0
    payers = t["accounts"].select("payer_account_id").distinct()
    self_named = t["accounts"].filter(F.col("account_id") == F.col("payer_account_id"))
    assert payers.count() == self_named.count()

    # Telemetry: unique (rack, hour), on the hour, 0 <= used <= capacity, empty for network.
    telemetry = t["rack_telemetry"].join(t["racks"], on="rack_id", how="inner")
    assert telemetry.count() == worlds["clean_counts"]["rack_telemetry"]  # type: ignore[index]
    assert telemetry.groupBy("rack_id", "hour").count().filter("count > 1").count() == 0
    used, capacity = F.col("used_capacity").cast("double"), F.col("capacity").cast("double")
    is_network = F.col("rack_type") == "network"
    bad_used = (is_network & F.col("used_capacity").isNotNull()) | (
        ~is_network & ((used < 0) | (used > capacity) | used.isNull())
    )
    hour = F.to_timestamp("hour")
    outside = (hour < F.to_timestamp("in_service_date")) | (hour >= F.to_timestamp("retired_date"))
    assert telemetry.filter(bad_used | outside | (F.minute(hour) != 0)).count() == 0

    # Fuel (source_type, unit) pairs exist in the shipped factors.
    with io.StringIO(shipped_text("fuel_factors.csv"), newline="") as handle:
        pairs = {(r["source_type"], r["unit"]) for r in csv.DictReader(handle)}
    used_pairs = {
        tuple(r) for r in t["fuel_records"].select("source_type", "unit").distinct().collect()
    }
    assert used_pairs <= pairs
    # Usage in the allocation unit except a small share in another unit.
    units = usage.join(t["service_catalog"], on="product_code", how="inner")
    other_unit = units.filter(F.col("usage_unit") != F.col("allocation_unit")).count()
    assert 0 < other_unit < 0.06 * SCALE


def test_world_has_the_special_cases(worlds: dict[str, object], spark: SparkSession) -> None:
    clean: Path = worlds["clean"]  # type: ignore[assignment]
    clusters = {r["cluster_id"]: r for r in _read(spark, clean, "clusters").collect()}
    last_month_end = dt.date(2024, 12, 1)
    # The pre-launch cluster launches after every generated month, yet has racks and telemetry.
    prelaunch = clusters[plan.PRELAUNCH_CLUSTER_ID]
    assert dt.date.fromisoformat(prelaunch["launch_date"]) >= last_month_end
    # The mid-month cluster launches on the 14th of the second month: usage only from then on.
    assert clusters[plan.MIDMONTH_CLUSTER_ID]["launch_date"] == "2024-11-14"
    edge = clusters[plan.EDGE_CLUSTER_ID]
    assert (edge["kind"], edge["name"]) == ("edge", "Global")
    usage = _read(spark, clean, "usage")
    by_region = {
        r["region_code"]: (r["first"], r["n"])
        for r in usage.groupBy("region_code")
        .agg(F.min("usage_start").alias("first"), F.count(F.lit(1)).alias("n"))
        .collect()
    }
    assert set(by_region) == {c for c in clusters}  # every cluster, pre-launch included
    assert by_region[plan.MIDMONTH_CLUSTER_ID][0] >= "2024-11-14T00:00:00Z"
    racks = _read(spark, clean, "racks")
    sites = {r["site_id"]: r for r in _read(spark, clean, "sites").collect()}
    prelaunch_sites = [s for s, r in sites.items() if r["cluster_id"] == plan.PRELAUNCH_CLUSTER_ID]
    telemetry_sites = {
        r["site_id"]
        for r in _read(spark, clean, "rack_telemetry")
        .join(racks, on="rack_id", how="inner")
        .select("site_id")
        .distinct()
        .collect()
    }
    assert set(prelaunch_sites) <= telemetry_sites
    # Codes: a ZIP without its leading zero, a ZIP+4, a subdivision without country, lat/lon only.
    assert sites["edge-bos-a"]["postal_code"] == "2110"
    assert sites["use2-cmh-b"]["postal_code"] == "43026-1234"
    assert sites["use1-iad-b"]["country_code"] is None
    assert sites["use1-iad-b"]["subdivision_code"] == "US-VA"
    lhr = sites["edge-lhr-a"]
    assert (lhr["country_code"], lhr["subdivision_code"], lhr["postal_code"]) == (None, None, None)
    # A site with telemetry but no invoice at all.
    invoiced = {r["site_id"] for r in _read(spark, clean, "utility_invoices").collect()}
    assert "edge-nrt-b" in telemetry_sites - invoiced


def test_parquet_files_have_row_groups_of_the_configured_size(
    tmp_path: Path, spark: SparkSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spark splits Parquet only between row groups, so large hourly files must have many."""
    pyarrow_parquet = pytest.importorskip("pyarrow.parquet")
    from carbonlake_tools.generate import world

    monkeypatch.setattr(world, "PARQUET_ROW_GROUP_BYTES", 64 * 1024)
    generate_world(spark, tmp_path, scale=20_000, seed=SEED, months=1, usage_format="parquet")
    files = sorted((tmp_path / "usage").glob("*.parquet"))
    metadata = [pyarrow_parquet.ParquetFile(f).metadata for f in files]
    biggest = max(metadata, key=lambda m: m.num_rows)
    assert biggest.num_rows >= 10_000
    assert biggest.num_row_groups >= 3


class _Interrupted(Exception):
    pass


def _files(folder: Path) -> set[str]:
    return {f.name for f in folder.iterdir()}


def test_an_interrupted_generation_resumes_to_the_same_world(
    worlds: dict[str, object],
    tmp_path: Path,
    spark: SparkSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 1e9-row world takes hours: a cut-short run goes on from its last complete piece."""
    from carbonlake_tools.generate import world

    args = {"scale": SCALE, "seed": SEED, "months": MONTHS, "malformed_share": SHARE}
    piece_rows = 6_000  # usage: 4 pieces (20,000 rows); telemetry: 4 racks a piece
    original_write = world._Pieces.write
    interrupt_at = ["u001"]

    def write_or_interrupt(self, name, *rest):  # type: ignore[no-untyped-def]
        if name in interrupt_at:
            raise _Interrupted(name)
        return original_write(self, name, *rest)

    monkeypatch.setattr(world._Pieces, "write", write_or_interrupt)
    with pytest.raises(_Interrupted):
        generate_world(spark, tmp_path, piece_rows=piece_rows, **args)
    telemetry_files = _files(tmp_path / "rack_telemetry")
    usage_files = _files(tmp_path / "usage")
    assert len({f[:4] for f in telemetry_files}) >= 4  # t000.. and tbad
    assert {f[:4] for f in usage_files} == {"u000"}
    # Files a piece moved in before an interruption are not kept twice.
    (tmp_path / "usage" / "u001-part-00000-stale.csv").write_text("usage_start\nstale\n")

    interrupt_at.clear()
    counts = generate_world(spark, tmp_path, piece_rows=piece_rows, resume=True, **args)
    assert counts == worlds["counts"]
    for name in DATASET_NAMES:
        assert _lines(tmp_path / name) == _lines(worlds["dirty"] / name), name  # type: ignore[operator]
    # The complete pieces were kept as they were, not written again.
    assert _files(tmp_path / "rack_telemetry") == telemetry_files
    assert usage_files < _files(tmp_path / "usage")
    assert not (tmp_path / "usage" / "u001-part-00000-stale.csv").exists()
    assert not list((tmp_path / "usage").glob("_piece*"))

    # Another world in the same folder starts from scratch, even with resume.
    other = generate_world(
        spark, tmp_path, piece_rows=piece_rows, resume=True, **{**args, "seed": SEED + 1}
    )
    assert other["usage"] == counts["usage"]
    assert not _files(tmp_path / "rack_telemetry") & telemetry_files
    assert _lines(tmp_path / "usage") != _lines(worlds["dirty"] / "usage")


def test_a_world_can_have_a_thousand_payers_each_with_its_own_accounts_and_usage() -> None:
    world = plan.build_plan(SCALE, SEED, "2024-10", MONTHS, payers=1_000)
    external = {
        a.payer_account_id
        for a in world.accounts
        if not a.is_internal and a.key != "edge"  # the edge-only payer comes on top
    }
    assert len(external) == 1_000
    names = {a.key for a in world.accounts if a.account_id == a.payer_account_id}
    assert {"Northwind Traders", "Northwind Traders 2", "Northwind Traders 50"} <= names
    assert len(names) == 1_000 + 2  # and the edge-only and internal payers
    ids = [a.account_id for a in world.accounts]
    assert len(ids) == len(set(ids))
    # every payer uses something: its accounts' usage series exist
    with_usage = {s.payer_account_id for s in world.series}
    assert external <= with_usage
    # the default is unchanged by the option
    default = plan.build_plan(SCALE, SEED, "2024-10", MONTHS)
    assert len({a.payer_account_id for a in default.accounts}) == plan.default_payers(SCALE) + 2
    with pytest.raises(ValueError, match="payers must be at least 3"):
        plan.build_plan(SCALE, SEED, "2024-10", MONTHS, payers=2)
