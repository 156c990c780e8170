"""The benchmark's derived numbers (ratios, growth between scales), targets and Markdown table.

Pure functions over the result dictionary written to bench/results/latest.json.
The targets (docs/benchmarks.md) are stated for 1e7, 1e8 and 1e9 usage rows on a
2-core local machine; with other scales they are evaluated on the nearest
measured ones and the result says which scales it used.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

Run = Mapping[str, Any]

MAX_PIPELINE_OVER_BARE = 2.5
MAX_PIPELINE_OVER_DUCKDB = 4.0
MAX_PIPELINE_OVER_DELTA_COPY = 2.5
# A month is about 1/18 of the generated rows; its run may cost at most this share.
MAX_INCREMENTAL_SHARE = 0.15
MAX_NOOP_RUN_S = 60.0
MAX_BILLION_S = 3_600.0
MAX_PER_ROW_GROWTH = 1.15
MAX_DRIVER_RSS_GROWTH = 1.20
TARGET_SCALE = 100_000_000
TARGET_BASE_SCALE = 10_000_000
BILLION = 1_000_000_000


def parse_scales(text: str) -> list[int]:
    """'1e6,1e7' -> [1000000, 10000000]: sorted, unique, positive whole numbers of rows."""
    scales = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"not a number of rows: {part!r}") from None
        if value < 1 or value != int(value):
            raise ValueError(f"not a positive whole number of rows: {part!r}")
        scales.add(int(value))
    if not scales:
        raise ValueError("no scale given")
    return sorted(scales)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def _ok(runs: Sequence[Run]) -> list[Run]:
    return sorted((r for r in runs if r.get("status", "ok") == "ok"), key=lambda r: r["usage_rows"])


def run_ratios(run: Run) -> dict[str, float | None]:
    """A run's pipeline time over each reference, and its seconds per million usage rows."""
    return {
        "pipeline_over_bare_scan": _ratio(run.get("pipeline_s"), run.get("bare_scan_s")),
        "pipeline_over_duckdb": _ratio(run.get("pipeline_s"), run.get("duckdb_s")),
        "pipeline_over_delta_copy": _ratio(run.get("pipeline_s"), run.get("delta_copy_s")),
        "s_per_million_rows": _ratio(run.get("pipeline_s"), run["usage_rows"] / 1e6),
        "incremental_over_pipeline": _ratio(run.get("incremental_month_s"), run.get("run_s")),
    }


def growth(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Between consecutive measured scales: how time per row, time and driver memory grow."""
    ok = _ok(runs)
    steps = []
    for small, big in itertools.pairwise(ok):
        steps.append(
            {
                "from_rows": small["usage_rows"],
                "to_rows": big["usage_rows"],
                "rows_ratio": _ratio(big["usage_rows"], small["usage_rows"]),
                "pipeline_s_ratio": _ratio(big.get("pipeline_s"), small.get("pipeline_s")),
                "s_per_million_ratio": _ratio(
                    run_ratios(big)["s_per_million_rows"], run_ratios(small)["s_per_million_rows"]
                ),
                "peak_driver_rss_ratio": _ratio(
                    big.get("peak_driver_rss_mb"), small.get("peak_driver_rss_mb")
                ),
            }
        )
    return steps


def _pick_run(ok: Sequence[Run], scale: int) -> tuple[Run | None, bool]:
    """The run at `scale`, else the largest measured one; and whether it is the one asked for."""
    for run in ok:
        if run["usage_rows"] == scale:
            return run, True
    return (ok[-1], False) if ok else (None, False)


def _pick_step(steps: Sequence[Mapping[str, Any]]) -> tuple[Mapping[str, Any] | None, bool]:
    for step in steps:
        if step["from_rows"] == TARGET_BASE_SCALE and step["to_rows"] == TARGET_SCALE:
            return step, True
    return (steps[-1], False) if steps else (None, False)


def _target(
    name: str, value: float | None, limit: float, rows: Any, as_specified: bool
) -> dict[str, Any]:
    return {
        "target": name,
        "limit": limit,
        "value": value,
        "usage_rows": rows,
        "as_specified": as_specified,
        "holds": None if value is None else value <= limit,
    }


def targets(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Issue 6's targets; `as_specified` is false when measured at other scales than stated."""
    ok = _ok(runs)
    run, at_target = _pick_run(ok, TARGET_SCALE)
    ratios = run_ratios(run) if run else {}
    rows = run["usage_rows"] if run else None
    step, step_as_specified = _pick_step(growth(runs))
    step_rows = [step["from_rows"], step["to_rows"]] if step else None
    billion = [r for r in ok if r["usage_rows"] >= BILLION]
    return [
        _target(
            "pipeline_s <= 2.5 x bare Spark scan",
            ratios.get("pipeline_over_bare_scan"),
            MAX_PIPELINE_OVER_BARE,
            rows,
            at_target,
        ),
        _target(
            "pipeline_s <= 4 x DuckDB reference",
            ratios.get("pipeline_over_duckdb"),
            MAX_PIPELINE_OVER_DUCKDB,
            rows,
            at_target,
        ),
        _target(
            "pipeline_s <= 2.5 x plain Spark copy to Delta",
            ratios.get("pipeline_over_delta_copy"),
            MAX_PIPELINE_OVER_DELTA_COPY,
            rows,
            at_target,
        ),
        _target(
            "incremental_month_s <= 15 % of the full run",
            ratios.get("incremental_over_pipeline"),
            MAX_INCREMENTAL_SHARE,
            rows,
            at_target,
        ),
        _target(
            "noop_run_s <= 60 s",
            run.get("noop_run_s") if run else None,
            MAX_NOOP_RUN_S,
            rows,
            at_target,
        ),
        _target(
            "s per million rows grows <= 1.15x (1e7 -> 1e8)",
            step["s_per_million_ratio"] if step else None,
            MAX_PER_ROW_GROWTH,
            step_rows,
            step_as_specified,
        ),
        _target(
            "peak driver RSS grows <= 1.2x (1e7 -> 1e8)",
            step["peak_driver_rss_ratio"] if step else None,
            MAX_DRIVER_RSS_GROWTH,
            step_rows,
            step_as_specified,
        ),
        {
            "target": "a 1e9-row run completes",
            "limit": None,
            "value": billion[0]["pipeline_s"] if billion else None,
            "usage_rows": billion[0]["usage_rows"] if billion else None,
            "as_specified": bool(billion),
            "holds": True if billion else None,
        },
        _target(
            "goal: pipeline_s <= 3,600 s at 1e9",
            billion[0]["pipeline_s"] if billion else None,
            MAX_BILLION_S,
            billion[0]["usage_rows"] if billion else None,
            bool(billion),
        ),
    ]


def summarise(machine: Mapping[str, Any], runs: Sequence[Run], **settings: Any) -> dict[str, Any]:
    """The whole result: machine, settings, runs with their ratios, growth and targets."""
    return {
        "machine": dict(machine),
        "settings": settings,
        "runs": [
            {**run, **(run_ratios(run) if run.get("status", "ok") == "ok" else {})} for run in runs
        ],
        "growth": growth(runs),
        "targets": targets(runs),
    }


def _rows(n: int | None) -> str:
    if n is None:
        return "-"
    exponent = len(str(n)) - 1
    return f"1e{exponent}" if n == 10**exponent else f"{n:,}"


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024 / 1024:,.1f}"


def _holds(value: bool | None) -> str:
    return {True: "holds", False: "**missed**", None: "not measured"}[value]


def render_markdown(result: Mapping[str, Any]) -> str:
    """The result as Markdown: runs, stages per run, growth, targets."""
    machine = result["machine"]
    lines = [
        "# carbonlake benchmark",
        "",
        f"Machine: {machine.get('cores')} cores, {machine.get('memory_gb')} GB; "
        f"created {result['settings'].get('created', '-')}.",
        "",
        "| usage rows | pipeline s | bare scan s | DuckDB s | Delta copy s | pipeline / bare | "
        "pipeline / DuckDB | pipeline / copy | s per 1e6 rows | incremental month s | "
        "incremental / run | no-op run s | peak driver RSS MB | peak executor MB | landing MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in result["runs"]:
        if run.get("status", "ok") != "ok":
            lines.append(
                f"| {_rows(run['usage_rows'])} | failed: {run.get('error', '?')} |" + " |" * 13
            )
            continue
        lines.append(
            "| "
            + " | ".join(
                [
                    _rows(run["usage_rows"]),
                    _num(run.get("pipeline_s")),
                    _num(run.get("bare_scan_s")),
                    _num(run.get("duckdb_s")),
                    _num(run.get("delta_copy_s")),
                    _num(run.get("pipeline_over_bare_scan"), 2),
                    _num(run.get("pipeline_over_duckdb"), 2),
                    _num(run.get("pipeline_over_delta_copy"), 2),
                    _num(run.get("s_per_million_rows"), 2),
                    _num(run.get("incremental_month_s")),
                    _num(run.get("incremental_over_pipeline"), 3),
                    _num(run.get("noop_run_s")),
                    _num(run.get("peak_driver_rss_mb"), 0),
                    _num(run.get("peak_executor_mb"), 0),
                    _num(run.get("landing_mb"), 0),
                ]
            )
            + " |"
        )
    for run in result["runs"]:
        if run.get("status", "ok") != "ok" or not run.get("stages"):
            continue
        lines += [
            "",
            f"## Stages at {_rows(run['usage_rows'])} usage rows",
            "",
            f"Delta commits in the lake after the run: {_num(run.get('lake_commits'))}.",
            "",
            "| stage | s | rows in | rows/s per core | Spark jobs | shuffle MB | spill MB | "
            "task s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, stage in run["stages"].items():
            lines.append(
                f"| {name} | {_num(stage.get('s'))} | {_num(stage.get('rows_in'))} | "
                f"{_num(stage.get('rows_per_s_per_core'), 0)} | {_num(stage.get('jobs'))} | "
                f"{_mb(stage.get('shuffle_bytes'))} | {_mb(stage.get('spill_bytes'))} | "
                f"{_num(stage.get('task_s'))} |"
            )
    if result["growth"]:
        lines += [
            "",
            "## Growth between scales",
            "",
            "| from | to | time ratio | s per 1e6 rows ratio | peak driver RSS ratio |",
            "|---:|---:|---:|---:|---:|",
        ]
        for step in result["growth"]:
            lines.append(
                f"| {_rows(step['from_rows'])} | {_rows(step['to_rows'])} | "
                f"{_num(step['pipeline_s_ratio'], 2)} | {_num(step['s_per_million_ratio'], 2)} | "
                f"{_num(step['peak_driver_rss_ratio'], 2)} |"
            )
    lines += ["", "## Targets", "", "| target | at | value | limit | result |"]
    lines.append("|---|---|---:|---:|---|")
    for target in result["targets"]:
        rows = target["usage_rows"]
        at = " -> ".join(_rows(r) for r in rows) if isinstance(rows, list) else _rows(rows)
        if rows is not None and not target["as_specified"]:
            at += " (not the stated scale)"
        lines.append(
            f"| {target['target']} | {at} | {_num(target['value'], 2)} | "
            f"{_num(target['limit'], 2)} | {_holds(target['holds'])} |"
        )
    return "\n".join(lines) + "\n"
