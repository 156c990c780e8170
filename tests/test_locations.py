"""Locations are URIs end to end: kept as text by the config, listed and read through
Hadoop's filesystem layer, so a scheme is never lost and any configured filesystem works."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from pyspark.sql import types as T

from carbon_core import schemas
from carbon_core.config import load_config
from carbon_core.errors import InputError
from carbon_core.hadoop import HadoopFiles, has_scheme, join, local_path, qualified
from carbon_core.ingest.landing import SOURCE_FILE, read_landing
from carbon_core.lake import delta_io

ROOT = Path(__file__).resolve().parent.parent
CLUSTERS_CSV = "cluster_id,kind,launch_date,name\nc1,region,2020-01-01,One\nc2,edge,2021-05-01,\n"


def test_the_cluster_example_keeps_its_object_store_uris():
    config = load_config(ROOT / "conf" / "cluster.example.yaml")
    assert config.lake == "s3a://my-bucket/carbonlake/lake"
    assert config.landing == "s3a://my-bucket/carbonlake/landing"
    assert config.exports == "s3a://my-bucket/carbonlake/exports"
    override = config.with_overrides(lake=Path("/tmp/lake"), landing="abfss://c@a.dfs/x")
    assert (override.lake, override.landing) == ("/tmp/lake", "abfss://c@a.dfs/x")


def test_uri_helpers_keep_schemes_and_make_plain_paths_absolute():
    assert has_scheme("s3a://b/k") and has_scheme("file:/tmp/x") and has_scheme("gs://b")
    assert not has_scheme("lake") and not has_scheme("/tmp/lake") and not has_scheme("C:/x")
    assert qualified("hdfs://nn:8020/lake") == "hdfs://nn:8020/lake"
    # A plain path is the local disk even where the cluster's default filesystem is HDFS.
    assert qualified("/tmp/a/../b") == "file:/tmp/b"
    assert qualified("lake") == f"file:{Path.cwd() / 'lake'}"
    for local in ("file:///tmp/x", "file:/tmp/x", "file://localhost/tmp/x", "file:/tmp/y/../x"):
        assert qualified(local) == "file:/tmp/x", local
    assert local_path("file:///tmp/x") == "/tmp/x" and local_path("s3a://b/x") is None
    assert join("s3a://b/lake/", "gold", "/unallocated") == "s3a://b/lake/gold/unallocated"


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_a_landing_dataset_is_listed_and_read_through_the_filesystem_layer(spark, tmp_path, scheme):
    folder = tmp_path / "land ing" / "clusters"
    (folder / "2025").mkdir(parents=True)
    (folder / "a.csv").write_text(CLUSTERS_CSV)
    with gzip.open(folder / "2025" / "b.csv.gz", "wt") as handle:
        handle.write("cluster_id,kind,launch_date\nc3,region,2022-02-01\n")
    (folder / "_SUCCESS").write_text("")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "c.csv").write_text(CLUSTERS_CSV)
    landing = f"{scheme}{tmp_path / 'land ing'}"

    rows = read_landing(spark, landing, schemas.CLUSTERS).orderBy("cluster_id").collect()

    assert [(r["cluster_id"], r["kind"], r["name"]) for r in rows] == [
        ("c1", "region", "One"),
        ("c2", "edge", None),
        ("c3", "region", None),
    ]
    # Lineage is the plain local path, whatever form the landing location took.
    assert [r[SOURCE_FILE] for r in rows] == [
        str(folder / "a.csv"),
        str(folder / "a.csv"),
        str(folder / "2025" / "b.csv.gz"),
    ]


def test_a_missing_mandatory_dataset_names_its_uri(spark, tmp_path):
    landing = f"file://{tmp_path}"
    with pytest.raises(InputError) as error:
        read_landing(spark, landing, schemas.CLUSTERS)
    assert str(error.value) == f"landing dataset 'clusters' not found: {landing}/clusters"


def test_files_are_written_replaced_and_moved_through_the_layer(spark, tmp_path):
    root = f"file://{tmp_path}"
    files = HadoopFiles(spark, root)
    state = join(root, "state.json")
    files.replace_text(state, "one")
    files.replace_text(state, "two")
    assert files.read_text(state) == "two"
    assert (tmp_path / "state.json").read_text() == "two"
    assert not (tmp_path / "state.json.tmp").exists()
    files.rename(state, join(root, "moved.json"))
    assert [f.name for f in files.list_files(root)] == ["moved.json"]
    assert files.size(join(root, "moved.json")) == 3


def test_a_table_at_a_file_uri_is_the_table_at_its_plain_path(spark, tmp_path):
    schema = T.StructType([T.StructField("k", T.StringType(), False)])
    plain = str(tmp_path / "t")
    for form in (f"file://{plain}", f"file:{plain}", plain):
        # Creating at a three-slash URI used to fail with DELTA_AMBIGUOUS_PATHS_IN_CREATE_TABLE.
        delta_io.ensure_table(spark, form, schema=schema, checks={"k_set": "k <> ''"})
    delta_io.write_table(spark.createDataFrame([("a",)], schema), f"file://{plain}", mode="append")
    # One table: created with its constraint in one commit, then the append.
    assert delta_io.table_version(spark, plain) == 1
    assert [r.k for r in delta_io.read_table(spark, f"file:{plain}").collect()] == ["a"]
