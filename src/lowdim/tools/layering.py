"""The package's layering rules, checked on its import graph (found statically, as stage deps are).

The packages follow the pipeline bottom up; every import points down a floor or stays inside its
own package:

1. `paths`, `device`, `config/`, `store/`
2. `models/`, `data/`, `geometry/`, `figures/`, `tools/`
3. `cluster/` (a stage's work as Ray tasks: the distance tiles, what every Ray driver shares)
4. `training/`
5. `analysis/`
6. `studies/`

The rules, each a function below that lists the imports breaking it:

- `store/` and `config/` import nothing else of lowdim but `paths`;
- `figures/` imports only `store/`, `config/`, `paths` and itself;
- nothing outside `tools/` imports `tools/`;
- `store/`, `config/`, `figures/` and `analysis/` never import torch when they are imported (a
  function may import it when it runs, as `analysis.placement.predict` does);
- no cycles between packages (a top-level module counts as its own package), nor between modules
  (lazy imports included);
- no private name (`_name`) is imported from another module.

    python -m lowdim.tools.layering      # exit status 1 and a list when a rule is broken
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lowdim.paths import find_root
from lowdim.tools.stage_deps import PACKAGE, imported_modules, walk_runtime

ONLY_PATHS = ("store", "config")
FIGURES_MAY_IMPORT = ("store", "config", "paths", "figures")
TORCH_FREE = ("store", "config", "figures", "analysis")


@dataclass(frozen=True)
class Module:
    """One module of the package: its dotted name, the lowdim modules it imports (anywhere, and
    at import time only), the external top-level packages it imports at import time, and the
    private names it imports from other modules."""

    name: str
    imports: frozenset[str]
    imports_at_load: frozenset[str]
    external_at_load: frozenset[str]
    private_imports: frozenset[str]


def module_names(src: Path) -> dict[str, Path]:
    """Dotted name of every module under src/lowdim (packages by their `__init__`)."""
    names = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = path.relative_to(src).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def load_time_nodes(tree: ast.Module) -> list[ast.AST]:
    """The nodes that run when a module is imported: its body without function bodies and
    without `if TYPE_CHECKING:` blocks."""
    runtime = {id(node) for node in walk_runtime(tree)}
    nodes: list[ast.AST] = []
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if id(node) not in runtime or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef
                                                  | ast.Lambda):
            continue
        nodes.append(node)
        pending.extend(ast.iter_child_nodes(node))
    return nodes


def existing(names: Iterable[str], known: Mapping[str, Path]) -> frozenset[str]:
    """The names that are modules of the package (`from pkg import function` names are not)."""
    return frozenset(name for name in names if name in known)


def read_module(name: str, path: Path, known: Mapping[str, Path]) -> Module:
    """Parse one module into its `Module` record."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    at_load = ast.Module(body=[n for n in load_time_nodes(tree) if isinstance(
        n, ast.Import | ast.ImportFrom)], type_ignores=[])
    external = set()
    for node in at_load.body:
        if isinstance(node, ast.Import):
            external |= {alias.name.split(".")[0] for alias in node.names}
        elif node.level == 0 and node.module:
            external.add(node.module.split(".")[0])
    private = set()
    for node in walk_runtime(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module != name:
            private |= {f"{node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")}
    return Module(name, existing(imported_modules(tree, name, is_package), known),
                  existing(imported_modules(at_load, name, is_package), known),
                  frozenset(external - {PACKAGE}), frozenset(private))


def read_package(src: Path) -> dict[str, Module]:
    """Every module of src/lowdim with its imports."""
    known = module_names(src)
    return {name: read_module(name, path, known) for name, path in known.items()}


def group(module: str) -> str:
    """The package a module belongs to for the rules: `lowdim.store.runs` -> `store`;
    a top-level module is its own group (`lowdim.paths` -> `paths`)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _edges(modules: Mapping[str, Module]) -> Iterable[tuple[str, str]]:
    for module in modules.values():
        for target in module.imports:
            if target != PACKAGE and not module.name.startswith(target + "."):
                yield module.name, target


def floor_breaks(modules: Mapping[str, Module]) -> list[str]:
    """Imports that break the store/config, figures and tools rules."""
    found = []
    for source, target in _edges(modules):
        here, there = group(source), group(target)
        if here == there or not there:
            continue
        if here in ONLY_PATHS and there != "paths":
            found.append(f"{source} imports {target}: {here}/ may import only lowdim.paths")
        elif here == "figures" and there not in FIGURES_MAY_IMPORT:
            found.append(f"{source} imports {target}: figures/ may import only store/, "
                         "config/ and paths")
        elif there == "tools" and here != "tools":
            found.append(f"{source} imports {target}: nothing outside tools/ imports tools/")
    return sorted(found)


def torch_at_import(modules: Mapping[str, Module]) -> list[str]:
    """Modules of the torch-free packages that load torch when imported, with the chain."""
    found = []
    for name in modules:
        if group(name) in TORCH_FREE:
            chain = _torch_chain(name, modules, set())
            if chain:
                found.append(f"{name} loads torch at import: {' -> '.join(chain)}")
    return sorted(found)


def _torch_chain(name: str, modules: Mapping[str, Module], seen: set[str]) -> list[str] | None:
    if name in seen or name not in modules:
        return None
    seen.add(name)
    module = modules[name]
    if "torch" in module.external_at_load:
        return [name, "torch"]
    parents = [".".join(name.split(".")[:i]) for i in range(2, len(name.split(".")))]
    for target in sorted(module.imports_at_load | set(parents)):
        chain = _torch_chain(target, modules, seen)
        if chain:
            return [name, *chain]
    return None


def package_cycles(modules: Mapping[str, Module]) -> list[str]:
    """Cycles in the graph of packages (each a group, see `group`)."""
    graph: dict[str, set[str]] = {}
    for source, target in _edges(modules):
        here, there = group(source), group(target)
        if here and there and here != there:
            graph.setdefault(here, set()).add(there)
    cycles = set()
    for start in graph:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    i = path.index(min(path))
                    cycles.add(" -> ".join(path[i:] + path[:i] + [min(path)]))
                elif nxt not in path:
                    stack.append((nxt, [*path, nxt]))
    return sorted(cycles)


def module_cycles(modules: Mapping[str, Module]) -> list[str]:
    """Cycles between modules, lazy imports included (Tarjan's strongly connected components)."""
    graph = {name: sorted(t for s, t in _edges({name: m}) if t in modules)
             for name, m in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append("import cycle: " + ", ".join(sorted(component)))

    for name in graph:
        if name not in index:
            visit(name)
    return sorted(found)


def private_imports(modules: Mapping[str, Module]) -> list[str]:
    """Private names imported from another module."""
    return sorted(f"{m.name} imports {name}" for m in modules.values()
                  for name in m.private_imports)


def violations(modules: Mapping[str, Module]) -> list[str]:
    """Every broken rule, one line each."""
    return (floor_breaks(modules) + torch_at_import(modules) + package_cycles(modules)
            + module_cycles(modules) + private_imports(modules))


def main() -> int:
    problems = violations(read_package(find_root() / "src"))
    print("\n".join(problems) or "every layering rule holds")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
