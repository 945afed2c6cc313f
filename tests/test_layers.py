"""Layering (issue 24): the C framer is the layer below the runtime and the firmware bridge, and
those two never import each other, at module level or inside a function. Read from the sources
(ast), so an import buried in a function that no test happens to call is caught too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "edgesep"

#: layer -> the edgesep modules its sources may never import
FORBIDDEN = {
    "runtime": ("edgesep.firmware_bridge", "edgesep.firmware"),
    "firmware_bridge": ("edgesep.runtime", "edgesep.firmware"),
    "framer": ("edgesep.runtime", "edgesep.firmware_bridge", "edgesep.firmware"),
    "tflite_model.py": ("edgesep.runtime", "edgesep.firmware_bridge", "edgesep.framer",
                        "edgesep.firmware"),
}
#: a string naming a module, as importlib.import_module or a registry would take it
MODULE_NAME = re.compile(r"^edgesep(\.\w+)+$")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(text: str, package: str) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in the source ``text`` of a module of ``package``
    (relative ones resolved), and of every string constant that is a dotted edgesep module
    name (a dynamic import)."""
    here = package.split(".")
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and MODULE_NAME.match(node.value):
            found.append((node.lineno, node.value))
    return found


def _package(path: Path) -> str:
    name = _module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _sources(layer: str) -> list[Path]:
    where = PACKAGE / layer
    return [where] if where.is_file() else sorted(where.rglob("*.py"))


@pytest.mark.parametrize("layer", list(FORBIDDEN))
def test_no_layer_imports_a_layer_beside_or_above_it(layer):
    files = _sources(layer)
    assert files, layer
    bad = [f"{path.relative_to(PACKAGE.parent)}:{line}: {name}"
           for path in files for line, name in imported_modules(path.read_text(), _package(path))
           for banned in FORBIDDEN[layer] if name == banned or name.startswith(banned + ".")]
    assert not bad, "\n".join(bad)


def test_the_scan_sees_imports_inside_functions():
    """The scanner itself: an import inside a function, a relative one and a module named by a
    string are all seen."""
    text = ("def f():\n    from ..firmware_bridge import emit\n    import edgesep.firmware\n"
            "    return 'edgesep.firmware_bridge.emit'\n")
    names = [name for _, name in imported_modules(text, "edgesep.runtime")]
    assert names.count("edgesep.firmware_bridge") == 1 and "edgesep.firmware" in names
    assert names.count("edgesep.firmware_bridge.emit") == 2
