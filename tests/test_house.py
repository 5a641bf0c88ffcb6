"""The shape of the code: one job per module, the stages as folders, no import cycle.

Read from the source with `ast`, so the rules hold for code no test runs: modules import each
other without a cycle, only `tools.py` starts programs, few modules know lark, jinja2
and pyelftools, every module says what it is for, and none grows past about 500 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "src" / "relgen"
#: The folders of the stages, in the order the data flows.
STAGES = ("source", "rewrite", "toolchain", "kernel", "checks")
LONGEST = 560  # lines: "none over about 500"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(name: str, path: Path) -> set[str]:
    """The relgen modules `name` imports at module level (not inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("relgen")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            if not base.startswith("relgen"):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in ALL else base)
    return {module for module in found if module != name}


ALL = modules()


def test_no_import_cycle() -> None:
    graph = {name: {m for m in imports_of(name, path) if m in ALL} for name, path in ALL.items()}
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_the_stages_are_folders() -> None:
    for stage in STAGES:
        assert (PACKAGE / stage / "__init__.py").is_file(), stage
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, f"the top of the package holds {len(top)} modules: {top}"


def _names_used(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            used |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            used.add(node.module.split(".")[0])
            used |= {f"{node.module}.{alias.name}" for alias in node.names}
    return used


def test_only_tools_starts_programs() -> None:
    for name, path in ALL.items():
        used = _names_used(path)
        if name == "relgen.tools":
            continue
        assert "subprocess" not in used, f"{name} imports subprocess: use relgen.tools"
        text = path.read_text(encoding="utf-8")
        assert "shutil.which" not in text, f"{name} looks for programs: use relgen.tools"


@pytest.mark.parametrize(("library", "owners"), [
    # the parser, and the node builder lark calls during the parse (its Transformer)
    ("lark", ["relgen.source.builder", "relgen.source.parser"]),
    ("jinja2", ["relgen.kernel.templates"]),
    ("elftools", ["relgen.toolchain.elf"]),
])
def test_few_modules_know_each_library(library: str, owners: list[str]) -> None:
    users = sorted(name for name, path in ALL.items() if library in _names_used(path))
    assert users == owners


def test_every_module_says_what_it_is_for_and_stays_small() -> None:
    for name, path in ALL.items():
        text = path.read_text(encoding="utf-8")
        assert ast.get_docstring(ast.parse(text)), f"{name} has no docstring"
        lines = text.count("\n")
        assert lines <= LONGEST, f"{name} has {lines} lines"
