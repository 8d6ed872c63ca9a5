"""The house has no circles: imports run down the floors, between modules and between rooms.

Every `import` and `from ... import` at any depth (inside functions too) of `distil/` and
`template/` is read from the AST, relative imports resolved. Importing a package counts as
importing its `__init__`; a submodule is not taken to import its own package. A room of
`distil/` is a subpackage or a top-level module; a room depends on another when any of its
modules imports any of the other's.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("distil", "template")


def module_files(root: Path = ROOT, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the given packages."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest known module that `name` (a dotted import target) is, or lies in."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, modules: dict[str, Path]) -> set[str]:
    """The project modules `module` imports, at any depth of its AST."""
    tree = ast.parse(modules[module].read_text(encoding="utf-8"), filename=str(modules[module]))
    package = module if _is_package(module, modules) else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                targets.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts)
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            targets.add(base)
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                targets.add(f"{base}.{alias.name}")
    edges = set()
    for target in targets:
        resolved = _resolve(target, modules)
        if resolved is None or resolved == module:
            continue
        # A submodule is not taken to import its own package (Python runs the package's
        # __init__ first, but that is the package's edge, not the submodule's).
        if module.startswith(resolved + "."):
            continue
        edges.add(resolved)
    return edges


def import_graph(root: Path = ROOT, packages=PACKAGES) -> dict[str, set[str]]:
    modules = module_files(root, packages)
    return {name: imports_of(name, modules) for name in modules}


def room_of(module: str) -> str | None:
    """`distil.eval.engine` -> `distil.eval`; `distil.state` -> `distil.state`; else None."""
    parts = module.split(".")
    if parts[0] != "distil" or len(parts) == 1:
        return None
    return ".".join(parts[:2])


def room_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    for module, targets in graph.items():
        room = room_of(module)
        if room is None:
            continue
        rooms.setdefault(room, set())
        for target in targets:
            other = room_of(target)
            if other is not None and other != room:
                rooms[room].add(other)
    return rooms


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one node, each as one cycle path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = [0]

    def strongconnect(node: str) -> None:  # Tarjan, iterative over an explicit work stack
        work = [(node, iter(sorted(graph.get(node, ()))))]
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        while work:
            current, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[current] = min(low[current], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[current])
            if low[current] == index[current]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == current:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    return [_cycle_path(graph, component) for component in components]


def _cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """The shortest cycle through the component's first module, for the failure message."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return list(reversed(path)) + [start]
                if child in members and child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return component  # unreachable for a strongly connected component


def describe(cycles: list[list[str]]) -> str:
    return "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_no_import_cycle_between_modules():
    cycles = find_cycles(import_graph())
    assert not cycles, f"import cycles between modules: {describe(cycles)}"


def test_no_import_cycle_between_rooms():
    cycles = find_cycles(room_graph(import_graph()))
    assert not cycles, f"import cycles between rooms of distil/: {describe(cycles)}"


@pytest.mark.parametrize(
    "higher", ["distil.eval", "distil.scoring", "distil.validator", "distil.train"]
)
def test_checks_imports_no_higher_room(higher):
    graph = import_graph()
    offenders = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if room_of(module) == "distil.checks"
        for target in targets
        if room_of(target) == higher
    )
    assert not offenders, f"distil/checks imports a higher room: {offenders}"


def test_checks_imports_no_neurons():
    for path in (ROOT / "distil" / "checks").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            assert not any(n == "neurons" or n.startswith("neurons.") for n in names), path


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_detector_names_a_planted_module_cycle(tmp_path):
    """A lazy import inside a function closes a circle: the detector must name it."""
    _write(tmp_path, "distil/__init__.py", "")
    _write(tmp_path, "distil/eval/__init__.py", "")
    _write(tmp_path, "distil/eval/a.py", "from .b import thing\n")
    _write(tmp_path, "distil/eval/b.py", "def thing():\n    from distil.eval import a\n    return a\n")
    _write(tmp_path, "distil/eval/c.py", "from . import a\n")  # imports into the circle only
    cycles = find_cycles(import_graph(tmp_path, ("distil",)))
    assert cycles == [["distil.eval.a", "distil.eval.b", "distil.eval.a"]]
    assert describe(cycles) == "distil.eval.a -> distil.eval.b -> distil.eval.a"


def test_detector_names_a_planted_room_cycle(tmp_path):
    _write(tmp_path, "distil/__init__.py", "")
    _write(tmp_path, "distil/checks/__init__.py", "")
    _write(tmp_path, "distil/checks/loading.py", "import distil.eval.models\n")
    _write(tmp_path, "distil/eval/__init__.py", "")
    _write(tmp_path, "distil/eval/models.py", "from ..checks import architecture\n")
    _write(tmp_path, "distil/checks/architecture.py", "")
    graph = import_graph(tmp_path, ("distil",))
    assert find_cycles(graph) == []  # no module circle...
    cycles = find_cycles(room_graph(graph))  # ...but the rooms import each other
    assert cycles == [["distil.checks", "distil.eval", "distil.checks"]]


def test_detector_ignores_a_submodule_importing_its_package(tmp_path):
    _write(tmp_path, "distil/__init__.py", "")
    _write(tmp_path, "distil/eval/__init__.py", "from .engine import run\n")
    _write(tmp_path, "distil/eval/engine.py", "from distil.eval import spec\nimport distil.eval\n")
    _write(tmp_path, "distil/eval/spec.py", "")
    graph = import_graph(tmp_path, ("distil",))
    assert graph["distil.eval.engine"] == {"distil.eval.spec"}
    assert find_cycles(graph) == []
