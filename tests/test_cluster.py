"""The README's spark-submit recipe on a real standalone cluster (scripts/cluster-test,
docs/operations.md §2.4), and the recipe's text: README and docs/operations.md §2.2 hold
the same blocks, and the install block names exactly carbonlake's runtime dependencies."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path

import pytest
import tomllib
from helpers import SESSION_WORLD

from carbonlake_tools.cluster_test import (
    _recipe_months,
    bash_blocks,
    read_recipe,
    section,
)

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(
    r"^cluster-test: 2 executors \(tasks: [1-9]\d*, [1-9]\d*; export: \d+, \d+\), "
    r"gold equals local mode \(gold/account_emissions [1-9]\d* rows, "
    r"gold/unallocated \d+ rows, .*\), [1-9]\d* export files equal; .*local mode given.*$"
)


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_readme_and_operations_hold_the_same_recipe() -> None:
    recipe = read_recipe(ROOT)
    assert "jobs/run_pipeline.py" in recipe.submit and "jobs/export_carbon.py" in recipe.submit
    assert "--py-files dist/carbon_core.zip" in recipe.submit
    assert _recipe_months(recipe.submit) == ["--from", "2025-01", "--to", "2025-01"]


def test_the_install_block_names_the_runtime_dependencies_and_not_carbonlake() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    wanted |= {_name(r) for r in project["optional-dependencies"]["forecast"]}
    words = read_recipe(ROOT).install.replace("\\\n", " ").split()
    assert words[:4] == ["pip", "install", "-c", "constraints.txt"]
    assert {_name(w) for w in words[4:]} == wanted


def test_sections_and_blocks_are_found() -> None:
    text = "# A\n## B x\n```bash\none\n```\n### B.1\n```bash\ntwo\n```\n## C\n```bash\nthree\n```\n"
    assert bash_blocks(section(text, "## B")) == ["one\n", "two\n"]
    assert bash_blocks(section(text, "### B.1")) == ["two\n"]


@pytest.mark.slow
def test_the_recipe_runs_on_a_standalone_cluster_as_in_local_mode(spark, generated_world) -> None:
    # The session's world, run in local mode already, is the reference: one run fewer.
    from carbon_core.calendar import shift_month
    from carbon_core.export import export_lake

    world = generated_world("cluster")
    recipe_months = _recipe_months(read_recipe(ROOT).submit)
    first, last = (dt.date.fromisoformat(f"{m}-01") for m in recipe_months[1::2])
    world_months = [
        shift_month(dt.date.fromisoformat(f"{SESSION_WORLD['start_month']}-01"), i)
        for i in range(SESSION_WORLD["months"])
    ]
    assert first in world_months and last in world_months, "the session world must hold them"
    export_lake(
        spark, world.config.lake, world.config.exports, month_from=first, month_to=last,
        log=lambda _line: None,
    )  # fmt: skip
    reference = [str(world.config.landing), str(world.config.lake), str(world.config.exports)]
    done = subprocess.run(
        [str(ROOT / "scripts" / "cluster-test"), "--reference", *reference],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and SUMMARY.match(lines[0]), done.stdout
