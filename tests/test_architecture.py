"""The floors of the house (README "Architecture"): each top-level package imports only from its floor or below.

Read from the source with ``ast``, so imports inside functions and ``importlib.import_module("...")``
with a literal name count too: a lazy import that runs back up is still a dependency.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What each package may import besides itself. The floors, from the ground up: the contracts;
#: the physical seams and the model format; the edge; the station and the trainer (the trainer
#: scores with the edge's own detector and decision); the ``qc`` command above them all.
ALLOWED = {
    "qcloop": set(),
    "hardware": {"qcloop"},
    "models": {"qcloop"},
    "edge": {"qcloop", "hardware", "models"},
    "station_ui": {"qcloop"},
    "training": {"qcloop", "hardware", "models", "edge"},
    "qc": {"qcloop", "hardware", "models", "edge", "station_ui", "training"},
}


def _imported(path: Path) -> set[str]:
    """The top-level names ``path`` imports, from import statements and literal import_module calls."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value.split(".")[0])
    return names


def _edges() -> dict[tuple[str, str], list[str]]:
    """(package, imported package) -> the files of ``package`` that import it, over this repository's packages."""
    edges: dict[tuple[str, str], list[str]] = {}
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in _imported(path) & set(ALLOWED) - {package}:
                edges.setdefault((package, name), []).append(str(path.relative_to(ROOT)))
    return edges


def test_every_top_level_package_is_on_a_floor():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(ALLOWED), "a new top-level package needs its floor in ALLOWED and the README"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_from_its_floor_or_below(package):
    wrong = {f"{package} -> {name}": files for (pkg, name), files in _edges().items()
             if pkg == package and name not in ALLOWED[package]}
    assert not wrong, f"imports that run up or sideways: {wrong}"


def test_the_floors_have_no_circle():
    # ALLOWED itself must be a one-way order, or the per-package check above would allow a circle.
    order: list[str] = []
    pending = dict(ALLOWED)
    while pending:
        ready = [p for p, deps in pending.items() if deps <= set(order)]
        assert ready, f"the allowed imports form a circle among {sorted(pending)}"
        order += sorted(ready)
        for p in ready:
            del pending[p]
    assert order[0] == "qcloop" and order[-1] == "qc"


def test_the_parser_sees_lazy_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import importlib\ndef f():\n    from station_ui.app import x\n"
                   "    return importlib.import_module('training.cli')\n")
    assert _imported(src) == {"importlib", "station_ui", "training"}
