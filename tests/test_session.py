"""The session factory fails in one clear line when Delta's JARs are missing."""

from __future__ import annotations

import subprocess
import sys


def test_missing_delta_jars_fail_with_one_clear_message(tmp_path):
    # A separate process: the JVM of the test session already has Delta loaded.
    script = (
        "import sys\n"
        "from carbon_core.config import SparkSettings\n"
        "from carbon_core.errors import DeltaJarsMissingError\n"
        "from carbon_core.session import build_spark_session\n"
        "try:\n"
        "    build_spark_session(SparkSettings(delta_jars='provided', driver_memory='512m'))\n"
        "except DeltaJarsMissingError as error:\n"
        "    print('MESSAGE:' + str(error))\n"
        "    sys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 3, result.stderr[-2000:]
    message = result.stdout.split("MESSAGE:", 1)[1]
    assert "scripts/setup" in message
    assert "--packages io.delta:delta-spark_2.13:" in message
