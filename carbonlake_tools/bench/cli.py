"""`python -m carbonlake_tools.bench`: generate worlds at several scales, measure each, tabulate.

Each scale is generated (`carbonlake generate --format parquet`) and measured
(carbonlake_tools.bench.measure) in processes of its own, so every scale starts with a
fresh JVM and its memory peaks are its own; this process starts no Spark.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from carbon_core.config import load_config
from carbonlake_tools.bench.measure import code_version
from carbonlake_tools.bench.report import parse_scales, render_markdown, summarise
from carbonlake_tools.generate.world import PARQUET_ROW_GROUP_BYTES

DEFAULT_SCALES = "1e6,1e7,1e8"
WORLD_MARKER = ".bench-world.json"
DEFAULT_CONFIG = Path("conf/local.yaml")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark the pipeline at several usage scales (see README, Performance).",
    )
    parser.add_argument(
        "--scales", default=DEFAULT_SCALES, help=f"usage rows per world (default {DEFAULT_SCALES})"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="result folder")
    parser.add_argument(
        "--work", type=Path, default=Path("bench/tmp"), help="generated landing zones and lakes"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep generated landing zones and measurements, and reuse them when world and "
        "code match: an invocation cut short goes on where it stopped",
    )
    parser.add_argument("--months", type=int, help="months per world (default: the config's)")
    parser.add_argument("--seed", type=int, help="generator seed (default: the config's)")
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None,
        help="carbonlake configuration (Spark settings, methodology)",
    )
    parser.add_argument("--driver-memory", help="spark.driver.memory for the measured runs")
    parser.add_argument("--master", help="Spark master for the measured runs (default: config's)")
    parser.add_argument(
        "--shuffle-partitions", type=int, help="spark.sql.shuffle.partitions (default: config's)"
    )
    parser.add_argument("--verbose", action="store_true", help="print the pipeline's log")
    return parser


def machine() -> dict[str, Any]:
    """Cores and memory of this machine."""
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
    }


def _world_key(scale: int, seed: int, months: int, start: str, share: float) -> dict[str, Any]:
    return {
        "scale": scale,
        "seed": seed,
        "months": months,
        "start": start,
        "malformed_share": share,
        "format": "parquet",
        # a world written with other row groups has other input splits: not reusable
        "row_group_bytes": PARQUET_ROW_GROUP_BYTES,
    }


def _reusable(landing: Path, key: dict[str, Any]) -> bool:
    marker = landing / WORLD_MARKER
    return marker.is_file() and json.loads(marker.read_text()) == key


def _run_logged(command: list[str], log_file: Path, verbose: bool) -> None:
    """Run a child; its output goes to log_file (and the terminal with --verbose)."""
    with log_file.open("w") as handle:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert process.stdout is not None
        for line in process.stdout:
            handle.write(line)
            if verbose:
                print("   " + line, end="")
        if process.wait() != 0:
            raise RuntimeError(f"{command[2]} failed with exit code {process.returncode}")


def _last_lines(log_file: Path, count: int = 5) -> str:
    if not log_file.is_file():
        return ""
    return " | ".join(line.strip() for line in log_file.read_text().splitlines()[-count:])


def _complete_measurement(run_json: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """A scale's finished measurement of this world and this code, else None: with --reuse
    an invocation that stopped at a later scale measures again only what it lacks."""
    if not run_json.is_file():
        return None
    run: dict[str, Any] = json.loads(run_json.read_text())
    complete = (
        run.get("status") == "ok"
        and not run.get("reference_errors")
        and "incremental_error" not in run
    )
    same = run.get("world") == key and run.get("code_version") == code_version()
    return run if complete and same else None


def bench_scale(scale: int, args: argparse.Namespace, key: dict[str, Any]) -> dict[str, Any]:
    """Generate (or reuse) one world and measure it in child processes; the run's entry."""
    folder = args.work / str(scale)
    landing, lake, exports = folder / "landing", folder / "lake", folder / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    config = ["--config", str(args.config)] if args.config else []
    generate_s = None
    step = "generate"
    try:
        if not (args.reuse and _reusable(landing, key)):
            if not args.reuse:
                shutil.rmtree(landing, ignore_errors=True)
            (landing / WORLD_MARKER).unlink(missing_ok=True)
            print(f"bench {scale:,}: generating {landing}", flush=True)
            started = time.monotonic()
            _run_logged(
                [
                    python,
                    "-m",
                    "carbon_core.cli",
                    "generate",
                    *config,
                    "--out",
                    str(landing),
                    "--scale",
                    str(scale),
                    "--seed",
                    str(key["seed"]),
                    "--months",
                    str(key["months"]),
                    "--start",
                    key["start"],
                    "--malformed-share",
                    str(key["malformed_share"]),
                    "--format",
                    "parquet",
                    # With --reuse a generation cut short (hours at 1e9) goes on where
                    # it stopped; without, the world is written from scratch.
                    *(["--resume"] if args.reuse else []),
                ],
                folder / "generate.log",
                args.verbose,
            )
            generate_s = round(time.monotonic() - started, 2)
            (landing / WORLD_MARKER).write_text(json.dumps(key))
        step = "measure"
        run_json = folder / "run.json"
        earlier = _complete_measurement(run_json, key) if args.reuse else None
        if earlier is not None:
            print(f"bench {scale:,}: measured before with this world and code, kept", flush=True)
            earlier["generate_s"] = earlier.get("generate_s") if generate_s is None else generate_s
            return earlier
        shutil.rmtree(lake, ignore_errors=True)
        shutil.rmtree(exports, ignore_errors=True)
        print(f"bench {scale:,}: running the pipeline and the references", flush=True)
        run_json.unlink(missing_ok=True)
        extra = [*config]
        if args.driver_memory:
            extra += ["--driver-memory", args.driver_memory]
        if args.master:
            extra += ["--master", args.master]
        if args.shuffle_partitions:
            extra += ["--shuffle-partitions", str(args.shuffle_partitions)]
        if args.verbose:
            extra.append("--verbose")
        if args.reuse:
            extra.append("--resume")
        _run_logged(
            [
                python,
                "-m",
                "carbonlake_tools.bench.measure",
                *extra,
                "--landing",
                str(landing),
                "--lake",
                str(lake),
                "--exports",
                str(exports),
                "--out",
                str(run_json),
                "--usage-rows",
                str(scale),
            ],
            folder / "measure.log",
            args.verbose,
        )
        run = json.loads(run_json.read_text())
        run["generate_s"] = generate_s
        run["world"] = key
        run_json.write_text(json.dumps(run, indent=2))
    except (RuntimeError, OSError) as error:
        run = {
            "usage_rows": scale,
            "status": "failed",
            "error": f"{step}: {error}: {_last_lines(folder / f'{step}.log')}",
        }
    finally:
        shutil.rmtree(lake, ignore_errors=True)
        shutil.rmtree(exports, ignore_errors=True)
        if not args.reuse:
            shutil.rmtree(landing, ignore_errors=True)
    return run


def write_results(result: dict[str, Any], out: Path, stamp: str) -> list[Path]:
    """latest.json and latest.md, plus dated copies; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    markdown = render_markdown(result)
    paths = []
    for name in ("latest", stamp):
        (out / f"{name}.json").write_text(text)
        (out / f"{name}.md").write_text(markdown)
        paths += [out / f"{name}.json", out / f"{name}.md"]
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        scales = parse_scales(args.scales)
    except ValueError as error:
        print(f"bench: error: --scales: {error}", file=sys.stderr)
        return 2
    settings = load_config(args.config).generate
    seed = settings.seed if args.seed is None else args.seed
    months = args.months or settings.months
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    runs = []
    for scale in scales:
        key = _world_key(scale, seed, months, settings.start_month, settings.malformed_share)
        run = bench_scale(scale, args, key)
        status = (
            f"pipeline {run['pipeline_s']} s, bare scan {run['bare_scan_s']} s, "
            f"DuckDB {run['duckdb_s']} s, Delta copy {run.get('delta_copy_s')} s"
            if run["status"] == "ok"
            else run["error"]
        )
        print(f"bench {scale:,}: {status}", flush=True)
        runs.append(run)
    result = summarise(
        machine(),
        runs,
        created=created.isoformat(),
        scales=scales,
        seed=seed,
        months=months,
        config=str(args.config) if args.config else None,
    )
    for path in write_results(result, args.out, created.strftime("%Y-%m-%dT%H%M%SZ")):
        print(f"bench: wrote {path}")
    return 0 if all(r["status"] == "ok" for r in runs) else 1
