"""Spark's own metrics, from its REST API's JSON, summed per pipeline stage (job group).

Pure functions over the parsed JSON of /api/v1/applications/<id>/jobs, /stages and
/executors, so they are tested on canned answers without a running Spark.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

UNGROUPED = "(no stage)"
MIB = 1024 * 1024
# A stage whose tasks never ran (its output was reused) carries no metrics.
_SKIPPED = "SKIPPED"


@dataclass
class GroupMetrics:
    """What Spark measured for the jobs of one job group."""

    jobs: int = 0
    job_s: float = 0.0
    task_s: float = 0.0
    input_records: int = 0
    input_bytes: int = 0
    shuffle_read_bytes: int = 0
    shuffle_write_bytes: int = 0
    memory_spill_bytes: int = 0
    disk_spill_bytes: int = 0

    @property
    def shuffle_bytes(self) -> int:
        """Shuffle read + write."""
        return self.shuffle_read_bytes + self.shuffle_write_bytes

    @property
    def spill_bytes(self) -> int:
        """Spill to memory (deserialised size) + spill to disk."""
        return self.memory_spill_bytes + self.disk_spill_bytes

    def as_dict(self) -> dict[str, Any]:
        """Plain fields plus the two sums."""
        return {
            **asdict(self),
            "shuffle_bytes": self.shuffle_bytes,
            "spill_bytes": self.spill_bytes,
        }


def _seconds_between(start: str | None, end: str | None) -> float:
    """Seconds between two REST timestamps ('2025-01-02T03:04:05.678GMT'); 0 if one is missing."""
    import datetime as dt

    if not start or not end:
        return 0.0
    fmt = "%Y-%m-%dT%H:%M:%S.%f%Z"
    return (dt.datetime.strptime(end, fmt) - dt.datetime.strptime(start, fmt)).total_seconds()


def group_metrics(
    jobs: Iterable[Mapping[str, Any]], stages: Iterable[Mapping[str, Any]]
) -> dict[str, GroupMetrics]:
    """Per job group, the summed metrics of the stage attempts its jobs ran.

    A stage shared by several jobs (reused shuffle output) counts once, for the
    first job that lists it; skipped attempts add nothing. Jobs without a group
    are reported under UNGROUPED.
    """
    owner: dict[int, str] = {}
    result: dict[str, GroupMetrics] = {}
    for job in sorted(jobs, key=lambda j: j["jobId"]):
        group = job.get("jobGroup") or UNGROUPED
        metrics = result.setdefault(group, GroupMetrics())
        metrics.jobs += 1
        metrics.job_s += _seconds_between(job.get("submissionTime"), job.get("completionTime"))
        for stage_id in job.get("stageIds", ()):
            owner.setdefault(stage_id, group)
    for stage in stages:
        if stage.get("status") == _SKIPPED:
            continue
        group = owner.get(stage["stageId"], UNGROUPED)
        metrics = result.setdefault(group, GroupMetrics())
        metrics.task_s += stage.get("executorRunTime", 0) / 1000.0
        metrics.input_records += stage.get("inputRecords", 0)
        metrics.input_bytes += stage.get("inputBytes", 0)
        metrics.shuffle_read_bytes += stage.get("shuffleReadBytes", 0)
        metrics.shuffle_write_bytes += stage.get("shuffleWriteBytes", 0)
        metrics.memory_spill_bytes += stage.get("memoryBytesSpilled", 0)
        metrics.disk_spill_bytes += stage.get("diskBytesSpilled", 0)
    return result


def roll_up(groups: Mapping[str, GroupMetrics], prefix: str) -> GroupMetrics:
    """The sum of the groups named `prefix` or `prefix/<anything>` (e.g. all of ingest)."""
    total = GroupMetrics()
    for name, metrics in groups.items():
        if name == prefix or name.startswith(prefix + "/"):
            for key, value in asdict(metrics).items():
                setattr(total, key, getattr(total, key) + value)
    return total


def peak_executor_mb(executors: Iterable[Mapping[str, Any]]) -> float | None:
    """Largest peak JVM heap + off-heap of any executor (the driver, in local mode), in MiB.

    None when Spark has not reported peak memory metrics yet.
    """
    peaks = [
        (e["peakMemoryMetrics"].get("JVMHeapMemory", 0))
        + (e["peakMemoryMetrics"].get("JVMOffHeapMemory", 0))
        for e in executors
        if e.get("peakMemoryMetrics")
    ]
    return round(max(peaks) / MIB, 1) if peaks else None
