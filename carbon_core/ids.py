"""What an id may be: it names export folders and files, so it must be safe as one."""

from __future__ import annotations

import re

# Ids name export folders and files and join everything: letters, digits, '-', '_', '.'
# and ':', 1 to 256 characters, not starting with '-' (a spreadsheet formula could) and
# never '.' or '..' alone (docs/data-contract.md §1). What AWS account ids, product
# codes and region codes use passes. The body is configurable (ingest.id_pattern); the
# guard is not: whatever the body allows, an id is never '.' or '..' and never holds a
# slash, a backslash or a control character, so a path built from it stays where it is.
ID_BODY = r"[A-Za-z0-9_.:][A-Za-z0-9_.:-]{0,255}"
_ID_GUARD = r"^(?!\.\.?\z)(?!.*[/\\\x00-\x1f\x7f])"
_UNSAFE_IN_PATH = re.compile(r"[/\\\x00-\x1f\x7f]")


def id_pattern(body: str = ID_BODY) -> str:
    """The Java regex (rlike) an id must match: the guard, then body for the whole id
    (\\z, since $ would also match before a final line break)."""
    return rf"{_ID_GUARD}(?:{body})\z"


def is_path_safe(text: str | None) -> bool:
    """The guard alone: text that can name a folder or a file in place."""
    if not text or text in (".", ".."):
        return False
    return _UNSAFE_IN_PATH.search(text) is None


def is_safe_id(text: str | None, body: str = ID_BODY) -> bool:
    """The driver-side twin of id_pattern(body)."""
    return is_path_safe(text) and re.fullmatch(body, text or "", flags=re.DOTALL) is not None
