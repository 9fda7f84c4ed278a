"""Run a whole profile's study beside the workspace and commit its products under `results/`.

`make repro` runs the active profile (params.yaml) in place: its products are the workspace's.
A second profile's results (Fashion-MNIST beside the digits) must not overwrite those, and a
reader should see them without running anything. This tool runs the pipeline of another profile
in a private copy of the working tree and keeps what a reader needs:

    python -m lowdim.tools.study fashion-mnist          # or: make study PROFILE=fashion-mnist
    python -m lowdim.tools.study fashion-mnist --set data.train_size=200 --overrides small.yaml

1. The tracked and untracked (not ignored) files of the working tree are copied to
   `scratch/studies/<label>/` (a git repository of its own; `--workdir` moves it), with the
   profile, deep-merged with `--overrides` files and `--set key=value` pairs, as its params.yaml.
   The copy imports its own `src/` (PYTHONPATH), so editing the workspace during a long run
   changes nothing in it.
2. `dvc repro` runs there, with the workspace's DVC cache, so an unchanged stage is restored
   from DVC's run cache instead of recomputed (`--own-cache` gives the copy its own). `--stage
   NAME` (repeatable) runs only those stages and what they read, e.g. a first look at a new
   profile's embedding before its special studies.
3. `results/<label>/` receives `metrics/*.json`, the figures' PNGs, the params.yaml that ran and
   `run.json`: the command, the wall time, which stages ran and which came from the cache, the
   commit and whether the tree had uncommitted changes, and the machine.

Then `dvc repro results` puts the profile on docs/results.md beside the active one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import yaml

from lowdim.config.load import deep_merge
from lowdim.paths import find_root
from lowdim.tools.calibration import device_name

RESULTS = "results"
WORKDIRS = Path("scratch") / "studies"
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
RAN = re.compile(r"^Running stage '([^']+)'", re.M)
CACHED = re.compile(r"^Stage '([^']+)' is cached - skipping run", re.M)


# --- parameters ---


def parse_assignment(text: str) -> dict:
    """`a.b.c=value` -> {"a": {"b": {"c": value}}}, the value read as YAML (`[1, 2]`, `null`)."""
    key, sep, raw = text.partition("=")
    parts = key.split(".")
    if not sep or not all(parts):
        raise ValueError(f"--set {text!r}: write it as section.key=value, e.g. "
                         "data.train_size=6000")
    value = yaml.safe_load(raw) if raw.strip() else None
    for part in reversed(parts):
        value = {part: value}
    return value


def study_params(profile: Mapping, overrides: Sequence[Mapping]) -> dict:
    """The profile with each override deep-merged in order."""
    params = dict(profile)
    for extra in overrides:
        if not isinstance(extra, Mapping):
            raise ValueError(f"an override must be a mapping of sections, not {extra!r}")
        params = deep_merge(params, extra)
    return params


def profile_path(root: Path, name: str) -> Path:
    """profiles/<name>.yaml, or `name` itself when it is a file."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    path = root / "profiles" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in (root / "profiles").glob("*.yaml")))
        raise FileNotFoundError(f"no profile {name!r}: profiles/{name}.yaml does not exist "
                                f"(known: {known})")
    return path


def check_label(label: str) -> str:
    """A label usable as a directory name and a results-page heading."""
    if not LABEL.fullmatch(label):
        raise ValueError(f"label {label!r}: use letters, digits, '.', '_' or '-' (it names "
                         f"{RESULTS}/<label>/)")
    return label


# --- the private copy ---


def tree_files(root: Path) -> list[str]:
    """The tracked and untracked, not ignored, files of the working tree (what a clone plus the
    user's edits would hold)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=root, capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name and (root / name).is_file()]


def tree_state(root: Path) -> dict:
    """The commit of the working tree and whether tracked files differ from it."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                            capture_output=True, text=True)
    return {"commit": head.stdout.strip() or None,
            "uncommitted_changes": bool(status.stdout.strip())}


def active_product(name: str) -> bool:
    """Whether a tracked file is a product of the active profile (its metrics and figures), which
    the copy must not hold: a stage the copy does not run would otherwise leave the active
    profile's numbers among the study's."""
    folder, _, file = name.partition("/")
    return ((folder == "metrics" and file.endswith(".json"))
            or (folder == "figures" and not file.startswith(".")))


def make_workdir(root: Path, workdir: Path, params: Mapping) -> None:
    """A fresh git repository at `workdir` holding the working tree's files, without the active
    profile's products, and `params`."""
    if workdir.exists():
        shutil.rmtree(workdir)
    for name in filter(lambda n: not active_product(n), tree_files(root)):
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, workdir / name)
    (workdir / "params.yaml").write_text(yaml.safe_dump(dict(params), sort_keys=False))
    (workdir / "dvc.lock").unlink(missing_ok=True)  # the active profile's lock: not this one's
    git = ["git", "-c", "user.name=lowdim", "-c", "user.email=lowdim@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "study copy"]):
        subprocess.run(git + args, cwd=workdir, check=True, capture_output=True)


def study_env(workdir: Path) -> dict[str, str]:
    """The environment of the copy's commands: this interpreter's tools first on PATH and the
    copy's own sources first on the import path."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    python_path = os.pathsep.join(filter(None, [str(workdir / "src"),
                                                os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PATH": path, "PYTHONPATH": python_path}


def run_logged(cmd: Sequence[str], cwd: Path, env: Mapping[str, str], log: Path) -> str:
    """Run `cmd`, echoing its output and appending it to `log`; its output, or an error naming
    the log when it fails."""
    lines = []
    with log.open("a") as out, subprocess.Popen(cmd, cwd=cwd, env=dict(env), text=True,
                                               stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            out.write(line)
            lines.append(line)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit status {proc.returncode}) in {cwd}; "
                           f"its output is in {log}. Fix the cause and rerun the same command: "
                           "finished stages are reused.")
    return "".join(lines)


def check_stages(root: Path, stages: Sequence[str]) -> list[str]:
    """The `--stage` names, each a stage of the working tree's dvc.yaml (`dvc repro` runs them
    and everything they read)."""
    known = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    unknown = [s for s in stages if s not in known]
    if unknown:
        raise SystemExit(f"--stage {', '.join(unknown)}: no such stage in dvc.yaml; the stages "
                         f"are {', '.join(known)}")
    return list(stages)


def stage_outcomes(output: str) -> dict[str, list[str]]:
    """The stages a `dvc repro` output shows as run and as restored from the run cache."""
    return {"ran": RAN.findall(output), "cached": CACHED.findall(output)}


# --- the products kept ---


def machine() -> dict:
    """What ran it: processor, cores, memory, Python and torch."""
    import torch

    info = {"processor": device_name(torch.device("cpu")), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__}
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                   / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return info


def collect(workdir: Path, dest: Path, record: Mapping) -> list[str]:
    """Replace `dest` with the copy's metrics, figure PNGs, params.yaml and `record` (run.json);
    the files written, relative to `dest`. Built beside `dest` and renamed, so an interrupted
    collection leaves the previous results whole."""
    metrics = sorted((workdir / "metrics").glob("*.json"))
    if not metrics:
        raise FileNotFoundError(f"{workdir}/metrics holds no *.json: the pipeline wrote no "
                                "metrics, so there is nothing to keep")
    staging = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "metrics").mkdir(parents=True)
    (staging / "figures").mkdir()
    for path in metrics:
        shutil.copy2(path, staging / "metrics" / path.name)
    for path in sorted((workdir / "figures").glob("*.png")):
        shutil.copy2(path, staging / "figures" / path.name)
    shutil.copy2(workdir / "params.yaml", staging / "params.yaml")
    (staging / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    if dest.exists():
        shutil.rmtree(dest)
    staging.rename(dest)
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())


# --- the command ---


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lowdim.tools.study",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("profile", help="a profile name (profiles/<name>.yaml) or a YAML file")
    parser.add_argument("--label", help="names results/<label>/ (default: the profile's name)")
    parser.add_argument("--overrides", action="append", default=[], metavar="FILE",
                        help="a YAML mapping deep-merged onto the profile (repeatable)")
    parser.add_argument("--set", dest="assignments", action="append", default=[],
                        metavar="KEY=VALUE", help="one parameter, e.g. data.train_size=200")
    parser.add_argument("--workdir", type=Path,
                        help=f"where the copy runs (default: {WORKDIRS}/<label>)")
    parser.add_argument("--out", type=Path, help=f"where the products go ({RESULTS}/<label>)")
    parser.add_argument("--own-cache", action="store_true",
                        help="give the copy its own DVC cache instead of the workspace's")
    parser.add_argument("--stage", dest="stages", action="append", default=[], metavar="NAME",
                        help="run only this stage and the stages it reads (repeatable; "
                             "default: the whole pipeline)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = find_root()
    source = profile_path(root, args.profile)
    targets = check_stages(root, args.stages)
    profile = yaml.safe_load(source.read_text())
    label = check_label(args.label or str(profile.get("profile", source.stem)))
    overrides = [yaml.safe_load(Path(f).read_text()) for f in args.overrides]
    overrides += [parse_assignment(a) for a in args.assignments]
    params = study_params(profile, overrides)
    workdir = (args.workdir or root / WORKDIRS / label).resolve()
    dest = (args.out or root / RESULTS / label).resolve()

    state = tree_state(root)
    make_workdir(root, workdir, params)
    env = study_env(workdir)
    log = workdir / "study.log"
    python = sys.executable
    run_logged([python, "-m", "lowdim.tools.params", "params.yaml"], workdir, env, log)
    if not args.own_cache:
        run_logged(["dvc", "cache", "dir", "--local", str(root / ".dvc" / "cache")], workdir,
                   env, log)
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    output = run_logged(["dvc", "repro", *targets], workdir, env, log)
    wall = time.perf_counter() - clock
    record = {
        "profile": str(source.relative_to(root)) if source.is_relative_to(root) else str(source),
        "label": label,
        "command": "python -m lowdim.tools.study " + " ".join(argv if argv is not None
                                                             else sys.argv[1:]),
        "overrides": overrides,
        **state,
        "started_utc": started.isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 1),
        "targets": args.stages or "the whole pipeline",
        "stages": stage_outcomes(output),
        "machine": machine(),
    }
    written = collect(workdir, dest, record)
    print(f"\n{label}: dvc repro took {wall / 60:.1f} min "
          f"({len(record['stages']['ran'])} stages ran, "
          f"{len(record['stages']['cached'])} restored from the cache); "
          f"wrote {len(written)} files to {dest}")
    print("next: `dvc repro results` puts it on docs/results.md; commit "
          f"{dest.relative_to(root) if dest.is_relative_to(root) else dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
