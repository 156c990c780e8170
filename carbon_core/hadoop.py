"""The one adapter to the JVM: Hadoop's FileSystem and a few SparkContext internals.

PySpark has no Python API for listing or moving files, so every filesystem call of the
library goes through here, to whatever filesystem the session is configured for (local
disk, s3a://, abfss://, gs://, hdfs://). Everything else in carbon_core uses public
DataFrame, SQL and Delta APIs. None of this works under Spark Connect, which has no JVM
in the client (docs/operations.md says which commands need it).
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

# A URI scheme ("s3a:", "file:", "hdfs:"); a one-letter one would be a Windows drive.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def has_scheme(location: str) -> bool:
    """True for a URI with a scheme (s3a://b/k, file:/tmp/x), false for a plain path."""
    return bool(_SCHEME.match(location))


def qualified(location: str) -> str:
    """A location as the URI Spark and Delta are given: URIs as given, but a local file
    URI in its one-slash form; a plain path (which always means the local disk, whatever
    the cluster's default filesystem) as an absolute `file:` URI.

    Example::

        qualified("s3a://bucket/lake")  # 's3a://bucket/lake'
        qualified("lake")  # 'file:/home/me/work/lake'
        qualified("file:///tmp/lake")  # 'file:/tmp/lake'
    """
    text = str(location)
    if not has_scheme(text):
        return "file:" + os.path.abspath(text)
    scheme, _, rest = text.partition(":")
    if scheme.lower() != "file":
        return text
    # Delta compares a table's location with the path it resolves, and "file:///x" and
    # "file:/x" differ as text (DELTA_AMBIGUOUS_PATHS_IN_CREATE_TABLE).
    for authority in ("//localhost/", "///"):
        if rest.startswith(authority):
            rest = "/" + rest[len(authority) :]
            break
    return "file:" + os.path.normpath(rest)


def local_path(location: str) -> str | None:
    """The local path a plain path or `file:` URI names, else None (an object store)."""
    uri = qualified(location)
    return uri.removeprefix("file:") if uri.startswith("file:") else None


def join(location: str, *parts: str) -> str:
    """A location with path parts appended, '/'-separated, for any scheme."""
    return "/".join([str(location).rstrip("/"), *(p.strip("/") for p in parts)])


@dataclass(frozen=True)
class FileStatus:
    """A file found by a listing: its URI, size in bytes and modification time (ms)."""

    uri: str
    size: int
    modified_ms: int

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


class HadoopFiles:
    """Filesystem calls for locations under one root (its filesystem is resolved once).

    Example::

        files = HadoopFiles(spark, "s3a://bucket/landing")
        files.list_files("s3a://bucket/landing/usage", recursive=True)
    """

    def __init__(self, spark: SparkSession, root: str) -> None:
        jvm: Any = spark.sparkContext._jvm
        self._jvm = jvm
        self._path = jvm.org.apache.hadoop.fs.Path
        conf = spark.sparkContext._jsc.hadoopConfiguration()
        self._conf = conf
        self._gateway: Any = spark.sparkContext._gateway
        fs = self._path(qualified(root)).getFileSystem(conf)
        # The local file system wraps a raw one and writes hidden .crc side files; go
        # around it so that listings show (and clean-up removes) every file.
        checksummed = jvm.java.lang.Class.forName("org.apache.hadoop.fs.ChecksumFileSystem")
        self._fs = fs.getRawFileSystem() if checksummed.isInstance(fs) else fs

    def _hadoop_path(self, location: str) -> Any:
        return self._path(qualified(location))

    def uri(self, location: str) -> str:
        """The fully qualified URI of a location (scheme and authority filled in)."""
        return str(self._fs.makeQualified(self._hadoop_path(location)).toString())

    def size(self, location: str) -> int:
        """A file's length in bytes."""
        return int(self._fs.getFileStatus(self._hadoop_path(location)).getLen())

    def exists(self, location: str) -> bool:
        return bool(self._fs.exists(self._hadoop_path(location)))

    def is_dir(self, location: str) -> bool:
        path = self._hadoop_path(location)
        return bool(self._fs.exists(path)) and bool(self._fs.getFileStatus(path).isDirectory())

    def delete(self, location: str) -> None:
        self._fs.delete(self._hadoop_path(location), True)

    def delete_if_empty(self, location: str) -> None:
        """Remove a folder only when nothing is in it (a non-recursive delete, which the
        filesystem refuses for a folder another process has just written into)."""
        with contextlib.suppress(Py4JJavaError):
            self._fs.delete(self._hadoop_path(location), False)

    def mkdirs(self, location: str) -> None:
        self._fs.mkdirs(self._hadoop_path(location))

    def rename(self, source: str, target: str) -> None:
        if not self._fs.rename(self._hadoop_path(source), self._hadoop_path(target)):
            raise OSError(f"cannot move {source} to {target}")

    def list_children(self, location: str) -> list[str]:
        """The URIs of the files and folders directly in a folder."""
        statuses = self._fs.listStatus(self._hadoop_path(location))
        return [str(s.getPath().toString()) for s in statuses]

    def list_files(self, location: str, *, recursive: bool = True) -> list[FileStatus]:
        """The files (not folders) under a folder, sorted by URI."""
        found = self._fs.listFiles(self._hadoop_path(location), recursive)
        files = []
        while found.hasNext():
            status = found.next()
            files.append(
                FileStatus(
                    str(status.getPath().toString()),
                    int(status.getLen()),
                    int(status.getModificationTime()),
                )
            )
        return sorted(files, key=lambda f: f.uri)

    def read_head(self, location: str, size: int) -> bytes:
        """Up to `size` bytes from the start of a file."""
        stream = self._fs.open(self._hadoop_path(location))
        try:
            return bytes(stream.readNBytes(size))
        finally:
            stream.close()

    def read_range(self, location: str, offset: int, size: int) -> bytes:
        """Up to `size` bytes from `offset`."""
        stream = self._fs.open(self._hadoop_path(location))
        try:
            stream.seek(offset)
            return bytes(stream.readNBytes(size))
        finally:
            stream.close()

    def write_text(self, location: str, text: str) -> None:
        """Create or replace a (small) file with UTF-8 text."""
        stream = self._fs.create(self._hadoop_path(location), True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()

    def replace_text(self, location: str, text: str) -> None:
        """Write a file beside `location`, then move it into place: a reader finds the old
        text or the new one (where the filesystem's rename is atomic, as on local disks)."""
        partial = f"{location}.{os.getpid()}.tmp"
        self.write_text(partial, text)
        self.replace(partial, location)

    def replace(self, source: str, target: str) -> None:
        """Move the file `source` onto `target`, replacing a file there in one rename.

        Atomic on local disks (rename(2) replaces the file) and HDFS (its rename with
        overwrite): a reader of `target` finds the old file or the new one, never
        neither. Elsewhere Hadoop deletes the old file and then moves or, on an object
        store, copies the new one, which leaves a moment without it."""
        if str(self._fs.getUri().getScheme()) == "file":
            # The raw local file system renames with java.io.File.renameTo: rename(2).
            self.rename(source, target)
            return
        rename = self._jvm.org.apache.hadoop.fs.Options.Rename
        options = self._gateway.new_array(rename, 1)
        options[0] = rename.OVERWRITE
        context = self._jvm.org.apache.hadoop.fs.FileContext.getFileContext(
            self._fs.getUri(), self._conf
        )
        context.rename(self._hadoop_path(source), self._hadoop_path(target), options)

    def read_text(self, location: str) -> str:
        """A whole (small) file as UTF-8 text, e.g. a configuration file."""
        return self.read_head(location, self.size(location)).decode("utf-8")


def delta_classes_loaded(spark: SparkSession) -> bool:
    """True when the session's JVM can load Delta Lake's classes."""
    jvm: Any = spark.sparkContext._jvm
    try:
        loader = jvm.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName("io.delta.tables.DeltaTable", True, loader)
    except Exception:
        return False
    return True


def persisted_rdd_ids(spark: SparkSession) -> frozenset[int]:
    """Ids of the RDDs the context holds persisted (cached frames, local checkpoints)."""
    return frozenset(int(i) for i in spark.sparkContext._jsc.getPersistentRDDs().keySet())


def unpersist_rdds_except(spark: SparkSession, kept: frozenset[int]) -> None:
    """Unpersist every persisted RDD whose id is not in `kept`."""
    for rdd_id, rdd in spark.sparkContext._jsc.getPersistentRDDs().items():
        if int(rdd_id) not in kept:
            rdd.unpersist(False)
