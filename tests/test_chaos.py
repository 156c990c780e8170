"""The CI-sized chaos run (scripts/chaos): real SIGKILLs of a real run and export, then
the reader-side checks and the re-run (docs/operations.md §9.6)."""

from __future__ import annotations

import sys
from pathlib import Path

from carbonlake_tools.chaos import COMMIT_ORDER, plans, run_chaos


def test_plans_cover_every_commit_boundary_at_twenty_kills():
    import random

    chosen = plans(20, random.Random(1))
    targets = {p.target for p in chosen if p.command == "run"}
    assert targets >= {f"{kind}:{t}" for t in COMMIT_ORDER for kind in ("inside", "after")}
    assert sum(p.command == "export" for p in chosen) == 2 and len(chosen) == 20


def test_killed_runs_never_show_readers_a_half_finished_run(spark, generated_world, tmp_path):
    # Two kills (inside a table commit, and an export), each in a process of its own, of
    # re-runs on a copy of the session world's lake, which is the reference (a first run's
    # ingest per kill is scripts/chaos's). The concurrent runs are scripts/chaos's too
    # (and, in process, tests/test_run_protocol.py's).
    world = generated_world("chaos-reference").config
    summary, ok = run_chaos(
        kills=2,
        scale=0,
        months=2,
        seed=23,
        work=tmp_path,
        python=sys.executable,
        concurrency=False,
        from_reference=True,
        clean_run=(Path(world.landing), Path(world.lake)),
    )
    assert ok, (tmp_path / "chaos.log").read_text()
    assert summary.startswith("chaos: 2 kills (commit boundaries hit: 1)"), summary
    assert "0 inconsistent views, 0 differences after re-run" in summary
    assert summary.endswith("concurrency: not run")
