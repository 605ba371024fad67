"""The layers of docs/architecture.md, enforced on the code: who may import whom, no cycle.

Every `import` of every module under src/bem counts: at module level, inside functions and
under `if TYPE_CHECKING:` alike (an annotation-only import is still an arrow a reader and a
type checker follow). The rules are read from the layer table of docs/architecture.md, so
the page a newcomer reads and the rules the code keeps are one.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
DOC = ROOT / "docs" / "architecture.md"
NOTHING = "nothing of bem"  # the "may import" of the bottom layer


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name (a package by its own name)."""
    found = {}
    for path in sorted((SRC / "bem").rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The bem modules `path` imports, wherever the import statement is."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from bem.services.sfde import api` imports bem.services.sfde.api
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        yield from (n for n in names if n in known)


def import_graph() -> nx.DiGraph:
    known = modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(known)
    for name, path in known.items():
        graph.add_edges_from((name, target) for target in imports(path, known) if target != name)
    return graph


def layer_table() -> tuple[dict[str, str], dict[str, set[str]]]:
    """(package -> its layer, layer -> the layers it may import) from the doc's table."""
    text = DOC.read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]  # no header
    layer_of: dict[str, str] = {}
    may: dict[str, set[str]] = {}
    for row in rows:
        layer, packages, allowed = (cell.strip() for cell in row.strip("|").split("|")[:3])
        for package in re.findall(r"`([\w.]+)`", packages):
            layer_of[package] = layer
        may[layer] = set() if allowed == NOTHING else {
            a.strip() for a in allowed.split(",")}
    return layer_of, may


def package_of(module: str, layer_of: dict[str, str]) -> str | None:
    """The longest package of the table that `module` is (in)."""
    matches = [p for p in layer_of if module == p or module.startswith(p + ".")]
    return max(matches, key=len, default=None)


def test_the_layer_table_is_a_ladder() -> None:
    _, may = layer_table()
    assert len(may) >= 5, "docs/architecture.md: the layer table was not found"
    for layer, allowed in may.items():
        unknown = allowed - set(may) - {"every layer"}
        assert not unknown, f"{layer} may import unknown layers {unknown}"
    ladder = nx.DiGraph((a, b) for a, allowed in may.items() for b in allowed
                        if b != "every layer")
    assert nx.is_directed_acyclic_graph(ladder), list(nx.simple_cycles(ladder))


def test_every_module_belongs_to_a_layer_of_the_doc() -> None:
    layer_of, _ = layer_table()
    homeless = [m for m in modules() if package_of(m, layer_of) is None]
    assert not homeless, f"modules in no layer of docs/architecture.md: {homeless}"
    missing = [p for p in layer_of if p not in modules()]
    assert not missing, f"docs/architecture.md names packages that do not exist: {missing}"


def test_imports_follow_the_layers() -> None:
    """No import points up or sideways: the runtime imports no service and no placement
    table, the gateway no service, and so on (the table in docs/architecture.md)."""
    layer_of, may = layer_table()
    wrong = []
    for source, target in import_graph().edges:
        here = layer_of[package_of(source, layer_of)]  # type: ignore[index]
        there = layer_of[package_of(target, layer_of)]  # type: ignore[index]
        if here != there and there not in may[here] and "every layer" not in may[here]:
            wrong.append(f"{source} ({here}) imports {target} ({there})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle() -> None:
    cycles = [" -> ".join([*c, c[0]]) for c in nx.simple_cycles(import_graph())]
    assert not cycles, "\n".join(cycles)


def test_the_runtime_reaches_no_service_and_no_placement_table() -> None:
    """The arrow the layer table exists for, spelled out (uvicorn never imports an app)."""
    graph = import_graph()
    runtime = [m for m in graph if m.startswith("bem.runtime")]
    reached = set().union(*(nx.descendants(graph, m) for m in runtime))
    assert not {m for m in reached if m.startswith(("bem.services", "bem.clusters"))}


@pytest.mark.parametrize("path", sorted(set(re.findall(
    r"`((?:[a-z_]+/)+[a-z_]*(?:\.py|/))`", DOC.read_text()))))
def test_every_path_the_doc_names_exists(path: str) -> None:
    assert (SRC / "bem" / path).exists() or (ROOT / path).exists(), path


def test_the_checker_sees_imports_in_functions_and_type_checking_blocks(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from bem.services import spec\n"
                      "def f():\n    import bem.clusters\n")
    assert set(imports(module, modules())) == {"bem.services", "bem.clusters"}
