"""Which `lowdim` files each DVC stage runs, and whether its `deps` cover them.

A stage's products are stale when code it runs changes but is not among its `deps`. The code a
stage runs is the import closure, within `lowdim`, of its notebook (or of its module, for a stage
whose command is `python -m lowdim.<module>` instead): every module the notebook imports, every
module those import (at top level or inside a function: a lazy import still runs), and the
`__init__.py` of every package on the way. The closure is found statically with `ast`, so
nothing is executed:

    python -m lowdim.tools.stage_deps          # exit status 1 and a list when a stage misses a file
    python -m lowdim.tools.stage_deps --write  # rewrite the src/ entries of every stage's deps

A package folder is listed when the closure holds every file under it, otherwise its files one by
one, so a stage reruns when, and only when, code it can run changes. Imports under
`if TYPE_CHECKING:` never run and are skipped.

The same holds for parameters: the sections a notebook loads (the section classes it passes to
`lowdim.config.load.load`, found statically) must match its stage's `params`. Each loaded section
needs at least one entry, and every entry (a section, or a key such as `train.device`) must lie in
a loaded section. Which keys it reads is known only by running it: with `LOWDIM_PARAMS_LOG` set,
`lowdim.config.load` logs every key a stage reads, and `params_read_mismatch` compares them with
the stage's `params` (tests/test_pipeline.py does so on the tiny pipeline).
"""

from __future__ import annotations

import ast
import json
import re
import sys
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

import yaml

from lowdim.paths import find_root

PACKAGE = "lowdim"
NOTEBOOK = re.compile(r"(notebooks/\S+\.ipynb)")
MODULE = re.compile(r"\bpython\s+-m\s+(lowdim(?:\.\w+)+)")
PATH_PARAMETER = re.compile(r"-p\s+(\w+)\s+(\S+)")


def notebook_source(path: Path) -> str:
    """A notebook's code cells as one Python source (IPython magics and shell lines dropped)."""
    cells = json.loads(path.read_text())["cells"]
    lines = [line for cell in cells if cell["cell_type"] == "code"
             for line in "".join(cell["source"]).splitlines()]
    return "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))


def module_file(src: Path, module: str) -> Path | None:
    """The file of a dotted `lowdim` module (a module or a package's `__init__.py`), if any."""
    base = src.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def resolve_relative(current: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute module named by `from <level dots><name> import ...` inside `current`."""
    parts = current.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def is_type_checking_block(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`: code that never runs."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def walk_runtime(tree: ast.AST) -> Iterable[ast.AST]:
    """`ast.walk` without the bodies of `if TYPE_CHECKING:` blocks (their `else` still runs)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        if is_type_checking_block(node):
            pending.extend(node.orelse)
        else:
            pending.extend(ast.iter_child_nodes(node))


def imported_modules(tree: ast.AST, current: str | None, is_package: bool) -> set[str]:
    """Dotted names a module may import: `import`, `from ... import` (names included, since they
    may be submodules) and `importlib.import_module("<literal>")`. Unknown names are harmless."""
    found: set[str] = set()
    for node in walk_runtime(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if current is None:
                    continue
                module = resolve_relative(current, is_package, node.level, node.module)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


def with_parents(module: str) -> list[str]:
    """`lowdim.a.b` and the packages it runs on import: `lowdim`, `lowdim.a`."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def import_closure(source: str, src: Path) -> set[Path]:
    """Every `lowdim` file that running `source` can execute (`src`: the folder holding lowdim)."""
    pending = list(imported_modules(ast.parse(source), None, False))
    seen: set[str] = set()
    files: set[Path] = set()
    while pending:
        module = pending.pop()
        for name in with_parents(module):
            if name in seen:
                continue
            seen.add(name)
            path = module_file(src, name)
            if path is None:
                continue
            files.add(path)
            tree = ast.parse(path.read_text(), filename=str(path))
            pending.extend(imported_modules(tree, name, path.name == "__init__.py"))
    return files


def covered(path: str, deps: Iterable[str]) -> bool:
    """Whether a repository-relative path is one of `deps` or lies inside one of them."""
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


def dep_paths(stage: Mapping) -> list[str]:
    """A stage's `deps` as plain paths (a dep may be written as a one-key mapping)."""
    return [next(iter(dep)) if isinstance(dep, Mapping) else str(dep)
            for dep in stage.get("deps", [])]


def out_paths(stage: Mapping) -> list[str]:
    """A stage's `outs` and `metrics` as plain paths."""
    entries = list(stage.get("outs", [])) + list(stage.get("metrics", []))
    return [next(iter(entry)) if isinstance(entry, Mapping) else str(entry) for entry in entries]


def reads(reader: Mapping, writer: Mapping) -> bool:
    """Whether the stage `reader` has a dep on an output of the stage `writer`."""
    outs = out_paths(writer)
    return any(covered(dep, outs) or covered(out, [dep]) for dep in dep_paths(reader)
               for out in outs)


def linked_stages(stages: Mapping[str, Mapping], names: Iterable[str], *,
                  upstream: bool) -> set[str]:
    """`names` and every stage they read, directly or not (upstream), or every stage that reads
    their outputs, directly or not (downstream): what `dvc repro NAME...` runs, or what a change
    to them may rerun."""
    found = set(names)
    while True:
        more = {name for name, stage in stages.items() if name not in found
                and any(reads(stages[f], stage) if upstream else reads(stage, stages[f])
                        for f in found)}
        if not more:
            return found
        found |= more


def stage_notebook(stage: Mapping) -> str:
    """The notebook a stage executes (the first `notebooks/...ipynb` of its command)."""
    match = NOTEBOOK.search(stage["cmd"])
    if match is None:
        raise ValueError(f"stage command runs no notebook: {stage['cmd']!r}")
    return match.group(1)


def stage_module(stage: Mapping) -> str | None:
    """The `lowdim` module a stage without a notebook runs (`python -m lowdim.tools.results`),
    or None for a notebook stage."""
    if NOTEBOOK.search(stage["cmd"]):
        return None
    match = MODULE.search(stage["cmd"])
    if match is None:
        raise ValueError(f"stage command runs no notebook and no `python -m lowdim...` module: "
                         f"{stage['cmd']!r}")
    return match.group(1)


def stage_source(stage: Mapping, root: Path) -> str:
    """The source a stage starts from: its notebook's code cells, or its module's file."""
    module = stage_module(stage)
    if module is None:
        return notebook_source(root / stage_notebook(stage))
    path = module_file(root / "src", module)
    if path is None:
        raise ValueError(f"stage command runs {module}, which has no file under src/")
    return path.read_text()


@cache
def _closure_of(notebook: Path, src: Path) -> frozenset[Path]:
    return frozenset(import_closure(notebook_source(notebook), src))


@cache
def _closure_of_module(module: str, src: Path) -> frozenset[Path]:
    return frozenset(import_closure(f"import {module}\n", src))


def code_closure(stage: Mapping, root: Path) -> set[str]:
    """Repository-relative paths of the notebook (if any) and every `lowdim` file the stage
    runs."""
    module = stage_module(stage)
    if module is not None:
        files = _closure_of_module(module, root / "src")
        return {path.relative_to(root).as_posix() for path in files}
    notebook = stage_notebook(stage)
    files = _closure_of(root / notebook, root / "src")
    return {notebook} | {path.relative_to(root).as_posix() for path in files}


def missing_code_deps(stage: Mapping, root: Path, deps: Iterable[str] | None = None) -> list[str]:
    """Files the stage runs that its `deps` (or the given `deps`) do not cover."""
    deps = list(dep_paths(stage) if deps is None else deps)
    return sorted(path for path in code_closure(stage, root) if not covered(path, deps))


def needless_code_deps(stage: Mapping, root: Path) -> list[str]:
    """Code deps (notebooks/, src/) that cover no file the stage runs: they rerun it for nothing."""
    closure = code_closure(stage, root)
    code = [dep for dep in dep_paths(stage) if dep.startswith(("src/", "notebooks/"))]
    return [dep for dep in code if not any(covered(path, [dep]) for path in closure)]


def input_parameters(stage: Mapping, exempt: Iterable[str] = ()) -> dict[str, str]:
    """`-p name path` parameters of the command that name data the stage reads (not writes)."""
    outs = out_paths(stage)
    inputs = {}
    for name, value in PATH_PARAMETER.findall(stage["cmd"]):
        is_path = value.startswith(("data/", "figures/", "metrics/")) or value == "figures"
        writes = covered(value, outs) or any(covered(out, [value]) for out in outs)
        if is_path and not writes and name not in exempt:
            inputs[name] = value
    return inputs


def unread_inputs(stage: Mapping, exempt: Iterable[str] = ()) -> list[str]:
    """Input paths passed to the notebook with no dep equal to, inside, or above them."""
    deps = dep_paths(stage)
    return sorted(f"{name}={path}" for name, path in input_parameters(stage, exempt).items()
                  if not any(covered(dep, [path]) or covered(path, [dep]) for dep in deps))


def load_stages(root: Path) -> dict[str, Mapping]:
    """The stages of the repository's dvc.yaml."""
    return yaml.safe_load((root / "dvc.yaml").read_text())["stages"]


def package_files(folder: Path) -> set[Path]:
    """Every Python file under a package folder, sub-packages included."""
    return {path for path in folder.rglob("*.py") if "__pycache__" not in path.parts}


def minimal_code_deps(stage: Mapping, root: Path) -> list[str]:
    """The `src/` deps that cover a stage's closure exactly: a package folder when the closure
    holds every file under it (the outermost such folder), otherwise the files one by one."""
    closure = {path for path in code_closure(stage, root) if path.startswith("src/")}
    entries = set()
    for path in closure:
        entry = path
        parent = Path(path).parent
        while parent.as_posix() != f"src/{PACKAGE}":
            inside = {p.relative_to(root).as_posix() for p in package_files(root / parent)}
            if inside <= closure:
                entry = parent.as_posix()
            parent = parent.parent
        entries.add(entry)
    return sorted(entries)


STAGE_LINE = re.compile(r"^  (\S+):\s*$")
DEP_LINE = re.compile(r"^      - (\S+)")


def rewrite_code_deps(text: str, root: Path) -> str:
    """dvc.yaml's text with each stage's `src/` deps replaced by `minimal_code_deps` (other deps,
    comments and layout kept; the new entries go where the first `src/` entry was)."""
    stages = yaml.safe_load(text)["stages"]
    out: list[str] = []
    stage = None
    in_deps = written = False
    for line in text.splitlines():
        if match := STAGE_LINE.match(line):
            stage, in_deps, written = match.group(1), False, False
        elif line.startswith("    ") and not line.startswith("      "):
            in_deps = line.strip() == "deps:"
        dep = DEP_LINE.match(line) if in_deps else None
        if dep and dep.group(1).startswith("src/"):
            if not written:
                out += [f"      - {entry}" for entry in minimal_code_deps(stages[stage], root)]
                written = True
            continue
        if dep and not written and stage and not dep.group(1).startswith("notebooks/"):
            out += [f"      - {entry}" for entry in minimal_code_deps(stages[stage], root)]
            written = True
        out.append(line)
    return "\n".join(out) + "\n"


CONFIG = f"{PACKAGE}.config"


def section_names(module: Path) -> dict[str, str]:
    """Class name -> `SECTION` (the dotted params.yaml section) of the classes of a config
    module."""
    found = {}
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if (isinstance(item, ast.Assign) and len(item.targets) == 1
                        and getattr(item.targets[0], "id", None) == "SECTION"
                        and isinstance(item.value, ast.Constant)):
                    found[node.name] = item.value.value
    return found


def loaded_sections(source: str, src: Path) -> set[str]:
    """The params.yaml sections a notebook loads: the section classes it passes to
    `lowdim.config.load.load(params_file, overrides, *Sections)`, found statically."""
    tree = ast.parse(source)
    classes: dict[str, str] = {}  # bound name -> section
    loaders = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(CONFIG + "."):
            if node.module == f"{CONFIG}.load":
                loaders |= {a.asname or a.name for a in node.names if a.name == "load"}
                continue
            path = module_file(src, node.module)
            sections = section_names(path) if path else {}
            classes |= {a.asname or a.name: sections[a.name] for a in node.names
                        if a.name in sections}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in loaders:
            for arg in node.args[2:]:
                if not (isinstance(arg, ast.Name) and arg.id in classes):
                    raise ValueError(f"load(...) argument {ast.unparse(arg)} is not a section "
                                     "class imported from lowdim.config: name the class itself")
                found.add(classes[arg.id])
    return found


def declared_params(stage: Mapping) -> list[str]:
    """A stage's `params` entries of params.yaml (a mapping entry names another file's keys)."""
    entries = []
    for entry in stage.get("params", []):
        if isinstance(entry, Mapping):
            entries += [key for file, keys in entry.items() if file == "params.yaml"
                        for key in keys]
        else:
            entries.append(str(entry))
    return entries


def params_mismatch(stage: Mapping, root: Path) -> list[str]:
    """Where a stage's `params` and the sections its notebook loads disagree: a loaded section
    with no declared entry (a change to it would not rerun the stage), or an entry that lies in
    no loaded section (a change to it reruns the stage for nothing)."""
    loaded = loaded_sections(stage_source(stage, root), root / "src")
    declared = declared_params(stage)
    problems = [f"loads {section}, but its params name nothing of it" for section in
                sorted(loaded) if not any(covered(e.replace(".", "/"), [section.replace(".", "/")])
                                          for e in declared)]
    problems += [f"params entry {entry} lies in no section it loads "
                 f"({', '.join(sorted(loaded)) or 'none'})" for entry in declared
                 if not covered(entry.replace(".", "/"), [s.replace(".", "/") for s in loaded])]
    return problems


def params_read_mismatch(declared: Iterable[str], read: Iterable[str],
                         exempt: Iterable[str] = ()) -> list[str]:
    """Where a stage's declared `params` and the keys it read disagree (the keys as
    `lowdim.config.load` logs them when `LOWDIM_PARAMS_LOG` is set: `train.device`, `models.fc`,
    `models` for the whole mapping): a declared entry that no read key equals, lies inside or
    encloses (a change to it reruns the stage for nothing), or a read key that lies in no declared
    entry (a change to it would not rerun the stage) and in none of `exempt` (keys read on purpose
    without a declaration: they change how the stage runs, never what it writes)."""
    declared, read = list(declared), set(read)

    def inside(key: str, entries: Iterable[str]) -> bool:
        return any(key == entry or key.startswith(entry + ".") for entry in entries)

    problems = [f"declares {entry}, but reads nothing of it" for entry in declared
                if not any(inside(key, [entry]) or inside(entry, [key]) for key in read)]
    problems += [f"reads {key}, which no params entry holds" for key in sorted(read)
                 if not inside(key, [*declared, *exempt])]
    return problems


def params_read(log: Path) -> dict[str, set[str]]:
    """Stage -> the keys it read, from a `LOWDIM_PARAMS_LOG` file (JSON lines)."""
    found: dict[str, set[str]] = {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        found.setdefault(entry["stage"], set()).add(entry["key"])
    return found


def main() -> int:
    root = find_root()
    if "--write" in sys.argv[1:]:
        path = root / "dvc.yaml"
        path.write_text(rewrite_code_deps(path.read_text(), root))
    problems = []
    for name, stage in load_stages(root).items():
        problems += [f"{name}: runs {path}, not in its deps"
                     for path in missing_code_deps(stage, root)]
        problems += [f"{name}: dep {dep} covers nothing it runs"
                     for dep in needless_code_deps(stage, root)]
        problems += [f"{name}: {problem}" for problem in params_mismatch(stage, root)]
    print("\n".join(problems) or "every stage's deps cover exactly the code it runs, and its "
          "params the sections it loads")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
