"""carbonlake's read side through a local Spark Connect session (docs/operations.md §2.6).

Run by tests/test_connect.py in a subprocess of its own (a Connect client and the suite's
classic session cannot share one Python process):

    python tests/connect_smoke.py LAKE OUT 2025-01 2025-02

It starts a local Spark Connect server (Spark with the Connect plugin, Delta's SQL
extension and JARs, but not Delta's own Connect plugin, which the DeltaTable API needs and
which this project's machines cannot fetch) and then, through the Connect client only: labels
the jobs (session tags), loads the shipped reference tables, reads gold tables with the
public reader, computes the run's monthly summary, writes one table with the public
writer and reads it back by SQL. It prints one JSON line with what it found.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import traceback

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from carbon_core import session
from carbon_core.calendar import parse_month
from carbon_core.lake import read_table, tables, write_table
from carbon_core.reference import load_reference_tables
from carbon_core.session import STAGE_TAG, is_connect, label_jobs
from carbon_core.summary import summarise_months


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def connect_session() -> SparkSession:
    """A Spark Connect client of a local Connect server with carbonlake's session settings
    and Delta.

    What `SparkSession.builder.remote("local[2]")` does, on a free port instead of the
    fixed 15002 (so that two runs on one machine do not collide): start a local Spark with
    the Connect server plugin, then connect to it and send everything through gRPC.
    """
    port = _free_port()
    conf = dict(session._BASE_CONF)
    conf.update(
        {
            "spark.jars": ",".join(session._cached_delta_jars()),
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.driver.memory": "2g",
            "spark.ui.enabled": "false",
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.plugins": "org.apache.spark.sql.connect.SparkConnectPlugin",
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(port),
        }
    )
    server = SparkSession.builder.master("local[2]").appName("carbonlake-connect")
    for key, value in conf.items():
        server = server.config(key, value)
    server.getOrCreate().sparkContext.setLogLevel("ERROR")
    # From here on, pyspark.sql.functions build Connect expressions, not JVM ones.
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    return ConnectSession.builder.remote(f"sc://127.0.0.1:{port}").getOrCreate()


def main(lake: str, out: str, months_text: list[str]) -> int:
    spark = connect_session()
    months = [parse_month(m) for m in months_text]
    label_jobs(spark, "summary")
    label_jobs(spark, "smoke")
    reference = load_reference_tables(spark)
    emissions = read_table(spark, tables.ACCOUNT_EMISSIONS.uri(lake))
    summaries = summarise_months(emissions, read_table(spark, tables.UNALLOCATED.uri(lake)), months)
    per_month = emissions.groupBy("month").agg(F.sum("total_mbm_kg").alias("mbm"))
    write_table(per_month, f"{out.rstrip('/')}/per_month", mode="error")
    written = spark.sql(
        f"select month, mbm from delta.`{out.rstrip('/')}/per_month` order by month"
    ).collect()
    outcome = {
        "connect": is_connect(spark),
        "tags": sorted(t for t in spark.getTags() if t.startswith(STAGE_TAG)),
        "reference_rows": {
            name: getattr(reference, name).count()
            for name in ("grid_factors", "residual_mix", "zip_to_egrid", "fuel_factors")
        },
        "summaries": [dataclasses.asdict(s) for s in summaries],
        "per_month": [[r["month"].isoformat(), r["mbm"]] for r in written],
    }
    print(json.dumps(outcome), flush=True)
    return 0


if __name__ == "__main__":
    code = 1
    try:
        code = main(sys.argv[1], sys.argv[2], sys.argv[3:])
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # The in-process server's JVM and gRPC threads must not keep a failed run alive.
        os._exit(code)
