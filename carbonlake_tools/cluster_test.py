"""`scripts/cluster-test`: the README's spark-submit recipe on a real Spark standalone cluster.

1. Reads the recipe from README.md ("Running on a cluster": the block that installs the
   cluster's Python, then the block that submits) and checks that docs/operations.md §2.2
   holds the same two blocks, word for word.
2. The cluster's Python: a virtual environment of its own (cached in .cache/cluster-python)
   made by running the README's install block: carbonlake's dependencies, not carbonlake.
   It is checked to have neither carbon_core nor carbonlake_tools, so executors get the
   project only from what the recipe ships.
3. Copies the working tree to a scratch checkout (as an operator's clone) and writes the
   test cluster's `conf/cluster.yaml` there: landing, lake and exports as file:// URIs of
   local folders, which the workers see since they share this machine.
4. Generates a small world with the developer .venv and runs it in local mode (run, then
   export): the reference. With --reference, a finished local-mode run given by its
   landing, lake and exports is the reference instead (the test suite hands over its own
   session world, which saves CI a second local run); it may hold more months than the
   recipe runs, and only the recipe's months are compared.
5. Starts a master and two workers (1 core, 2 GB each) on 127.0.0.1 from the cluster
   Python's pyspark distribution (`bin/spark-class ...Master` / `...Worker`), with a
   spark-defaults.conf that plays the platform's part: the master URL, driver and executor
   sizes, `spark.pyspark.python` and event logs.
6. Runs the submit block verbatim in the checkout, with the cluster Python first on PATH.
7. Checks from the event logs that the executors of both workers ran tasks, that
   gold/account_emissions and gold/unallocated equal local mode's (relative 1e-12), and
   that the export files hold local mode's rows; prints one summary line on stdout.

Every process it starts gets its own process group and a marker variable in its
environment; all are stopped on the way out (also on an error or a signal), and any
process still carrying the marker is killed and reported. Progress goes to stderr, logs to
the scratch folder, which is removed unless the test fails or --keep is given.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

README_SECTION = "## Running on a cluster"
OPERATIONS_SECTION = "### 2.2 "
GOLD_TABLES = ("gold/account_emissions", "gold/unallocated")
REL_TOLERANCE = 1e-12
MARKER = "CARBONLAKE_CLUSTER_TEST"
WORKERS = 2
WORKER_CORES = 1
WORKER_MEMORY = "2g"
EXECUTOR_MEMORY = "1g"
DRIVER_MEMORY = "2g"
SHUFFLE_PARTITIONS = 2  # one per executor core: small data, fewer tasks
# Environment that would let the driver or the executors find the project or another Python.
_SCRUBBED = (
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "PYSPARK_PYTHON",
    "PYSPARK_DRIVER_PYTHON",
    "SPARK_HOME",
    "SPARK_CONF_DIR",
    "CARBONLAKE_DELTA_JARS",
)


class ClusterTestError(Exception):
    """A check failed; the message says which."""


def log(message: str) -> None:
    print(f"cluster-test: {message}", file=sys.stderr, flush=True)


# -- the recipe ---------------------------------------------------------------------------


def section(markdown: str, heading: str) -> str:
    """The text under the first heading starting with `heading`, to the next heading of
    the same or a higher level."""
    lines = markdown.splitlines()
    level = len(heading) - len(heading.lstrip("#"))
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        raise ClusterTestError(f"no section {heading!r}")
    end = len(lines)
    for i in range(start + 1, len(lines)):
        hashes = len(lines[i]) - len(lines[i].lstrip("#"))
        if 0 < hashes <= level and lines[i][hashes : hashes + 1] == " ":
            end = i
            break
    return "\n".join(lines[start + 1 : end])


def bash_blocks(text: str) -> list[str]:
    """The ```bash code blocks of a markdown text, without their fences."""
    return [m.group(1) for m in re.finditer(r"^```bash\n(.*?)^```", text, re.M | re.S)]


@dataclass(frozen=True)
class Recipe:
    install: str  # run once on every node's Python
    submit: str  # run from a checkout, against the cluster


def read_recipe(root: Path) -> Recipe:
    """The README's recipe; docs/operations.md §2.2 must hold the same blocks."""
    blocks = bash_blocks(section((root / "README.md").read_text(), README_SECTION))
    if len(blocks) != 2:
        raise ClusterTestError(
            f"README.md {README_SECTION!r} should hold 2 bash blocks (install, submit), "
            f"has {len(blocks)}"
        )
    operations = bash_blocks(
        section((root / "docs" / "operations.md").read_text(), OPERATIONS_SECTION)
    )
    missing = [b for b in blocks if b not in operations]
    if missing:
        raise ClusterTestError(
            "docs/operations.md §2.2 does not hold the README's recipe block:\n" + missing[0]
        )
    return Recipe(install=blocks[0], submit=blocks[1])


# -- processes ----------------------------------------------------------------------------


@dataclass
class Processes:
    """Everything started, each in a process group of its own, all carrying MARKER."""

    marker: str
    groups: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, MARKER: self.marker}

    def start(
        self, name: str, command: Sequence[str], env: dict[str, str], out: IO[bytes], cwd: Path
    ) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            list(command),
            env=self.env(env),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.groups.append((name, process))
        return process

    def run(
        self,
        name: str,
        command: Sequence[str],
        env: dict[str, str],
        logfile: Path,
        cwd: Path,
        timeout: float,
    ) -> None:
        """Run to the end; on failure raise with the log's tail."""
        with logfile.open("ab") as out:
            process = self.start(name, command, env, out, cwd)
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired as error:
                _stop_group(process)
                raise ClusterTestError(
                    f"{name} took over {timeout:.0f} s\n{tail(logfile)}"
                ) from error
        if code != 0:
            raise ClusterTestError(f"{name} failed (exit {code}); {logfile}:\n{tail(logfile)}")

    def stop_all(self) -> list[int]:
        """Stop every group (last started first); kill any marked process left over and
        return their pids (leaks)."""
        for _name, process in reversed(self.groups):
            _stop_group(process)
        leaked = marked_processes(self.marker)
        for pid in leaked:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return leaked


def _stop_group(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM the process group (a worker takes its executors down with it), then
    SIGKILL whatever is left after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            process.poll()
            if not _group_alive(process.pid):
                return
            time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # A zombie leader keeps the group "alive" until reaped: poll() above reaps ours.
    return any(_pgid(pid) == pgid and not _zombie(pid) for pid in _pids())


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def marked_processes(marker: str) -> list[int]:
    """Live processes whose environment carries MARKER=marker (started by this run)."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for pid in _pids():
        if pid == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and not _zombie(pid):
            found.append(pid)
    return found


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return textwrap.indent("\n".join(text[-lines:]), "  | ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the cluster's Python -----------------------------------------------------------------


def cluster_python(root: Path, recipe: Recipe, checkout: Path, work: Path) -> Path:
    """A virtual environment made by the README's install block (cached across runs);
    returns its folder. It holds carbonlake's dependencies, never carbonlake."""
    home = root / ".cache" / "cluster-python"
    base = Path(getattr(sys, "_base_executable", sys.executable))
    want = hashlib.sha256(
        "\n".join(
            [recipe.install, (root / "constraints.txt").read_text(), str(base), sys.version]
        ).encode()
    ).hexdigest()
    stamp = home / ".carbonlake-cluster-python"
    if not (stamp.is_file() and stamp.read_text().strip() == want):
        log(f"installing the cluster's Python into {home} (the README's install block)")
        shutil.rmtree(home, ignore_errors=True)
        logfile = work / "logs" / "cluster-python.log"
        subprocess.run([str(base), "-m", "venv", str(home)], check=True)
        env = _path_first(home / "bin", os.environ)
        with logfile.open("ab") as out:
            # Build tools for scripts/package (the wheel), not part of the runtime.
            subprocess.run(
                [str(home / "bin" / "python"), "-m", "pip", "install", "-q",
                 "--disable-pip-version-check", "setuptools>=68", "wheel"],
                check=True, stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", recipe.install],
                cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        if done.returncode != 0:
            raise ClusterTestError(f"the README's install block failed:\n{tail(logfile)}")
        stamp.write_text(want + "\n")
    python = home / "bin" / "python"
    probe = subprocess.run(
        [str(python), "-c",
         "import importlib.util as u; print([m for m in ('carbon_core', 'carbonlake_tools')"
         " if u.find_spec(m)])"],
        cwd=work, env=_path_first(home / "bin", os.environ), capture_output=True, text=True,
    )  # fmt: skip
    if probe.returncode != 0 or probe.stdout.strip() != "[]":
        raise ClusterTestError(
            f"the cluster's Python {python} must not have the project: {probe.stdout}{probe.stderr}"
        )
    return home


def _path_first(folder: Path, base: os._Environ[str] | dict[str, str]) -> dict[str, str]:
    """The environment with `folder` first on PATH and no other virtual environment."""
    env = {k: v for k, v in base.items() if k not in _SCRUBBED}
    parts = [p for p in env.get("PATH", "").split(os.pathsep) if p and "/.venv/" not in p + "/"]
    env["PATH"] = os.pathsep.join([str(folder), *parts])
    return env


# -- the working copy ---------------------------------------------------------------------


def copy_checkout(root: Path, target: Path) -> None:
    """The working tree's files (tracked and new, not ignored) as a fresh checkout, plus
    the Delta JARs already fetched (scripts/delta-jars then finds them current)."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        source = root / raw.decode()
        if source.is_file():
            destination = target / raw.decode()
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    jars = root / ".cache" / "delta-jars"
    if jars.is_dir():
        shutil.copytree(jars, target / ".cache" / "delta-jars")


def _yaml_config(
    *, master: str | None, delta_jars: str, landing: str, lake: str, exports: str, app: str
) -> str:
    return textwrap.dedent(
        f"""\
        # Written by scripts/cluster-test (carbonlake_tools/cluster_test.py).
        lake: {lake}
        landing: {landing}
        exports: {exports}
        spark:
          master: {master or "null"}
          app_name: {app}
          shuffle_partitions: {SHUFFLE_PARTITIONS}
          delta_jars: {delta_jars}
          driver_memory: {DRIVER_MEMORY if master else "null"}
        export:
          format: csv
          history_months: 38
        """
    )


# -- the standalone cluster ---------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    master_url: str
    master_ui: str
    worker_dirs: tuple[Path, ...]


def start_cluster(
    processes: Processes,
    spark_home: Path,
    work: Path,
    conf_dir: Path,
    env: dict[str, str],
    port: int,
) -> Cluster:
    """A master (on `port`) and WORKERS workers on 127.0.0.1; returns once all workers
    are ALIVE."""
    ui_port = free_port()
    daemon_env = dict(env)
    daemon_env.update(
        SPARK_HOME=str(spark_home),
        SPARK_CONF_DIR=str(conf_dir),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_DAEMON_MEMORY="512m",
        SPARK_LOCAL_DIRS=str(work / "spark-local"),
    )
    spark_class = str(spark_home / "bin" / "spark-class")
    logs = work / "logs"
    with (logs / "master.log").open("ab") as out:
        processes.start(
            "master",
            [spark_class, "org.apache.spark.deploy.master.Master",
             "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)],
            daemon_env, out, work,
        )  # fmt: skip
    master_url = f"spark://127.0.0.1:{port}"
    master_ui = f"http://127.0.0.1:{ui_port}"
    _wait(lambda: _master_state(master_ui) is not None, 90, "the master to start", logs)
    worker_dirs = []
    for number in range(1, WORKERS + 1):
        folder = work / f"worker{number}"
        folder.mkdir()
        worker_dirs.append(folder)
        with (logs / f"worker{number}.log").open("ab") as out:
            processes.start(
                f"worker{number}",
                [spark_class, "org.apache.spark.deploy.worker.Worker",
                 "--host", "127.0.0.1", "--cores", str(WORKER_CORES),
                 "--memory", WORKER_MEMORY, "--work-dir", str(folder),
                 "--webui-port", str(free_port()), master_url],
                daemon_env, out, work,
            )  # fmt: skip

    def all_alive() -> bool:
        state = _master_state(master_ui)
        alive = [w for w in (state or {}).get("workers", []) if w.get("state") == "ALIVE"]
        return len(alive) == WORKERS

    _wait(all_alive, 120, f"{WORKERS} workers to register", logs)
    return Cluster(master_url, master_ui, tuple(worker_dirs))


def _master_state(ui: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{ui}/json/", timeout=5) as response:
            state: dict[str, Any] = json.load(response)
            return state
    except (OSError, ValueError):
        return None


def _wait(check: Any, seconds: float, what: str, logs: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    tails = "\n".join(f"{p.name}:\n{tail(p, 15)}" for p in sorted(logs.glob("*.log")))
    raise ClusterTestError(f"timed out after {seconds:.0f} s waiting for {what}\n{tails}")


_PLAN_EVENTS = (
    "SparkListenerSQLExecutionStart",
    "SparkListenerSQLAdaptiveExecutionUpdate",
    "SparkListenerSQLAdaptiveSQLMetricUpdates",
    "SparkListenerDriverAccumUpdates",
)


def spark_defaults(cluster_url: str, python: Path, work: Path) -> str:
    """The platform's settings (what EMR or a Kubernetes image would hold)."""
    settings = {
        "spark.master": cluster_url,
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.memory": DRIVER_MEMORY,
        "spark.executor.memory": EXECUTOR_MEMORY,
        "spark.executor.cores": str(WORKER_CORES),
        # docs/operations.md §3.4: Spark's large generated methods JIT-compiled.
        "spark.executor.extraJavaOptions": "-XX:-DontCompileHugeMethods",
        "spark.pyspark.python": str(python),
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": (work / "events").as_uri(),
        "spark.eventLog.compress": "false",
        # The task events are what the test reads; the SQL plans (hundreds of MB for one
        # run, written by the driver) are left out.
        "spark.eventLog.excludedPatterns": ",".join(
            f"org.apache.spark.sql.execution.ui.{name}" for name in _PLAN_EVENTS
        ),
        "spark.ui.enabled": "false",
        "spark.local.dir": str(work / "spark-local"),
    }
    return "".join(f"{key} {value}\n" for key, value in settings.items())


LOG4J = """\
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex
"""


# -- checks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppTasks:
    app_id: str
    started: int
    tasks: dict[str, int]  # executor id -> tasks ended


def applications(events: Path) -> list[AppTasks]:
    """Per application (in start order): tasks per executor, from the event logs."""
    apps = []
    for path in sorted(events.iterdir()):
        app_id, started = path.name, 0
        tasks: dict[str, int] = {}
        for part in _event_files(path):
            with part.open() as lines:
                for line in lines:
                    event = json.loads(line)
                    kind = event.get("Event")
                    if kind == "SparkListenerApplicationStart":
                        app_id = event.get("App ID", app_id)
                        started = int(event.get("Timestamp", 0))
                    elif kind == "SparkListenerTaskEnd":
                        executor = str(event["Task Info"]["Executor ID"])
                        tasks[executor] = tasks.get(executor, 0) + 1
        apps.append(AppTasks(app_id, started, tasks))
    return sorted(apps, key=lambda a: a.started)


def _event_files(path: Path) -> list[Path]:
    """One application's event log: a file, or (rolling logs, Spark 4's default) a folder
    `eventlog_v2_<app>` of `events_<n>_<app>` files."""
    if path.is_file():
        return [path]
    parts = [p for p in path.iterdir() if p.name.startswith("events_")]
    return sorted(parts, key=lambda p: int(p.name.split("_")[1]))


def tasks_per_worker(app: AppTasks, worker_dirs: Sequence[Path]) -> list[int]:
    """Tasks run by each worker's executors (a worker keeps a folder per executor)."""
    counts = []
    for folder in worker_dirs:
        executors = [p.name for p in (folder / app.app_id).glob("*") if p.is_dir()]
        counts.append(sum(app.tasks.get(e, 0) for e in executors))
    unplaced = set(app.tasks) - {
        p.name for folder in worker_dirs for p in (folder / app.app_id).glob("*")
    }
    if unplaced - {"driver"}:
        raise ClusterTestError(f"{app.app_id}: tasks on unknown executors {sorted(unplaced)}")
    return counts


def compare_gold(
    local_lake: Path, cluster_lake: Path, months: Sequence[str]
) -> tuple[dict[str, int], float]:
    """Rows per gold table in `months` (YYYY-MM); the largest relative difference of any
    number. Raises unless both lakes' tables hold the same rows of those months (numbers
    to REL_TOLERANCE)."""
    import deltalake
    import numpy as np
    import pandas as pd

    from carbon_core.lake import tables

    catalog = {t.name: t for t in (tables.ACCOUNT_EMISSIONS, tables.UNALLOCATED)}
    rows: dict[str, int] = {}
    worst = 0.0
    for name in GOLD_TABLES:
        keys = list(catalog[name].keys)
        frames = []
        for lake in (local_lake, cluster_lake):
            frame = deltalake.DeltaTable(str(lake / name)).to_pandas()
            in_months = pd.to_datetime(frame["month"]).dt.strftime("%Y-%m").isin(months)
            frames.append(frame[in_months].sort_values(keys, ignore_index=True))
        local, cluster = frames
        if local.shape != cluster.shape or list(local.columns) != list(cluster.columns):
            raise ClusterTestError(f"{name}: shape {cluster.shape} on the cluster, {local.shape}")
        if local.empty and name == tables.ACCOUNT_EMISSIONS.name:
            raise ClusterTestError(f"{name}: no rows")
        for column in local.columns:
            a, b = local[column].to_numpy(), cluster[column].to_numpy()
            if np.issubdtype(a.dtype, np.floating) and np.issubdtype(b.dtype, np.floating):
                both_nan = np.isnan(a) & np.isnan(b)
                scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300)
                rel = np.where(both_nan, 0.0, np.abs(a - b) / scale)
                rel = np.where((a == b) | both_nan, 0.0, rel)
                if np.isnan(rel).any() or rel.max(initial=0.0) > REL_TOLERANCE:
                    raise ClusterTestError(
                        f"{name}.{column}: differs from local mode by {np.nanmax(rel):.3g} "
                        f"(relative; tolerance {REL_TOLERANCE:g})"
                    )
                worst = max(worst, float(rel.max(initial=0.0)))
            elif not (local[column].astype(str) == cluster[column].astype(str)).all():
                raise ClusterTestError(f"{name}.{column}: values differ from local mode")
        rows[name] = len(local)
    return rows, worst


def compare_exports(local: Path, cluster: Path, months: Sequence[str]) -> int:
    """Number of export files of `months` (<payer>/<YYYY-MM>/...); raises unless both trees
    hold the same such files with the same rows (in any order), the refresh time (each
    lake's commit time) aside."""
    everything = _export_files(cluster)
    names, other = _of_months(_export_files(local), months), _of_months(everything, months)
    if len(everything) != len(other):
        raise ClusterTestError(f"the cluster exported months besides {list(months)}")
    if not names:
        raise ClusterTestError(f"local mode exported nothing to {local}")
    if names != other:
        only = sorted(set(names) ^ set(other))[:5]
        raise ClusterTestError(f"export files differ from local mode's, e.g. {only}")
    for name in names:
        if _export_rows(local / name) != _export_rows(cluster / name):
            raise ClusterTestError(f"export file {name} differs from local mode's")
    return len(names)


def _export_files(root: Path) -> list[str]:
    """The customer files under an export root: not the manifest (a Delta table whose
    file names are random) nor a staging folder."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not p.relative_to(root).parts[0].startswith("_")
    )


def _of_months(names: list[str], months: Sequence[str]) -> list[str]:
    """The export files (<payer>/<YYYY-MM>/<file>) of `months`."""
    return [n for n in names if len(Path(n).parts) == 3 and Path(n).parts[1] in months]


def _export_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """A CSV export's header and sorted rows without `last_refresh_timestamp`."""
    if path.suffix != ".csv":
        return [], [[path.read_bytes().hex()]]
    with path.open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    keep = [i for i, column in enumerate(header) if column != "last_refresh_timestamp"]
    return [header[i] for i in keep], sorted([row[i] for i in keep] for row in rows)


# -- the whole test -----------------------------------------------------------------------


def local_run(
    processes: Processes,
    root: Path,
    work: Path,
    config: Path,
    landing: Path,
    months: list[str],
    world: list[str],
) -> None:
    """Generates the world (generate's `world` arguments) with the developer .venv, then
    runs and exports the recipe's months in local mode, in a process of its own."""
    log(f"generating a world ({' '.join(world)}), running it in local mode")
    code = (
        "import sys\n"
        "from carbon_core.cli import main\n"
        f"config = {str(config)!r}\n"
        f"months = {months!r}\n"
        f"sys.exit(main(['generate', '--config', config, '--out', {str(landing)!r}, "
        f"*{world!r}])\n"
        "  or main(['run', '--config', config, *months])\n"
        "  or main(['export', '--config', config, *months]))\n"
    )
    env = dict(os.environ)
    env.setdefault("CARBONLAKE_DELTA_JARS", str(root / ".cache" / "delta-jars"))
    env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "SPARK_HOME")}
    env[MARKER] = processes.marker
    processes.run(
        "local mode", [sys.executable, "-c", code], env, work / "logs" / "local.log", work,
        timeout=900,
    )  # fmt: skip


@dataclass(frozen=True)
class Reference:
    """A finished local-mode run: its landing, lake and exports."""

    landing: Path
    lake: Path
    exports: Path


def run(root: Path, work: Path, scale: int, history: int, reference: Reference | None) -> str:
    started = time.monotonic()
    recipe = read_recipe(root)
    for folder in ("logs", "events", "spark-local", "spark-conf", "local"):
        (work / folder).mkdir(parents=True)
    checkout = work / "checkout"
    copy_checkout(root, checkout)
    python_home = cluster_python(root, recipe, checkout, work)
    python = python_home / "bin" / "python"
    spark_home = Path(
        subprocess.run(
            [str(python), "-c", "import os, pyspark; print(os.path.dirname(pyspark.__file__))"],
            check=True, capture_output=True, text=True, cwd=work,
        ).stdout.strip()
    )  # fmt: skip
    processes = Processes(marker=str(work))
    landing = reference.landing if reference else work / "landing"
    (checkout / "conf" / "cluster.yaml").write_text(
        _yaml_config(
            master=None,
            delta_jars="provided",
            landing=landing.as_uri(),
            # A plain path, while landing and exports are file:// URIs: both forms
            # (a file:// lake location trips Delta's CREATE TABLE location check).
            lake=str(work / "cluster" / "lake"),
            exports=(work / "cluster" / "exports").as_uri(),
            app="carbonlake-cluster-test",
        )
    )
    local_config = work / "local.yaml"
    local_config.write_text(
        _yaml_config(
            master="local[2]",
            delta_jars="auto",
            landing=str(landing),
            lake=str(work / "local" / "lake"),
            exports=str(work / "local" / "exports"),
            app="carbonlake-cluster-test-local",
        )
    )
    months = _recipe_months(recipe.submit)
    world = _world_months(months, history)
    try:
        if reference is None:
            world_args = ["--scale", str(scale), *world]
            local_run(processes, root, work, local_config, landing, months, world_args)
        local_seconds = time.monotonic() - started
        local_lake = reference.lake if reference else work / "local" / "lake"
        local_exports = reference.exports if reference else work / "local" / "exports"

        conf_dir = work / "spark-conf"
        env = _path_first(python_home / "bin", os.environ)
        port = free_port()
        defaults = spark_defaults(f"spark://127.0.0.1:{port}", python, work)
        (conf_dir / "spark-defaults.conf").write_text(defaults)
        (conf_dir / "log4j2.properties").write_text(LOG4J)
        log(f"starting a master and {WORKERS} workers from {spark_home}")
        cluster = start_cluster(processes, spark_home, work, conf_dir, env, port)
        log(f"running the README's recipe against {cluster.master_url}")
        recipe_env = dict(env)
        recipe_env.update(SPARK_CONF_DIR=str(conf_dir), SPARK_LOCAL_IP="127.0.0.1")
        cluster_started = time.monotonic()
        processes.run(
            "the README's recipe", ["bash", "-euo", "pipefail", "-c", recipe.submit],
            recipe_env, work / "logs" / "recipe.log", checkout, timeout=1200,
        )  # fmt: skip
        cluster_seconds = time.monotonic() - cluster_started
    finally:
        leaked = processes.stop_all()
    if leaked:
        raise ClusterTestError(f"processes left running after the stop: {leaked} (killed)")

    apps = applications(work / "events")
    if len(apps) != 2:
        raise ClusterTestError(f"expected 2 applications (run, export), found {len(apps)}")
    per_app = [tasks_per_worker(app, cluster.worker_dirs) for app in apps]
    if min(per_app[0]) == 0:
        raise ClusterTestError(f"the run's tasks per worker are {per_app[0]}: a worker was idle")
    run_months = _months_between(months)
    rows, worst = compare_gold(local_lake, work / "cluster" / "lake", run_months)
    files = compare_exports(local_exports, work / "cluster" / "exports", run_months)
    local = "given" if reference else f"{local_seconds:.0f} s"
    run_tasks = ", ".join(str(n) for n in per_app[0])
    export_tasks = ", ".join(str(n) for n in per_app[1])
    gold = ", ".join(f"{name} {count} rows" for name, count in rows.items())
    return (
        f"cluster-test: {WORKERS} executors (tasks: {run_tasks}; export: {export_tasks}), "
        f"gold equals local mode ({gold}, max rel. diff {worst:.1g}), "
        f"{files} export files equal; recipe {cluster_seconds:.0f} s, "
        f"local mode {local}, total {time.monotonic() - started:.0f} s"
    )


def _world_months(run_months: list[str], history: int) -> list[str]:
    """generate's --start/--months: `history` months ending with the run's last month."""
    if not run_months:
        return []
    year, month = (int(part) for part in run_months[-1].split("-"))
    index = year * 12 + month - 1 - (history - 1)
    return ["--start", f"{index // 12:04d}-{index % 12 + 1:02d}", "--months", str(history)]


def _months_between(run_months: list[str]) -> list[str]:
    """The YYYY-MM months of a --from A --to B pair."""
    from carbon_core.calendar import month_range

    if not run_months:
        raise ClusterTestError("the recipe's run gives no --from/--to months")
    first, last = (dt.date.fromisoformat(f"{m}-01") for m in (run_months[1], run_months[3]))
    return [f"{month:%Y-%m}" for month in month_range(first, last)]


def _recipe_months(submit: str) -> list[str]:
    """The run's --from/--to as the recipe gives them, for the local-mode reference."""
    found = re.search(r"run_pipeline\.py[^\n]*?(--from \S+ --to \S+)", submit.replace("\\\n", " "))
    return found.group(1).split() if found else []


@contextmanager
def _signals_as_exit() -> Iterator[None]:
    """SIGTERM/SIGHUP raise SystemExit, so the cleanup in `finally` runs."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/cluster-test", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--scale", type=int, default=20000, help="usage rows of the world")
    parser.add_argument(
        "--months", type=int, default=3, help="months of the world, ending with the run's"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument(
        "--reference",
        nargs=3,
        type=Path,
        metavar=("LANDING", "LAKE", "EXPORTS"),
        help="a finished local-mode run (covering the recipe's months) to compare with, "
        "instead of generating and running one",
    )
    args = parser.parse_args(argv)
    reference = Reference(*(p.resolve() for p in args.reference)) if args.reference else None
    work = Path(tempfile.mkdtemp(prefix="carbonlake-cluster-test-")).resolve()
    ok = False
    try:
        with _signals_as_exit():
            summary = run(args.root.resolve(), work, args.scale, args.months, reference)
        print(summary, flush=True)
        ok = True
        return 0
    except ClusterTestError as error:
        print(f"cluster-test: FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"scratch folder kept: {work}")


if __name__ == "__main__":
    sys.exit(main())
