"""The benchmark's pure parts: Spark REST metrics per stage, ratios, targets, Markdown."""

from __future__ import annotations

import pytest

from carbonlake_tools.bench.metrics import UNGROUPED, group_metrics, peak_executor_mb, roll_up
from carbonlake_tools.bench.report import growth, parse_scales, render_markdown, summarise, targets

# Shaped like /api/v1/applications/<id>/jobs and /stages (only the fields read).
JOBS = [
    {
        "jobId": 0,
        "jobGroup": "ingest/usage",
        "stageIds": [0, 1],
        "submissionTime": "2025-01-02T03:04:05.000GMT",
        "completionTime": "2025-01-02T03:04:07.500GMT",
    },
    {
        # reuses stage 1's shuffle output: stage 1 belongs to job 0's group only
        "jobId": 1,
        "jobGroup": "ingest/rack_telemetry",
        "stageIds": [1, 2],
        "submissionTime": "2025-01-02T03:04:08.000GMT",
        "completionTime": "2025-01-02T03:04:09.000GMT",
    },
    {"jobId": 2, "stageIds": [3], "submissionTime": "2025-01-02T03:04:10.000GMT"},
    {"jobId": 3, "jobGroup": "allocation", "stageIds": [4]},
]
STAGES = [
    {
        "stageId": 0,
        "attemptId": 0,
        "status": "COMPLETE",
        "executorRunTime": 1500,
        "inputRecords": 1000,
        "inputBytes": 50_000,
        "shuffleReadBytes": 0,
        "shuffleWriteBytes": 7000,
        "memoryBytesSpilled": 0,
        "diskBytesSpilled": 0,
    },
    {
        "stageId": 1,
        "attemptId": 0,
        "status": "COMPLETE",
        "executorRunTime": 500,
        "inputRecords": 0,
        "shuffleReadBytes": 7000,
        "shuffleWriteBytes": 300,
        "memoryBytesSpilled": 4096,
        "diskBytesSpilled": 1024,
    },
    {"stageId": 1, "attemptId": 1, "status": "SKIPPED", "shuffleReadBytes": 999_999},
    {
        "stageId": 2,
        "attemptId": 0,
        "status": "COMPLETE",
        "executorRunTime": 250,
        "inputRecords": 400,
        "shuffleReadBytes": 300,
    },
    {"stageId": 3, "attemptId": 0, "status": "COMPLETE", "inputRecords": 7},
    {"stageId": 4, "attemptId": 0, "status": "FAILED", "shuffleWriteBytes": 11},
    {"stageId": 4, "attemptId": 1, "status": "COMPLETE", "shuffleWriteBytes": 13},
]


def test_group_metrics_sums_each_stage_once_for_its_first_job():
    groups = group_metrics(JOBS, STAGES)
    usage = groups["ingest/usage"]
    assert usage.jobs == 1
    assert usage.job_s == pytest.approx(2.5)
    assert usage.task_s == pytest.approx(2.0)
    assert usage.input_records == 1000
    assert usage.input_bytes == 50_000
    assert (usage.shuffle_read_bytes, usage.shuffle_write_bytes) == (7000, 7300)
    assert usage.shuffle_bytes == 14_300
    assert (usage.memory_spill_bytes, usage.disk_spill_bytes, usage.spill_bytes) == (
        4096,
        1024,
        5120,
    )
    telemetry = groups["ingest/rack_telemetry"]
    assert (telemetry.input_records, telemetry.shuffle_read_bytes) == (400, 300)
    assert telemetry.task_s == pytest.approx(0.25)
    # a job without a group, and one still running (no completion time)
    assert groups[UNGROUPED].input_records == 7
    assert groups[UNGROUPED].job_s == 0.0
    # both attempts of a retried stage did work
    assert groups["allocation"].shuffle_write_bytes == 24


def test_roll_up_sums_a_stage_and_its_substages_only():
    groups = group_metrics(JOBS, STAGES)
    ingest = roll_up(groups, "ingest")
    assert ingest.jobs == 2
    assert ingest.input_records == 1400
    assert ingest.shuffle_bytes == 14_600
    assert roll_up(groups, "ingest/usage").input_records == 1000
    assert roll_up(groups, "ingest/us").jobs == 0


def test_peak_executor_memory_is_the_largest_heap_plus_off_heap_in_mib():
    executors = [
        {
            "id": "driver",
            "peakMemoryMetrics": {"JVMHeapMemory": 3 * 2**20, "JVMOffHeapMemory": 2**19},
        },
        {"id": "1", "peakMemoryMetrics": {"JVMHeapMemory": 2**20}},
        {"id": "2"},
    ]
    assert peak_executor_mb(executors) == 3.5
    assert peak_executor_mb([{"id": "driver"}]) is None


def test_parse_scales():
    assert parse_scales("1e7, 1e6,1e6,2500000") == [1_000_000, 2_500_000, 10_000_000]
    for bad in ("", "1e6,abc", "0", "1.5"):
        with pytest.raises(ValueError):
            parse_scales(bad)


def _run(rows: int, pipeline: float, bare: float, duckdb: float, rss: float) -> dict:
    return {
        "usage_rows": rows,
        "status": "ok",
        "pipeline_s": pipeline,
        "run_s": pipeline * 0.9,
        "incremental_month_s": pipeline * 0.09,
        "noop_run_s": 30.0,
        "bare_scan_s": bare,
        "duckdb_s": duckdb,
        "delta_copy_s": bare * 2,
        "peak_driver_rss_mb": rss,
        "peak_executor_mb": 1000.0,
        "lake_commits": 41,
        "stages": {
            "ingest": {"s": pipeline / 2, "rows_in": rows, "jobs": 293, "shuffle_bytes": 2**21}
        },
    }


RUNS = [
    _run(10**8, pipeline=1200.0, bare=400.0, duckdb=200.0, rss=2300.0),
    _run(10**6, pipeline=30.0, bare=5.0, duckdb=2.0, rss=1800.0),
    _run(10**7, pipeline=100.0, bare=40.0, duckdb=20.0, rss=2000.0),
    {"usage_rows": 10**9, "status": "failed", "error": "measure: out of memory"},
]


def test_growth_between_consecutive_measured_scales():
    steps = growth(RUNS)
    assert [(s["from_rows"], s["to_rows"]) for s in steps] == [(10**6, 10**7), (10**7, 10**8)]
    # 30 s per 1e6 rows, then 10, then 12
    assert steps[0]["s_per_million_ratio"] == pytest.approx(10 / 30, abs=1e-3)
    assert steps[1]["s_per_million_ratio"] == pytest.approx(1.2)
    assert steps[1]["pipeline_s_ratio"] == pytest.approx(12.0)
    assert steps[1]["peak_driver_rss_ratio"] == pytest.approx(1.15)


def test_targets_at_the_stated_scales():
    by_name = {t["target"]: t for t in targets(RUNS)}
    bare = by_name["pipeline_s <= 2.5 x bare Spark scan"]
    assert (bare["value"], bare["usage_rows"], bare["as_specified"], bare["holds"]) == (
        3.0,
        10**8,
        True,
        False,
    )
    duck = by_name["pipeline_s <= 4 x DuckDB reference"]
    assert (duck["value"], duck["holds"]) == (6.0, False)
    copy = by_name["pipeline_s <= 2.5 x plain Spark copy to Delta"]
    assert (copy["value"], copy["usage_rows"], copy["holds"]) == (1.5, 10**8, True)
    per_row = by_name["s per million rows grows <= 1.15x (1e7 -> 1e8)"]
    assert (per_row["value"], per_row["usage_rows"], per_row["holds"]) == (
        1.2,
        [10**7, 10**8],
        False,
    )
    assert by_name["peak driver RSS grows <= 1.2x (1e7 -> 1e8)"]["holds"] is True
    incremental = by_name["incremental_month_s <= 15 % of the full run"]
    assert (incremental["value"], incremental["usage_rows"], incremental["holds"]) == (
        pytest.approx(0.1),
        10**8,
        True,
    )
    assert by_name["noop_run_s <= 60 s"]["value"] == 30.0
    # the 1e9 run failed: not a completed run
    assert by_name["a 1e9-row run completes"]["holds"] is None
    assert by_name["goal: pipeline_s <= 3,600 s at 1e9"]["holds"] is None


def test_targets_on_other_scales_say_so_and_nothing_measured_is_none():
    small = [_run(10**5, 10.0, 5.0, 1.0, 900.0), _run(10**6, 20.0, 10.0, 4.0, 1000.0)]
    by_name = {t["target"]: t for t in targets(small)}
    bare = by_name["pipeline_s <= 2.5 x bare Spark scan"]
    assert (bare["value"], bare["usage_rows"], bare["as_specified"], bare["holds"]) == (
        2.0,
        10**6,
        False,
        True,
    )
    per_row = by_name["s per million rows grows <= 1.15x (1e7 -> 1e8)"]
    assert (per_row["value"], per_row["usage_rows"], per_row["as_specified"]) == (
        0.2,
        [10**5, 10**6],
        False,
    )
    assert all(t["holds"] is None for t in targets([]))


def test_summary_and_markdown():
    result = summarise({"cores": 2, "memory_gb": 24.0}, RUNS, created="2025-01-02T03:04:05")
    first = result["runs"][0]
    assert (first["pipeline_over_bare_scan"], first["pipeline_over_duckdb"]) == (3.0, 6.0)
    assert first["s_per_million_rows"] == 12.0
    assert "pipeline_over_bare_scan" not in result["runs"][3]
    markdown = render_markdown(result)
    lines = markdown.splitlines()
    assert "Machine: 2 cores, 24.0 GB" in lines[2]
    assert (
        "| 1e8 | 1,200.0 | 400.0 | 200.0 | 800.0 | 3.00 | 6.00 | 1.50 | 12.00 | 108.0 | 0.100 | "
        "30.0 | 2,300 | 1,000 | - |" in lines
    )
    assert any(line.startswith("| 1e9 | failed: measure: out of memory") for line in lines)
    assert "| ingest | 600.0 | 100,000,000 | - | 293 | 2.0 | - | - |" in lines
    assert "Delta commits in the lake after the run: 41." in lines
    assert "| 1e7 | 1e8 | 12.00 | 1.20 | 1.15 |" in lines
    assert "| pipeline_s <= 2.5 x bare Spark scan | 1e8 | 3.00 | 2.50 | **missed** |" in lines
    assert "| a 1e9-row run completes | - | - | - | not measured |" in lines


def test_a_measurement_cut_short_resumes_with_only_the_phases_it_lacks(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    import carbon_core.pipeline
    import carbon_core.session
    from carbonlake_tools.bench import measure

    calls: list[str] = []
    machine_down_in = ["duckdb"]

    def phase(name: str, value: object):  # type: ignore[no-untyped-def]
        def run(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(name)
            if name in machine_down_in:
                raise KeyboardInterrupt  # the machine going down mid-way
            return value() if callable(value) else value

        return run

    spark = types.SimpleNamespace(
        sparkContext=types.SimpleNamespace(defaultParallelism=2), stop=lambda: None
    )
    monkeypatch.setattr(carbon_core.session, "build_spark_session", lambda conf: spark)
    monkeypatch.setattr(carbon_core.pipeline, "label_jobs", lambda *args: None)
    monkeypatch.setattr(
        measure,
        "measure_pipeline",
        phase("pipeline", lambda: {"status": "ok", "pipeline_s": 100.0 + len(calls)}),
    )
    monkeypatch.setattr(measure, "_incremental", phase("incremental", {"incremental_month_s": 5.0}))
    monkeypatch.setattr(measure, "bare_scan", phase("bare_scan", {"usage": 7, "rack_telemetry": 3}))
    monkeypatch.setattr(measure, "delta_copy", phase("delta_copy", None))
    monkeypatch.setattr(measure, "duckdb_totals", phase("duckdb", 11))
    out = tmp_path / "run.json"
    argv = ["--landing", str(tmp_path / "l"), "--lake", str(tmp_path / "k")]
    argv += ["--exports", str(tmp_path / "e"), "--out", str(out), "--usage-rows", "1000"]
    args = measure.build_parser().parse_args(argv)
    resumed = measure.build_parser().parse_args([*argv, "--resume"])

    with pytest.raises(KeyboardInterrupt):
        measure.measure(args)
    assert calls == ["pipeline", "incremental", "bare_scan", "delta_copy", "duckdb"]
    machine_down_in.clear()
    run = measure.measure(resumed)
    assert calls[5:] == ["duckdb"]  # every other phase was kept
    assert run["resumed_phases"] == ["bare_scan", "delta_copy", "incremental", "pipeline"]
    assert run["pipeline_s"] == 101.0
    assert run["incremental_month_s"] == 5.0
    assert (run["usage_rows_landed"], run["telemetry_rows_landed"]) == (7, 3)
    assert run["duckdb_result_rows"] == 11 and run["reference_errors"] == {}
    assert run["code_version"] == measure.code_version()
    # Once complete, nothing is kept: the next run measures the pipeline again.
    assert not list(tmp_path.glob("*.phases.json"))
    assert measure.measure(resumed)["pipeline_s"] == 107.0

    # A failing reference is reported, not kept: a resume tries it again.
    monkeypatch.setattr(measure, "delta_copy", lambda *a: (_ for _ in ()).throw(OSError("full")))
    machine_down_in.append("duckdb")
    with pytest.raises(KeyboardInterrupt):
        measure.measure(resumed)
    monkeypatch.setattr(measure, "delta_copy", phase("delta_copy", None))
    machine_down_in.clear()
    before = len(calls)
    run = measure.measure(resumed)
    assert calls[before:] == ["delta_copy", "duckdb"] and run["delta_copy_s"] is not None

    # Kept phases of other code, another scale or without --resume are not used.
    for changed, patch in (
        ("code", lambda: monkeypatch.setattr(measure, "code_version", lambda: "other")),
        ("scale", lambda: setattr(resumed, "usage_rows", 2000)),
        ("no --resume", lambda: None),
    ):
        machine_down_in.append("duckdb")
        with pytest.raises(KeyboardInterrupt):
            measure.measure(resumed)
        machine_down_in.clear()
        patch()
        before = calls.count("pipeline")
        measure.measure(args if changed == "no --resume" else resumed)
        assert calls.count("pipeline") == before + 1, changed


def test_reuse_keeps_a_scale_measured_completely_with_this_world_and_code(tmp_path) -> None:
    import json

    from carbonlake_tools.bench.cli import _complete_measurement
    from carbonlake_tools.bench.measure import code_version

    world = {"scale": 1000, "seed": 7}
    run = {"status": "ok", "world": world, "code_version": code_version(), "pipeline_s": 1.0}
    path = tmp_path / "run.json"
    assert _complete_measurement(path, world) is None  # nothing measured yet
    for changes, kept in (
        ({}, True),
        ({"world": {"scale": 1000, "seed": 8}}, False),
        ({"code_version": "other"}, False),
        ({"status": "failed"}, False),
        ({"reference_errors": {"duckdb": "out of memory"}}, False),
        ({"incremental_error": "boom"}, False),
    ):
        path.write_text(json.dumps({**run, **changes}))
        assert (_complete_measurement(path, world) is not None) is kept, changes
