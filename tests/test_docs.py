"""The documentation stands on its own: the docs exist, the README stays short, every
`docs/<page>.md §N` citation resolves to a heading, and nothing points outside the
repository. Pure Python: no Spark."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_LIMIT_BYTES = 12 * 1024
DOCS = ("methodology", "data-contract", "operations", "benchmarks")
# Where citations may appear; a folder that does not exist (yet) is skipped.
CITING = ("carbon_core", "carbonlake_tools", "jobs", "tests", "docs")
CITING_SUFFIXES = (".py", ".md")

# docs/<page>.md §<N>, N like 2, 7, 7.A or 3.2 (a sentence's final dot is not part of N);
# inside the docs also a link, [page.md](page.md) §<N>. Sections listed after the first
# ("§2 to §4", "§4 and §5") are checked too.
_SECTION = r"§(\d+(?:\.[A-Za-z0-9]+)*)"
_MORE = r"((?:,? (?:and|or|to) |, )§\d+(?:\.[A-Za-z0-9]+)*)*"
CITATION = re.compile(
    r"(?:docs/([a-z0-9_-]+)\.md|\]\((?:docs/)?([a-z0-9_-]+)\.md\)) " + _SECTION + _MORE
)
FURTHER = re.compile(_SECTION)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")

# Built from pieces so that this file does not contain what it looks for.
OUTSIDE_REFERENCES = (".." + "/" + "shared", "shared" + "/")


def _headings(page: Path) -> list[str]:
    """The text of every markdown heading of a page, fenced code blocks excluded."""
    headings, fenced = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            headings.append(match.group(1))
    return headings


def _citing_files() -> list[Path]:
    files = [README]
    for folder in CITING:
        base = ROOT / folder
        if base.is_dir():
            files += sorted(
                p
                for p in base.rglob("*")
                if p.suffix in CITING_SUFFIXES and p.is_file() and "__pycache__" not in p.parts
            )
    return files


def citations(files: list[Path]) -> list[tuple[Path, int, str, str]]:
    """(file, line number, page, section) of every `docs/<page>.md §N` in the files."""
    found = []
    for file in files:
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            for match in CITATION.finditer(line):
                page = match.group(1) or match.group(2)
                sections = [match.group(3)]
                tail = line[match.end(3) : match.end()]
                sections += FURTHER.findall(tail)
                found += [(file, number, page, section) for section in sections]
    return found


def unresolved(cites: list[tuple[Path, int, str, str]], docs: Path) -> list[str]:
    """The citations whose page is missing or has no heading starting with `N.` or `N `."""
    headings: dict[str, list[str] | None] = {}
    broken = []
    for file, number, page, section in cites:
        if page not in headings:
            path = docs / f"{page}.md"
            headings[page] = _headings(path) if path.is_file() else None
        texts = headings[page]
        ok = texts is not None and any(t.startswith((f"{section}.", f"{section} ")) for t in texts)
        if not ok:
            where = file.relative_to(ROOT) if file.is_relative_to(ROOT) else file
            broken.append(f"{where}:{number}: docs/{page}.md §{section}")
    return broken


def test_readme_is_at_most_12_kb():
    size = README.stat().st_size
    assert size <= README_LIMIT_BYTES, f"README.md is {size} bytes, limit {README_LIMIT_BYTES}"


@pytest.mark.parametrize("page", DOCS)
def test_doc_exists(page):
    path = ROOT / "docs" / f"{page}.md"
    assert path.is_file(), f"missing {path.relative_to(ROOT)}"
    assert _headings(path), f"{path.relative_to(ROOT)} has no heading"


def test_every_section_citation_resolves_to_a_heading():
    cites = citations(_citing_files())
    assert cites, "no docs/<page>.md §N citation found: has the pattern changed?"
    broken = unresolved(cites, ROOT / "docs")
    assert not broken, "citations without a matching heading:\n" + "\n".join(broken)


def _cite(page: str, section: str) -> str:
    # Assembled at run time: a literal citation here would be checked against the real docs.
    return "docs/" + page + ".md §" + section


def test_a_broken_citation_is_caught(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    # A heading inside a fenced block does not count.
    page = "# M\n\n## 7. Allocation\n\n### 7.A Site\n\n```\n## 9. x\n```\n"
    (docs / "methodology.md").write_text(page)
    good = [_cite("methodology", "7.A"), _cite("methodology", "7")]
    bad = [_cite("methodology", "7.B"), _cite("methodology", "9"), _cite("missing", "1")]
    source = tmp_path / "module.py"
    source.write_text(f'"""See {good[0]} and {good[1]}."""\n# {bad[0]}, {bad[1]} and {bad[2]}\n')
    broken = unresolved(citations([source]), docs)
    assert [b.rsplit(": ", 1)[1] for b in broken] == bad


def _repository_files() -> list[Path]:
    """Tracked files plus untracked ones that are not ignored."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    names = [n for n in listed.decode("utf-8").split("\0") if n]
    return [ROOT / n for n in names if (ROOT / n).is_file()]


def test_nothing_refers_outside_the_repository():
    offending = []
    for path in _repository_files():
        data = path.read_bytes()
        if b"\0" in data:  # binary (the report picture, say)
            continue
        text = data.decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if any(reference in line for reference in OUTSIDE_REFERENCES):
                offending.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]}")
    assert not offending, "references outside the repository:\n" + "\n".join(offending)
