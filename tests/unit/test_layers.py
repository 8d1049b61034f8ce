"""The package's shape: imports point down the layers, never in a circle, and the core
loads no I/O library. Function-level imports count as much as module-level ones."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "milter" / "postwacht"

# Lower numbers sit lower. A module may import its own subpackage (without a cycle) and
# anything on a lower layer; never a layer beside or above it.
LAYERS = {
    "postwacht": 0,
    "postwacht.defaults": 0,
    "postwacht.core": 1,
    "postwacht.telemetry": 2,
    "postwacht.config": 3,
    "postwacht.facts": 3,
    "postwacht.records": 3,
    "postwacht.notices": 3,
    "postwacht.app": 4,
    "postwacht.adapters": 5,
    "postwacht.cli": 6,
}
CORE_MUST_NOT_LOAD = ("dns", "ssl", "http", "urllib", "socket", "sqlite3", "subprocess",
                      "prometheus_client", "yaml", "jsonschema", "fastjsonschema", "Milter",
                      "milter")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every postwacht module `path` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        # `from postwacht.cli import daemon` names a module; `from x import f` a function.
        edges[name] = {m for m in imports_of(path) if m in modules and m != name}
    return edges


def layer(module: str) -> tuple[str, int]:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, LAYERS[prefix]
    raise AssertionError(f"{module} belongs to no layer: add its subpackage to LAYERS")


def test_every_import_points_down_the_layers() -> None:
    wrong = []
    for module, targets in graph().items():
        home, rank = layer(module)
        for target in targets:
            there, target_rank = layer(target)
            if there == home or target_rank < rank:
                continue
            wrong.append(f"{module} (layer {home}) imports {target} (layer {there})")
    assert wrong == []


def test_the_package_has_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    # The checks above read source; make sure they would see a function-level import.
    source = "def f() -> None:\n    from postwacht.cli import main\n"
    (tmp_path / "m.py").write_text(source)
    assert "postwacht.cli.main" in imports_of(tmp_path / "m.py")


def test_importing_the_core_loads_no_io_library() -> None:
    core = sorted(module_name(p) for p in (PACKAGE / "core").rglob("*.py"))
    script = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in core)
        + "print('\\n'.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True).stdout.split()
    roots = {name.split(".")[0] for name in loaded}
    assert sorted(roots & set(CORE_MUST_NOT_LOAD)) == []
    assert not [m for m in loaded if m.startswith("postwacht.") and not
                m.startswith("postwacht.core")], "the core imports another layer"
