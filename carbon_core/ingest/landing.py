"""Read a landing dataset: every CSV and Parquet file under <landing>/<dataset>/.

The result has one row per landing row (malformed CSV lines included) with the
dataset's columns as untouched strings, the row's values as a struct
(`_raw_values`, extra columns included), its file and a malformed-line flag. Typing
and rules come later (rules.py), so nothing is dropped or inferred here.

The values become the JSON text `raw` (raw_json) only for the rows that need it, the
rejected ones and the key candidates: printing every row as JSON costs several
times the reading of the row (docs/benchmarks.md).

One exception keeps large typed Parquet landings cheap: when a dataset is only
Parquet, a column stored with exactly its contract type (a timestamp for a
timestamp column, a double for a double) stays typed instead of being printed to
text and parsed back; rules.cast_typed checks it as it is. In `raw` such values
are JSON numbers, booleans or ISO-8601 strings.
"""

from __future__ import annotations

import csv
import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from carbon_core.errors import InputError
from carbon_core.hadoop import FileStatus, HadoopFiles, join
from carbon_core.schemas import Dataset

RAW = "raw"
RAW_VALUES = "_raw_values"
SOURCE_FILE = "_source_file"
MALFORMED = "_malformed"
CORRUPT_RECORD = "_corrupt_record"
# Key under which a malformed CSV line's text is kept in `raw`.
RAW_LINE_KEY = "_line"

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet",)
PARQUET_MAGIC = b"PAR1"
# A CSV header is read from the first bytes of its file: no real header is longer.
HEADER_BYTES = 1 << 20
GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib's setting for a gzip (not raw deflate) stream
# Spark's convention: files starting with these are metadata (_SUCCESS, .crc), not data.
HIDDEN_PREFIXES = ("_", ".")
ISO_TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"
TO_JSON_OPTIONS = {"ignoreNullFields": "true", "timestampFormat": ISO_TIMESTAMP_FORMAT}


def landing_columns(dataset: Dataset) -> list[str]:
    """The columns of read_landing's output, in order."""
    return [*dataset.columns, RAW_VALUES, SOURCE_FILE, MALFORMED]


def _landing_struct(dataset: Dataset) -> T.StructType:
    strings = [T.StructField(c, T.StringType(), True) for c in dataset.columns]
    values = T.StructType([*strings, T.StructField(RAW_LINE_KEY, T.StringType(), True)])
    return T.StructType(
        [
            *strings,
            T.StructField(RAW_VALUES, values, True),
            T.StructField(SOURCE_FILE, T.StringType(), True),
            T.StructField(MALFORMED, T.BooleanType(), True),
        ]
    )


def raw_json(values: Column) -> Column:
    """read_landing's `_raw_values` as the JSON object kept in quarantine's `raw`."""
    return F.to_json(values, TO_JSON_OPTIONS)


def empty_landing(spark: SparkSession, dataset: Dataset) -> DataFrame:
    """An empty frame shaped like read_landing's output (optional dataset not delivered)."""
    return spark.createDataFrame([], _landing_struct(dataset))


# Why a landing file is not read: listed in the ledger and the run's output
# (docs/data-contract.md §1).
UNKNOWN_FORMAT = "unknown format (landing files are .csv, .csv.gz or .parquet)"
EMPTY_FILE = "empty file (0 bytes)"
BLANK_HEADER = "blank header line"
NOT_PARQUET = "not a readable Parquet file (truncated or corrupt)"


@dataclass(frozen=True)
class SkippedFile:
    """A landing file that is not read, and why."""

    file: FileStatus
    reason: str


@dataclass(frozen=True)
class Listing:
    """A dataset folder's files: the data files to read, and the files skipped."""

    data: tuple[FileStatus, ...]
    skipped: tuple[SkippedFile, ...]


def _skip_reason(file: FileStatus) -> str | None:
    name = file.name.lower()
    if not name.endswith(CSV_SUFFIXES + PARQUET_SUFFIXES):
        return UNKNOWN_FORMAT
    if file.size == 0:
        return EMPTY_FILE
    return None


def list_landing(files: HadoopFiles, folder: str) -> Listing:
    """The files under folder, recursively, sorted by URI: CSV and Parquet files with
    bytes, and the others with their reason. Hidden files and files in hidden folders
    (Spark's _SUCCESS, .crc checksums) are neither."""
    root = files.uri(folder).rstrip("/") + "/"
    data: list[FileStatus] = []
    skipped: list[SkippedFile] = []
    for file in files.list_files(folder, recursive=True):
        if _hidden_path(file.uri.removeprefix(root)):
            continue
        reason = _skip_reason(file)
        if reason is None:
            data.append(file)
        else:
            skipped.append(SkippedFile(file, reason))
    return Listing(tuple(data), tuple(skipped))


def dataset_files(
    spark: SparkSession, landing: str, dataset: Dataset, *, required: bool | None = None
) -> Listing:
    """A dataset's landing files; InputError for a required dataset without any data
    file (a missing folder, or one whose files are all skipped), nothing otherwise.
    `required` defaults to the dataset being mandatory; an ingest passes False once
    bronze holds the dataset."""
    required = dataset.mandatory if required is None else required
    filesystem = HadoopFiles(spark, landing)
    folder = join(landing, dataset.name)
    if not filesystem.is_dir(folder):
        if required:
            raise InputError(f"landing dataset {dataset.name!r} not found: {folder}")
        return Listing((), ())
    listing = list_landing(filesystem, folder)
    if not listing.data and required:
        skipped = "".join(f"; skipped {s.file.uri}: {s.reason}" for s in listing.skipped[:3])
        raise InputError(f"landing dataset {dataset.name!r} has no data file: {folder}{skipped}")
    return listing


def screen_files(
    spark: SparkSession, landing: str, dataset: Dataset, candidates: Sequence[FileStatus]
) -> tuple[list[FileStatus], list[SkippedFile]]:
    """The candidates whose head can be read (a CSV header naming at least one of the
    dataset's columns, once each; Parquet's magic bytes), and the others with their
    reason. A mandatory dataset's broken file is an InputError naming it, never a
    dataset read without it."""
    filesystem = HadoopFiles(spark, landing)
    readable: list[FileStatus] = []
    skipped: list[SkippedFile] = []
    for file in candidates:
        problem = _head_problem(filesystem, file.uri, dataset)
        if problem is None:
            readable.append(file)
        elif dataset.mandatory:
            raise InputError(f"landing file {file.uri}: {problem}")
        else:
            skipped.append(SkippedFile(file, problem))
    return readable, skipped


def _head_problem(files: HadoopFiles, file: str, dataset: Dataset) -> str | None:
    if file.lower().endswith(PARQUET_SUFFIXES):
        try:
            _check_parquet_magic(files, file)
        except InputError:
            return NOT_PARQUET
        return None
    try:
        header = _csv_header(files, file)
    except InputError as error:
        return f"unreadable: {str(error).removeprefix(f'cannot read landing file {file}: ')}"
    if header is None:
        return BLANK_HEADER
    lowered = [n.lower() for n in header]
    duplicates = sorted({n for n in lowered if lowered.count(n) > 1})
    if duplicates:
        return f"duplicate column(s) in the header: {', '.join(duplicates)}"
    if not set(lowered) & {c.lower() for c in landing_columns(dataset)}:
        shown = ",".join(header)[:80]
        return (
            f"the header names none of the {dataset.name} columns (it reads {shown!r}): "
            "check the delimiter (',') and the header line"
        )
    return None


def _hidden_path(relative: str) -> bool:
    return any(part.startswith(HIDDEN_PREFIXES) for part in relative.split("/"))


def _first_line_bytes(files: HadoopFiles, file: str) -> bytes:
    """The file's first line (decompressed for .gz), read through the filesystem layer."""
    head = files.read_head(file, HEADER_BYTES)
    if file.lower().endswith(".gz"):
        # A prefix of a gzip stream decompresses to a prefix of its text.
        head = zlib.decompressobj(GZIP_WBITS).decompress(head, HEADER_BYTES)
    return head.split(b"\n", 1)[0]


def _csv_header(files: HadoopFiles, file: str) -> list[str] | None:
    """The header's column names (stripped), or None for a blank first line."""
    try:
        line = _first_line_bytes(files, file).decode("utf-8-sig", errors="replace")
        row = next(csv.reader(io.StringIO(line)), None)
    except (zlib.error, csv.Error) as error:
        raise InputError(f"cannot read landing file {file}: {error}") from None
    except Exception as error:  # the filesystem's error, reduced to one line
        raise InputError(f"cannot read landing file {file}: {_first_line(error)}") from None
    if not row or all(name.strip() == "" for name in row):
        return None
    return [name.strip() or f"_c{i}" for i, name in enumerate(row)]


_TO_THE_END = 2**31 - 1  # substring's length for "the rest of the string"


def _file_path(uri_column: Column) -> Column:
    """A local file URI (file:/a%20b.csv) as the plain path; other URIs decoded
    (s3a://b/a%20b.csv -> s3a://b/a b.csv), as a Hadoop listing names the file."""
    # Evaluated for every landing row: prefix tests and substrings to the end (a length
    # would count the characters of every path of every row), no regular expression,
    # and the decoder only for paths that were percent-encoded.
    local = F.when(
        uri_column.startswith("file://"), F.substring(uri_column, 8, _TO_THE_END)
    ).otherwise(F.substring(uri_column, 6, _TO_THE_END))

    # Hadoop percent-encodes the path but leaves '+' literal; url_decode would read it as space.
    def decoded(path: Column) -> Column:
        return F.when(
            path.contains("%"), F.url_decode(F.regexp_replace(path, r"\+", "%2B"))
        ).otherwise(path)

    return F.when(uri_column.startswith("file:"), decoded(local)).otherwise(decoded(uri_column))


def _read_csv_group(spark: SparkSession, files: Sequence[str], header: Sequence[str]) -> DataFrame:
    """CSV files sharing one header, every column a string, malformed lines kept."""
    schema = T.StructType(
        [T.StructField(name, T.StringType(), True) for name in header]
        + [T.StructField(CORRUPT_RECORD, T.StringType(), True)]
    )
    frame = (
        spark.read.schema(schema)
        .option("header", "true")
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT_RECORD)
        .option("enforceSchema", "true")
        # RFC 4180 (Python's csv, pandas): a quote inside a quoted field is doubled
        .option("escape", '"')
        .csv(list(files))
    )
    return frame.select(
        *(F.col(f"`{name}`") for name in header),
        CORRUPT_RECORD,
        F.col("_metadata.file_path").alias(SOURCE_FILE),
    )


def _as_string(field: T.StructField) -> Column:
    """A Parquet column as text: timestamps ISO-8601 with offset, nested types as JSON."""
    column = F.col(f"`{field.name}`")
    dtype = field.dataType
    if isinstance(dtype, T.TimestampType):
        return F.date_format(column, ISO_TIMESTAMP_FORMAT)
    if isinstance(dtype, T.TimestampNTZType):
        return F.regexp_replace(column.cast("string"), " ", "T")
    if isinstance(dtype, T.StructType | T.ArrayType | T.MapType):
        return F.to_json(column)
    return column.cast("string")


def _parquet_values(frame: DataFrame, keep_typed: T.StructType | None = None) -> DataFrame:
    """Parquet columns as text, except those whose type keep_typed gives them (same name,
    any case): those stay as they are."""
    typed = {f.name.lower(): f.dataType for f in keep_typed.fields} if keep_typed else {}
    return frame.select(
        *(
            (
                F.col(f"`{f.name}`") if typed.get(f.name.lower()) == f.dataType else _as_string(f)
            ).alias(f.name)
            for f in frame.schema.fields
        ),
        F.lit(None).cast("string").alias(CORRUPT_RECORD),
        F.col("_metadata.file_path").alias(SOURCE_FILE),
    )


def _check_parquet_magic(files: HadoopFiles, file: str) -> None:
    """Fail early, naming the file, when it cannot be Parquet (no PAR1 head and tail)."""
    try:
        size = files.size(file)
        head = files.read_head(file, len(PARQUET_MAGIC))
        tail = files.read_range(file, max(size - len(PARQUET_MAGIC), 0), len(PARQUET_MAGIC))
    except Exception as error:  # the filesystem's error, reduced to one line
        raise InputError(f"cannot read landing file {file}: {_first_line(error)}") from None
    if head != PARQUET_MAGIC or tail != PARQUET_MAGIC:
        raise InputError(f"landing file {file}: {NOT_PARQUET}")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    for line in text.splitlines():
        if "FAILED_READ_FILE" in line or "Exception" in line or "Error" in line:
            return line.strip()[:500]
    return text.splitlines()[0][:500] if text else type(error).__name__


def _read_one_parquet(spark: SparkSession, file: str) -> DataFrame:
    try:
        return _parquet_values(spark.read.parquet(file))
    except Exception as error:  # the JVM error is reduced to one line naming the file
        if "CANNOT_READ_FILE_FOOTER" in str(error):  # PAR1 at both ends, garbage between
            raise InputError(f"landing file {file}: {NOT_PARQUET}") from None
        raise InputError(f"cannot read landing file {file}: {_first_line(error)}") from None


def _read_parquet(
    spark: SparkSession,
    filesystem: HadoopFiles,
    files: Sequence[str],
    keep_typed: T.StructType | None = None,
) -> DataFrame:
    """Parquet files as strings (but keep_typed's columns, see _parquet_values); files whose
    schemas do not merge are read one by one, as strings."""
    for file in files:
        _check_parquet_magic(filesystem, file)
    try:
        merged = spark.read.option("mergeSchema", "true").parquet(*files)
        return _parquet_values(merged, keep_typed)
    except Exception:  # a conflict of column types or a broken file: find out file by file
        frames = [_read_one_parquet(spark, f) for f in files]
        return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)


def _landing_values(frame: DataFrame, dataset: Dataset) -> DataFrame:
    """Project the union of files onto the landing contract (landing_columns)."""
    by_lower = {c.lower(): c for c in frame.columns if c not in (CORRUPT_RECORD, SOURCE_FILE)}
    value_columns = list(by_lower.values())
    raw_values = F.struct(
        *(F.col(f"`{c}`") for c in value_columns),
        F.col(CORRUPT_RECORD).alias(RAW_LINE_KEY),
    )
    typed_names = [
        (F.col(f"`{by_lower[c]}`") if c in by_lower else F.lit(None).cast("string")).alias(c)
        for c in dataset.columns
    ]
    return frame.select(
        *typed_names,
        raw_values.alias(RAW_VALUES),
        _file_path(F.col(SOURCE_FILE)).alias(SOURCE_FILE),
        F.col(CORRUPT_RECORD).isNotNull().alias(MALFORMED),
    )


def read_landing(spark: SparkSession, landing: str, dataset: Dataset) -> DataFrame:
    """Every CSV/Parquet file of a dataset, unioned by name, columns as strings (or typed,
    see the module docstring). `landing` is a URI or a local path.

    A missing folder is an InputError for a mandatory dataset and an empty frame
    for an optional one; an unreadable file is an InputError naming it.
    """
    listing = dataset_files(spark, landing, dataset)
    readable, _ = screen_files(spark, landing, dataset, listing.data)
    return read_landing_files(spark, landing, dataset, [f.uri for f in readable])


def read_landing_files(
    spark: SparkSession, landing: str, dataset: Dataset, uris: Sequence[str]
) -> DataFrame:
    """These landing files of a dataset (URIs from `dataset_files`, screened by
    `screen_files`), as read_landing reads them; an empty frame for none."""
    filesystem = HadoopFiles(spark, landing)
    csvs = [u for u in uris if u.lower().endswith(CSV_SUFFIXES)]
    parquets = [u for u in uris if u.lower().endswith(PARQUET_SUFFIXES)]
    groups: dict[tuple[str, ...], list[str]] = {}
    for file in csvs:
        header = _csv_header(filesystem, file)
        if header is None:  # screen_files lists such a file instead of passing it here
            raise InputError(f"landing file {file}: {BLANK_HEADER}")
        groups.setdefault(tuple(header), []).append(file)
    frames = [_read_csv_group(spark, files, header) for header, files in groups.items()]
    if parquets:
        # Typed columns only when nothing else is unioned with them (CSV is text).
        keep_typed = dataset.schema if not frames else None
        frames.append(_read_parquet(spark, filesystem, parquets, keep_typed))
    if not frames:
        return empty_landing(spark, dataset)
    union = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)
    return _landing_values(union, dataset)
