"""The package's shape: no import cycle inside carbon_core, and the runtime package never
imports the developer tools at module level."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from carbon_core.errors import CarbonlakeError
from carbon_core.extras import missing_packages, require_extra

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = "carbon_core"
TOOLS = "carbonlake_tools"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph(package: str, *, top_level_only: bool) -> dict[str, set[str]]:
    """module -> the package modules it imports (function-level imports too, unless
    top_level_only); `from pkg import name` counts pkg.name when that is a module."""
    files = {_module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        targets: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if _type_checking_only(tree, node):
                    continue
                base = _resolve(module, path.name == "__init__.py", node)
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)
        graph[module] = {t for t in targets if t in files and t != module}
    return graph


def _type_checking_only(tree: ast.Module, node: ast.ImportFrom) -> bool:
    """True for an import under `if TYPE_CHECKING:` (never executed, so never a cycle)."""
    return any(
        isinstance(block, ast.If)
        and isinstance(block.test, ast.Name)
        and block.test.id == "TYPE_CHECKING"
        and any(child is node for child in ast.walk(block))
        for block in ast.walk(tree)
    )


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            # A package's __init__ importing its own submodules is how packages export.
            if target.startswith(module + "."):
                continue
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_carbon_core_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph(RUNTIME, top_level_only=False))
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_runtime_modules_do_not_import_the_tools_at_module_level() -> None:
    files = sorted((ROOT / RUNTIME).rglob("*.py"))
    offenders = []
    for path in files:
        for node in ast.parse(path.read_text()).body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == TOOLS or n.startswith(TOOLS + ".") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_accounting_imports_without_the_optional_extras() -> None:
    # A fresh interpreter: this one has imported pandas already through other tests.
    code = (
        "import sys, carbon_core.pipeline, carbon_core.cli, carbon_core.export; "
        "print(sorted(m for m in ('pandas', 'plotly', 'statsmodels', 'numpy', 'carbonlake_tools')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_missing_extra_is_named_with_its_install_command() -> None:
    assert missing_packages(["json", "no_such_package_carbonlake"]) == [
        "no_such_package_carbonlake"
    ]
    require_extra("report", ["json"])
    with pytest.raises(CarbonlakeError) as error:
        require_extra("forecast", ["no_such_package_carbonlake"])
    assert str(error.value) == (
        "forecast needs no_such_package_carbonlake, not installed here: "
        "pip install 'carbonlake[forecast]'"
    )
