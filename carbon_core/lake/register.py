"""Register the lake's tables by name in the session's catalog (`carbonlake catalog`).

Every table of the table catalog that exists in the lake becomes an external Delta table
`<database>.<name>` whose location is the table's URI, so that SQL users can write
`select ... from carbonlake.account_emissions`. The catalog is whatever the session is
configured with: Spark's in-memory one (gone when the session stops), a Hive metastore,
AWS Glue, or Unity Catalog (docs/operations.md §5.1). Only SQL and the public catalog API are
used, so this works the same under Spark Connect.

Names (`catalog_name`): a gold or silver table keeps its bare name
(`gold/account_emissions` -> `account_emissions`, `silver/site_monthly` -> `site_monthly`);
a bronze or quarantine table gets its layer as a prefix (`bronze/usage` ->
`bronze_usage`, `quarantine/usage` -> `quarantine_usage`). `catalog_names` checks that no
two tables share a name.

Registering is idempotent: a table registered at its location is left alone, one
registered at another location (the lake moved) is re-pointed with `ALTER TABLE ... SET
LOCATION`, and a table not yet in the lake is skipped and listed. A name held by anything
other than an external Delta table (a managed table, a view, another format) is never
touched: the whole registration stops before changing anything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pyspark.sql import SparkSession

from carbon_core.errors import CarbonlakeError
from carbon_core.hadoop import qualified
from carbon_core.lake import tables
from carbon_core.lake.delta_io import sql_text, table_exists

Action = Literal["registered", "re-pointed", "unchanged"]

# The layers whose tables keep their bare name; every other layer prefixes it.
_BARE_LAYERS = ("gold", "silver")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CatalogError(CarbonlakeError):
    """The catalog holds a name that carbonlake must not replace, or a name is invalid."""


def catalog_name(table: tables.LakeTable) -> str:
    """The table's name in a database: 'gold/account_emissions' -> 'account_emissions',
    'bronze/usage' -> 'bronze_usage'."""
    layer, _, rest = table.name.partition("/")
    rest = rest.lstrip("_")  # bronze/_files -> bronze_files
    name = rest if layer in _BARE_LAYERS else f"{layer}_{rest}"
    return name.replace("/", "_")


def catalog_names(
    catalog: Sequence[tables.LakeTable] | None = None,
) -> dict[str, tables.LakeTable]:
    """Name in the database -> lake table, for every table of the catalog (all unique)."""
    names: dict[str, tables.LakeTable] = {}
    for table in tables.catalog() if catalog is None else catalog:
        name = catalog_name(table)
        if name in names:
            raise CatalogError(
                f"tables {names[name].name} and {table.name} would both be named {name}"
            )
        if not _IDENTIFIER.match(name):
            raise CatalogError(f"table {table.name} has no valid catalog name ({name})")
        names[name] = table
    return names


def check_database(database: str) -> str:
    """A database name, optionally with its catalog ('carbonlake', 'main.carbonlake')."""
    parts = database.split(".")
    if len(parts) > 2 or not all(_IDENTIFIER.match(p) for p in parts):
        raise CatalogError(
            f"invalid database name {database!r}: use letters, digits and '_', "
            "optionally preceded by a catalog and a dot (main.carbonlake)"
        )
    return database


def _quoted(*parts: str) -> str:
    return ".".join(f"`{p}`" for part in parts for p in part.split("."))


def _same_location(registered: str, uri: str) -> bool:
    """True when a catalog's location and a lake URI name the same place: the catalog
    qualifies a local path as file:/..., which a plain path means too."""

    def plain(text: str) -> str:
        if text.startswith("file:"):
            text = "/" + text.removeprefix("file:").lstrip("/")
        return text.rstrip("/")

    return plain(registered) == plain(uri)


@dataclass(frozen=True)
class CatalogEntry:
    """One lake table as it stands in the catalog after registration."""

    table: str  # lake name, e.g. "gold/account_emissions"
    name: str  # e.g. "carbonlake.account_emissions"
    uri: str
    action: Action


@dataclass(frozen=True)
class RegisterReport:
    """What `register_tables` did: the tables by action, and those not in the lake yet."""

    database: str
    entries: tuple[CatalogEntry, ...] = ()
    skipped: tuple[str, ...] = field(default=())  # lake names, in catalog order

    def names(self, action: Action | None = None) -> list[str]:
        """Qualified names of the registered tables (of one action)."""
        return [e.name for e in self.entries if action is None or e.action == action]

    def lines(self) -> list[str]:
        """The CLI's output: one line per changed table, then a summary."""
        out = [
            f"catalog {e.name}: {e.action} at {e.uri}"
            for e in self.entries
            if e.action != "unchanged"
        ]
        counts = {a: len(self.names(a)) for a in ("registered", "re-pointed", "unchanged")}
        out.append(
            f"catalog {self.database}: {counts['registered']} registered, "
            f"{counts['re-pointed']} re-pointed, {counts['unchanged']} unchanged, "
            f"{len(self.skipped)} not in the lake"
            + (f" (skipped: {', '.join(self.skipped)})" if self.skipped else "")
        )
        return out


def _described(spark: SparkSession, name: str) -> dict[str, str]:
    """Type, Provider and Location of a catalog table, from DESCRIBE TABLE EXTENDED."""
    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {_quoted(name)}").collect()
    wanted = {"Type", "Provider", "Location"}
    return {r[0]: str(r[1]) for r in rows if r[0] in wanted}


def register_tables(
    spark: SparkSession,
    lake: str,
    database: str,
    *,
    catalog: Sequence[tables.LakeTable] | None = None,
) -> RegisterReport:
    """Register every table of the lake as an external Delta table `<database>.<name>`.

    Creates the database if needed. Idempotent; re-points a table registered at another
    location; skips (and lists) tables not in the lake. Nothing is changed when a name is
    taken by anything but an external Delta table (CatalogError).

    Example::

        register_tables(spark, "s3a://bucket/lake", "carbonlake")
        spark.sql("select sum(lbm_kg) from carbonlake.account_emissions")
    """
    check_database(database)
    names = catalog_names(catalog)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {_quoted(database)}")

    plan: list[CatalogEntry] = []
    skipped: list[str] = []
    for name, table in names.items():
        uri = qualified(table.uri(lake))
        if not table_exists(spark, uri):
            skipped.append(table.name)
            continue
        full = f"{database}.{name}"
        action: Action = "registered"
        if spark.catalog.tableExists(full):
            described = _described(spark, full)
            kind = described.get("Type", "").upper()
            provider = described.get("Provider", "").lower()
            if kind != "EXTERNAL" or provider != "delta":
                raise CatalogError(
                    f"{full} exists as a {kind.lower() or 'non-table'} "
                    f"{provider or 'unknown-format'} table, not an external Delta table: "
                    "carbonlake leaves it alone (drop it or choose another --database); "
                    "nothing was registered"
                )
            same = _same_location(described.get("Location", ""), uri)
            action = "unchanged" if same else "re-pointed"
        plan.append(CatalogEntry(table.name, full, uri, action))

    for entry in plan:
        if entry.action == "registered":
            spark.sql(
                f"CREATE TABLE IF NOT EXISTS {_quoted(entry.name)} USING DELTA "
                f"LOCATION {sql_text(entry.uri)}"
            )
        elif entry.action == "re-pointed":
            spark.sql(f"ALTER TABLE {_quoted(entry.name)} SET LOCATION {sql_text(entry.uri)}")
    return RegisterReport(database, tuple(plan), tuple(skipped))
