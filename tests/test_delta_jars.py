"""The Delta JAR set (scripts/delta-jars.pom.xml) carries Delta's own JARs only: nothing
that Spark's distribution ships already (pyspark's jars/ folder), in any version."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyspark
import pytest

from carbon_core.session import delta_version

ROOT = Path(__file__).resolve().parent.parent
_JAR = re.compile(r"^(?P<artifact>.+?)-(?P<version>\d[\w.\-]*)\.jar$")


def artifact(jar_name: str) -> str:
    """The artifact of a JAR file name: 'zstd-jni-1.5.7-3.jar' -> 'zstd-jni'."""
    match = _JAR.match(jar_name)
    return match["artifact"] if match else jar_name.removesuffix(".jar")


def artifacts(folder: Path) -> dict[str, str]:
    """artifact name -> JAR file name, for every JAR in the folder."""
    return {artifact(jar.name): jar.name for jar in sorted(folder.glob("*.jar"))}


def test_jar_names_are_split_into_artifact_and_version() -> None:
    assert artifact("delta-spark_2.13-4.4.0.jar") == "delta-spark_2.13"
    assert artifact("zstd-jni-1.5.7-3.jar") == "zstd-jni"
    assert artifact("jackson-annotations-2.21.jar") == "jackson-annotations"


def test_the_delta_jar_set_holds_no_jar_spark_ships() -> None:
    folder = Path(os.environ.get("CARBONLAKE_DELTA_JARS", ROOT / ".cache" / "delta-jars"))
    if not (folder / f"delta-spark_2.13-{delta_version()}.jar").is_file():
        pytest.skip(f"no Delta JARs in {folder} (scripts/setup fetches them)")
    spark_jars = artifacts(Path(pyspark.__file__).parent / "jars")
    delta_jars = artifacts(folder)
    duplicates = {
        delta_jars[name]: spark_jars[name] for name in sorted(delta_jars.keys() & spark_jars.keys())
    }
    assert duplicates == {}, "Spark ships these already: exclude them in scripts/delta-jars.pom.xml"
    assert "delta-spark_2.13" in delta_jars and "delta-storage" in delta_jars
