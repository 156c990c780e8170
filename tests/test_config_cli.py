"""Configuration validation, month helpers and the CLI's one-line errors."""

from __future__ import annotations

import datetime as dt

import pytest

from carbon_core.calendar import month_range, parse_month, shift_month
from carbon_core.cli import main
from carbon_core.config import config_from_mapping, load_config
from carbon_core.errors import ConfigError


def test_default_config_maps_months_to_versions():
    methodology = config_from_mapping({}).methodology
    assert methodology.version_for(dt.date(2024, 12, 1)) == "v1.0"
    assert methodology.version_for(dt.date(2025, 1, 1)) == "v2.0"


def test_shipped_config_files_are_valid():
    local = load_config("conf/local.yaml")
    assert local.spark.master == "local[2]"
    assert local.methodology.market_matching == "monthly"
    cluster = load_config("conf/cluster.example.yaml")
    assert cluster.spark.delta_jars == "provided"
    assert cluster.spark.master is None


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"methodology": {"market_matching": "weekly"}}, "methodology.market_matching"),
        ({"spark": {"shuffle_partitions": 0}}, "spark.shuffle_partitions"),
        ({"lakes": "x"}, "lakes"),
        (
            {"methodology": {"versions": [{"from": "2025-13", "version": "v2.0"}]}},
            "methodology.versions.0.from",
        ),
        ({"methodology": {"versions": [{"from": "2025-01", "version": "v3"}]}}, "version"),
    ],
)
def test_bad_config_names_the_key(data, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_from_mapping(data, "test.yaml")


def test_versions_must_be_in_order():
    with pytest.raises(ConfigError, match="increasing"):
        config_from_mapping(
            {
                "methodology": {
                    "versions": [
                        {"from": "2025-01", "version": "v2.0"},
                        {"from": "2020-01", "version": "v1.0"},
                    ]
                }
            }
        )


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "nope.yaml")
    assert str(error.value) == f"configuration file not found: {tmp_path / 'nope.yaml'}"
    with pytest.raises(ConfigError, match="configuration file not found: file:/"):
        load_config(f"file:{tmp_path}/nope.yaml")


def test_a_config_file_can_be_given_as_a_file_uri(tmp_path):
    file = tmp_path / "my conf.yaml"
    file.write_text("lake: s3a://bucket/lake\nexport: {format: parquet}\n")
    for location in (str(file), f"file:{file}", f"file://{file}"):
        config = load_config(location)
        assert (config.lake, config.export.format) == ("s3a://bucket/lake", "parquet")


def test_month_helpers():
    assert parse_month("2024-02") == dt.date(2024, 2, 1)
    assert shift_month(dt.date(2024, 11, 1), 3) == dt.date(2025, 2, 1)
    assert shift_month(dt.date(2025, 1, 1), -37) == dt.date(2021, 12, 1)
    assert month_range(dt.date(2024, 11, 1), dt.date(2025, 2, 1)) == [
        dt.date(2024, 11, 1),
        dt.date(2024, 12, 1),
        dt.date(2025, 1, 1),
        dt.date(2025, 2, 1),
    ]
    with pytest.raises(ValueError):
        parse_month("2025-1")


def test_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("methodology:\n  market_matching: hourly\n")
    code = main(["ingest", "--config", str(bad), "--landing", "x", "--lake", "y"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.count("\n") == 1
    assert "methodology.market_matching" in captured.err
    assert "Traceback" not in captured.err


def test_a_command_runs_on_the_shared_session_and_keeps_its_settings(spark, tmp_path, capsys):
    """conftest's `spark` lends its session to the command: the command's own config
    (conf/local.yaml, 8 shuffle partitions) must not change what the later tests run with."""
    out = tmp_path / "report.html"
    code = main(["report", "--lake", str(tmp_path / "lake"), "--out", str(out)])
    assert code == 2
    assert "lake table not found" in capsys.readouterr().err
    assert not out.exists()
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"
