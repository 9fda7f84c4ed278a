"""The pipeline at scale: every stage that does not train, on M synthetic checkpoints.

Builds a run store of R runs x T checkpoints x N samples in the store's real format
(``lowdim.store.runs.write_run``; R / 3 configurations of 3 seeds each): per run and sample, a
noisy path from ignorance towards a near-one-hot prediction at a run-specific endpoint
(square-root probabilities interpolated on the sphere, run-specific speed and noise), float32 as
training writes them. Then it runs the stage functions that notebooks 30, 40 and 50 call, and
the later stages' notebooks themselves, each stage in its own process so that each stage's peak
resident set (VmHWM, read in the child) is its own:

- predictions: ``plan_analysis_set`` -> ``check_predictions_disk`` -> ``write_analysis_set``
- distances: ``plan_distances`` -> ``check_distances_disk`` -> ``write_distances`` (block cache
  on, as the stage's default; ``--no-cache`` turns it off)
- embedding: ``open_distance_matrix`` + ``load_centring_sums`` -> ``inpca`` (solver auto, 50
  components and the stress dimensions of the default profile)
- trajectories: the code cells of ``notebooks/60_trajectories.ipynb`` (the stage itself,
  parameters injected as papermill would; the active params.yaml with
  ``trajectories.trained_max_error`` 1.0, so that every run, one average per configuration
  and the geodesic enter each space's (G, R, R) tensor)
- intervals, joint_embedding, averaging, tangents: those stages' notebooks likewise (their
  notebook and input/output paths read from dvc.yaml and moved into the work directory; the
  averaging study on the first configuration with two runs)
- figures: every figure notebook of dvc.yaml whose inputs the stages above made, one after
  the other in one process (the row's RSS is the largest of them); the figures of the corner,
  synthetic and larger-network studies need trained networks and are listed as skipped

With ``--landmark-route PER_RUN`` the distances and embedding stages are notebooks 40 and 50
themselves under ``distances.landmarks = embedding.landmarks = L`` (PER_RUN landmarks per run,
chosen ``farthest`` unless ``--landmark-choice even``): every point's distances to L landmarks
only, and the landmark embedding; the stages that need the whole matrix are skipped (and so
are its figures, such as Figure 7).

With ``--reuse`` a size's work directory (kept by an earlier ``--keep`` run in the same
``--workdir``) is used as it is, so later stages can be measured without rebuilding the earlier
ones: ``--sizes 10000 --stages joint_embedding figures --reuse --keep --workdir DIR``.

    PYTHONPATH=src nice -n 10 python benchmarks/scale.py --sizes 2000 10000 30000
    PYTHONPATH=src python benchmarks/scale.py --quick          # a smoke size
    PYTHONPATH=src python benchmarks/scale.py --device cuda    # Triton kernel, GPU products

M is R x T run checkpoints (T = --checkpoints) plus the 102 reference rows the predictions
stage adds (ignorance, truth, 100 geodesic points). N is the train samples the distances use
(sample_step 1 here); the test space has N / 5. Prints per stage and size the wall time, the
peak RSS and the bytes written to disk (allocated blocks; the block cache included for the
distances), then the growth exponent log(x2/x1) / log(M2/M1) of time and RSS between successive
sizes, then an extrapolation to --extrapolate M N (labelled as such). Numbers, not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

C_DEFAULT = 10
GEODESIC_POINTS = 100
TRAJECTORY_GRID = 100  # trajectories.grid_points of the default profile (G)
N_COMPONENTS = 50
STRESS_DIMS = (1, 2, 3, 10, 50)
SEEDS = 3  # seeds per configuration (the quick profile's; the paper's grid has 2 to 5)
FACTORS = dict(optimizer="sgd", batch_size=200, base_lr=0.1, lr=0.1, weight_decay=0.0,
               augment="none", init="default", epochs=10)
NOTEBOOK_STAGES = ("intervals", "joint_embedding", "averaging", "tangents")
STAGES = ("predictions", "distances", "embedding", "trajectories", *NOTEBOOK_STAGES, "figures")
NEEDS_WHOLE_MATRIX = NOTEBOOK_STAGES  # they stop on landmark distances (require_full_matrix)
# Every synthetic run counts as trained; the averaging study takes the first configuration with
# two or more runs (synthetic runs of one architecture differ only in their seed).
OVERRIDES = {"trajectories": {"trained_max_error": 1.0},
             "studies": {"averaging": {"arch": None, "optimizer": None}}}


# --------------------------------------------------------------------------- the run store


def run_paths(rng: np.random.Generator, labels: np.ndarray, checkpoints: int, c: int
              ) -> np.ndarray:
    """(T, N, C) float32 (the run store's dtype): one run's path from ignorance towards its own
    near-one-hot endpoint."""
    n = len(labels)
    sharpness = rng.uniform(4.0, 9.0)
    logits = sharpness * np.eye(c)[labels] + rng.uniform(0.5, 2.5) * rng.standard_normal((n, c))
    end = np.exp(logits - logits.max(axis=1, keepdims=True))
    a1 = np.sqrt(end / end.sum(axis=1, keepdims=True))
    a0 = np.full((n, c), 1.0 / math.sqrt(c))
    theta = np.arccos(np.clip((a0 * a1).sum(axis=1), -1.0, 1.0))[None, :, None]
    t = np.linspace(0.0, 1.0, checkpoints) ** rng.uniform(0.5, 2.0)  # run-specific speed
    t = t[:, None, None]
    a = (np.sin((1 - t) * theta) * a0 + np.sin(t * theta) * a1) / np.sin(theta)
    a = np.abs(a + 0.02 * t * rng.standard_normal(a.shape))  # noise grows along the path
    p = a * a
    return (p / p.sum(axis=2, keepdims=True)).astype(np.float32)


def build_store(work: Path, runs: int, checkpoints: int, n: dict[str, int], c: int,
                seed: int = 0) -> None:
    """The run store, specs and labels of one size (written under `work`)."""
    from lowdim.store.records import RunSpec
    from lowdim.store.runs import write_run
    from lowdim.training.run import RunResult

    rng = np.random.default_rng(seed)
    labels = {space: rng.integers(0, c, size=count) for space, count in n.items()}
    specs = []
    archs = ("fc", "allcnn", "wr-10-4-8", "wr-16-4-16", "convmixer", "vit")
    for r in range(runs):
        # SEEDS seeds per configuration, as in the grids: configurations cycle through the
        # architectures, and those of one architecture differ in their weight decay
        config, seed = divmod(r, SEEDS)
        factors = {**FACTORS, "weight_decay": 1e-4 * (config // len(archs))}
        spec = RunSpec(arch=archs[config % len(archs)], seed=seed, **factors)
        result = RunResult(spec=spec, iters_per_epoch=100)
        paths = {space: run_paths(rng, y, checkpoints, c) for space, y in labels.items()}
        for k in range(checkpoints):
            result.steps.append(k * 10)
            result.epochs.append(k / 10)
            for space, y in labels.items():
                p = paths[space][k]
                result.probs[space].append(paths[space][k])
                result.loss[space].append(float(-np.log(np.maximum(p[np.arange(len(y)), y],
                                                                   1e-30)).mean()))
                result.error[space].append(float((p.argmax(1) != y).mean()))
        write_run(work / "runs", result, "synthetic")
        specs.append(spec.to_dict())
    (work / "specs.json").write_text(json.dumps(specs))
    np.savez(work / "labels.npz", **labels)


# --------------------------------------------------------------------------- stages (children)


def child(stage: str, work: Path, options: dict) -> dict:
    """Run one stage as notebooks 30 / 40 / 50 do; returns what it printed."""
    from lowdim.store.records import RunSpec

    notes = []
    if options.get("route") and stage in ("distances", "embedding"):
        notebook, parameters, _ = dvc_stage(stage, work, options)
        notes += run_notebook(notebook, parameters)
    elif stage == "predictions":
        from lowdim.analysis.analysis_set import (
            check_predictions_disk,
            plan_analysis_set,
            write_analysis_set,
        )

        specs = [RunSpec(**s) for s in json.loads((work / "specs.json").read_text())]
        with np.load(work / "labels.npz") as z:
            labels = {space: z[space] for space in z.files}
        plan = plan_analysis_set(work / "runs", specs, labels, options["c"], GEODESIC_POINTS)
        notes.append(plan.describe())
        check_predictions_disk(plan, work / "predictions")
        write_analysis_set(work / "runs", specs, labels, options["c"], GEODESIC_POINTS,
                           work / "predictions")
    elif stage == "distances":
        from lowdim.analysis.analysis_set import reference_distances
        from lowdim.geometry.distance_blocks import (
            check_distances_disk,
            plan_distances,
            unit_labels,
            write_distances,
        )
        from lowdim.geometry.distances import DistanceSettings
        from lowdim.store.analysis_set import load_index, open_probs
        from lowdim.store.block_cache import BlockCache

        index = load_index(work / "predictions")
        probs = {space: open_probs(work / "predictions", space) for space in ("train", "test")}
        labels = unit_labels(index)
        samples = {s: p.shape[1] for s, p in probs.items()}
        plan = plan_distances(len(index), samples, options["c"], dtype=options["dtype"],
                              cache=options["cache"], units=len(set(labels)),
                              device=options["device"])
        notes.append(plan.describe())
        cache_dir = work / "cache" if options["cache"] else None
        use_cache = check_distances_disk(plan, work / "distances", cache_dir)
        cache = BlockCache(cache_dir) if use_cache else None
        reference = reference_distances(probs, index, bc_floor=1e-8)
        start = time.perf_counter()
        done = write_distances(probs, labels, cache, work / "distances", reference,
                               settings=DistanceSettings(device=options["device"]),
                               dtype=options["dtype"])
        seconds = time.perf_counter() - start
        notes.append(f"matrices {seconds:.1f} s: {plan.pair_samples / seconds / 1e9:.3f} G "
                     "pair-sample terms per second; "
                     + "; ".join(f"{s}: {d.computed} of {d.blocks} unit-pair blocks computed"
                                 for s, d in done.items()))
        options["pair_samples"] = plan.pair_samples
        options["matrix_seconds"] = seconds
    elif stage == "embedding":
        from lowdim.geometry.eigen import stats_from_arrays
        from lowdim.geometry.inpca import inpca, memory_estimate, stress_metrics
        from lowdim.store.arrays import human_bytes
        from lowdim.store.distance_matrices import load_centring_sums, open_distance_matrix
        from lowdim.store.products import save_embeddings

        n_eigenvalues = max(N_COMPONENTS, *STRESS_DIMS)
        embeddings = {}
        for space in ("train", "test"):
            d = open_distance_matrix(work / "distances", space)
            stats = stats_from_arrays(load_centring_sums(work / "distances", space))
            need = memory_estimate(d.shape[0], N_COMPONENTS, n_eigenvalues=n_eigenvalues,
                                   landmarks=options["landmarks"])
            notes.append(f"{space}: memory about {human_bytes(need)} plus the interpreter")
            embeddings[space] = inpca(d, N_COMPONENTS, n_eigenvalues=n_eigenvalues, stats=stats,
                                      landmarks=options["landmarks"],
                                      device=None if options["device"] == "cpu" else "cuda")
            notes.append(f"{space}: {stress_metrics(embeddings[space], STRESS_DIMS)}")
        save_embeddings(embeddings, work / "embedding")
    elif stage == "trajectories":
        notebook, parameters, _ = dvc_stage(stage, work, options)
        notes += run_notebook(notebook, parameters)
        count = np.load(work / "trajectories" / "train_tensor.npy", mmap_mode="r").shape
        notes.append(f"train tensor (G, R, R) = {count}")
    elif stage in NOTEBOOK_STAGES:
        notebook, parameters, missing = dvc_stage(stage, work, options)
        if missing:
            raise RuntimeError(f"{stage} needs {', '.join(missing)}: run the stages before it")
        notes += run_notebook(notebook, parameters)
    elif stage == "figures":
        for name in figure_stages():
            notebook, parameters, missing = dvc_stage(name, work, options)
            if missing:
                notes.append(f"{name}: skipped, needs {', '.join(missing)}")
                continue
            try:
                notes += run_notebook(notebook, parameters)
            except ValueError as error:  # a reader of the whole D on landmark distances
                if "landmark distances only" not in str(error):
                    raise
                notes.append(f"{name}: skipped, needs the whole distance matrix")
    else:
        raise ValueError(f"unknown stage {stage!r}")
    return {"notes": notes, "pair_samples": options.get("pair_samples"),
            "matrix_seconds": options.get("matrix_seconds")}


def dvc_stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def figure_stages() -> list[str]:
    """The figure stages of dvc.yaml, in its order."""
    return [name for name, stage in dvc_stages().items()
            if "notebooks/figures/" in stage.get("cmd", "")]


def in_work(value: str, work: Path) -> str:
    """A pipeline path of dvc.yaml moved into the work directory (data/x -> work/x)."""
    for prefix in ("data/", ""):
        if value.startswith(prefix) and value.split("/")[0] in ("data", "figures", "metrics"):
            return str(work / value[len(prefix):])
    return value


def dvc_stage(name: str, work: Path, options: dict) -> tuple[Path, dict, list[str]]:
    """The notebook of dvc.yaml's stage `name`, its parameters (paths in `work`, the active
    params.yaml with ``OVERRIDES`` and ``--resamples``) and the inputs (deps under data/ or
    metrics/) it lacks."""
    stage = dvc_stages()[name]
    tokens = shlex.split(stage["cmd"].replace("${nb}", ""))
    overrides = dict(OVERRIDES)
    if options.get("resamples"):
        overrides["intervals"] = {"resamples": options["resamples"]}
    if options.get("route"):  # distances to L landmarks only, and their embedding
        overrides["distances"] = {"landmarks": options["route"],
                                  "landmark_choice": options["choice"],
                                  "cache": False}
        overrides["embedding"] = {"landmarks": options["route"]}
    parameters = {"params_file": str(ROOT / "params.yaml"), "overrides": overrides}
    for flag, key, value in zip(tokens[2::3], tokens[3::3], tokens[4::3], strict=False):
        if flag == "-p":
            parameters[key] = in_work(value, work)
    inputs = [dep for dep in stage.get("deps", []) if dep.split("/")[0] in ("data", "metrics")]
    missing = [dep for dep in inputs if not Path(in_work(dep, work)).exists()]
    return ROOT / tokens[0], parameters, missing


def run_notebook(notebook: Path, parameters: dict) -> list[str]:
    """Run a stage notebook's code cells in this process, `parameters` set after its parameters
    cell as papermill injects them; returns a note of its wall time."""
    cells = json.loads(notebook.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    first = next(i for i, c in enumerate(code) if "parameters" in c["metadata"].get("tags", []))
    namespace = {"__name__": "__main__"}
    start = time.perf_counter()
    exec("".join(code[first]["source"]), namespace)
    namespace.update(parameters)
    for cell in code[first + 1:]:
        exec("".join(cell["source"]), namespace)
    return [f"{notebook.name}: cells {time.perf_counter() - start:.1f} s"]


def count_matrix_reads() -> dict[str, int]:
    """Count, from now on in this process, the bytes of the distance matrices (``NpyFile``s in a
    ``distances`` directory) that reads return: {"bytes": n}, updated as they happen. The
    passes a stage makes over D are these bytes over D's size."""
    from lowdim.store.arrays import NpyFile

    counter, depth = {"bytes": 0}, [0]

    def counted(method):
        def wrapper(self, *args, **kwargs):
            depth[0] += 1
            try:
                out = method(self, *args, **kwargs)
            finally:
                depth[0] -= 1
            if depth[0] == 0 and self.path.parent.name == "distances":
                counter["bytes"] += int(getattr(out, "nbytes", 0))
            return out
        return wrapper

    NpyFile.read_rows = counted(NpyFile.read_rows)
    NpyFile.rows_in_place = counted(NpyFile.rows_in_place)  # the products' slabs
    NpyFile.__getitem__ = counted(NpyFile.__getitem__)
    return counter


def disk_read_bandwidth(directory: Path, size: int = 512 * 2**20) -> float | None:
    """Bytes per second of reading a new file of `size` bytes in `directory` once its pages are
    dropped from the page cache (posix_fadvise DONTNEED after fsync); None where that cannot
    be done (the figure would be the page cache's)."""
    if not hasattr(os, "posix_fadvise"):
        return None
    path = directory / "bandwidth.tmp"
    chunk = np.random.default_rng(0).bytes(16 * 2**20)
    try:
        with open(path, "wb") as f:
            for _ in range(size // len(chunk)):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        with open(path, "rb", buffering=0) as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            start = time.perf_counter()
            while f.read(len(chunk)):
                pass
            return size / (time.perf_counter() - start)
    finally:
        path.unlink(missing_ok=True)


def memory_bytes() -> int:
    """This machine's physical memory: the most the page cache could hold of D."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def vm_hwm() -> int:
    """Peak resident set of this process in bytes (VmHWM), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --------------------------------------------------------------------------- the parent


def allocated(paths: list[Path]) -> int:
    """Bytes of disk blocks allocated under `paths`."""
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_blocks * 512
        elif path.is_dir():
            total += sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())
    return total


def run_stage(stage: str, work: Path, options: dict) -> dict:
    """One stage in a child process: wall time, its peak RSS and the disk it wrote."""
    outputs = {"predictions": [work / "predictions"],
               "distances": [work / "distances", work / "cache"],
               "embedding": [work / "embedding"],
               "trajectories": [work / "trajectories"],
               "figures": [work / "figures"]}.get(stage, [work / "studies", work / "metrics"])
    before = allocated(outputs)
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", stage, "--workdir", str(work),
                           "--options", json.dumps(options)], env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(wall=wall, disk=allocated(outputs) - before)
    return result


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 / 10 else f"{n / 2**20:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000, 30000],
                        help="M = R x T run checkpoints per size")
    parser.add_argument("--n", type=int, default=1000, help="train samples (test: N / 5)")
    parser.add_argument("--c", type=int, default=C_DEFAULT, help="classes")
    parser.add_argument("--checkpoints", type=int, default=66, help="T per run (paper: ~66)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                        help="stored distance matrices (distances.dtype)")
    parser.add_argument("--no-cache", action="store_true", help="distances without block cache")
    parser.add_argument("--landmarks", type=int, default=None, help="embedding.landmarks")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--quick", action="store_true", help="one smoke size: M = 600, N = 100")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where stores and products go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep each size's files")
    parser.add_argument("--resamples", type=int, default=None,
                        help="intervals.resamples (default: the profile's); the intervals "
                        "stage's time is about linear in it")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write each stage's row (wall, RSS, disk, D bytes read) here, "
                        "after every stage")
    parser.add_argument("--landmark-route", type=float, default=None, metavar="PER_RUN",
                        help="the landmark route: distances.landmarks = embedding.landmarks = "
                        "PER_RUN x runs; the stages that need the whole matrix are skipped")
    parser.add_argument("--landmark-choice", choices=("even", "farthest"), default="farthest",
                        help="distances.landmark_choice of the landmark route")
    parser.add_argument("--report", type=Path, nargs="+", default=None, metavar="JSON",
                        help="print the table, exponents and extrapolation of earlier runs' "
                        "--json rows (the same options as those runs) and stop")
    parser.add_argument("--reuse", action="store_true",
                        help="use each size's kept work directory as it is (no rebuild)")
    parser.add_argument("--extrapolate", type=int, nargs=2, default=[150_000, 2_500],
                        metavar=("M", "N"), help="size to extrapolate to (train N; test N / 5)")
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        reads = count_matrix_reads()
        result = child(args.child, args.workdir, json.loads(args.options))
        result["rss"] = vm_hwm()
        result["d_bytes_read"] = reads["bytes"]
        print(json.dumps(result))
        return
    if args.report:
        base = args.workdir or Path(os.environ.get("TMPDIR", "/tmp")) / "lowdim-scale"
        base.mkdir(parents=True, exist_ok=True)
        report(rows_from(args.report), args, {"train": args.n, "test": max(1, args.n // 5)},
               disk_read_bandwidth(base))
        return
    if args.quick:
        args.sizes, args.n = [600], 100
    base = args.workdir or Path(os.environ.get("TMPDIR", "/tmp")) / "lowdim-scale"
    options = {"c": args.c, "dtype": args.dtype, "cache": not args.no_cache,
               "device": args.device, "landmarks": args.landmarks,
               "resamples": args.resamples}
    n = {"train": args.n, "test": max(1, args.n // 5)}
    print(f"lowdim scale benchmark: N = {n['train']} train / {n['test']} test samples, "
          f"C = {args.c}, T = {args.checkpoints} checkpoints per run, distances {args.dtype}, "
          f"cache {'off' if args.no_cache else 'on'}, device {args.device}, "
          f"landmarks {args.landmarks}, landmark route "
          f"{f'{args.landmark_route:g} per run' if args.landmark_route else 'off'}, "
          f"intervals.resamples {args.resamples or 'as the profile'}; "
          f"{os.cpu_count()} CPUs; work in {base}")
    base.mkdir(parents=True, exist_ok=True)
    bandwidth = disk_read_bandwidth(base)
    print("cold disk reads in the work directory: "
          + (f"{bandwidth / 1e6:.0f} MB/s" if bandwidth else "not measurable here"))
    rows = []
    for size in args.sizes:
        runs = max(1, round(size / args.checkpoints))
        work = base / f"m{size}"
        m = runs * args.checkpoints + 2 + GEODESIC_POINTS
        if args.reuse:
            if not (work / "runs").is_dir():
                raise SystemExit(f"--reuse: {work} holds no run store; run this size with "
                                 "--keep first")
            print(f"\nM = {m}: reusing {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            start = time.perf_counter()
            build_store(work, runs, args.checkpoints, n, args.c)
            print(f"\nM = {m} ({runs} runs x {args.checkpoints} + {2 + GEODESIC_POINTS} "
                  f"reference rows): run store {gib(allocated([work / 'runs']))} built in "
                  f"{time.perf_counter() - start:.1f} s")
        if args.landmark_route:
            options["route"] = max(2, round(args.landmark_route * runs))
            options["choice"] = args.landmark_choice
            print(f"  landmark route: L = {options['route']} landmarks, chosen "
                  f"{args.landmark_choice}")
        for stage in args.stages:
            if options.get("route") and stage in NEEDS_WHOLE_MATRIX:
                print(f"  {stage}: skipped, needs the whole distance matrix")
                continue
            result = run_stage(stage, work, options)
            rows.append({"stage": stage, "m": m, **result})
            for note in result["notes"]:
                print(f"  {stage}: {note}")
            print(f"  {stage}: wall {result['wall']:.1f} s, peak RSS {gib(result['rss'])}, "
                  f"disk written {gib(result['disk'])}", flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    report(rows, args, n, bandwidth)


def report(rows: list[dict], args: argparse.Namespace, n: dict[str, int],
           bandwidth: float | None) -> None:
    """The table of every row, the growth exponents between successive sizes of each stage and
    the extrapolation."""
    print(f"\n{'stage':<16} {'M':>8} {'N':>6} {'wall s':>9} {'peak RSS':>11} {'disk written':>13}"
          f" {'D passes':>9}")
    itemsize = 8 if args.dtype == "float64" else 4
    for r in rows:
        passes = r.get("d_bytes_read", 0) / (itemsize * r["m"] ** 2 * 2)
        print(f"{r['stage']:<16} {r['m']:>8} {args.n:>6} {r['wall']:>9.1f} "
              f"{gib(r['rss']):>11} {gib(r['disk']):>13} {passes:>9.1f}")
    print("\ngrowth exponents log(x2/x1) / log(M2/M1):")
    print(f"{'stage':<16} {'M1 -> M2':>18} {'time':>7} {'RSS':>7}")
    for stage in args.stages:
        mine = [r for r in rows if r["stage"] == stage]
        for a, b in zip(mine, mine[1:], strict=False):
            scale = math.log(b["m"] / a["m"])
            print(f"{stage:<16} {a['m']:>8} -> {b['m']:<8} "
                  f"{math.log(b['wall'] / a['wall']) / scale:>7.2f} "
                  f"{math.log(b['rss'] / a['rss']) / scale:>7.2f}")
    extrapolate(rows, args, n, bandwidth)


def rows_from(paths: list[Path]) -> list[dict]:
    """The rows of earlier runs' --json files, each stage's sizes in increasing M and the stages
    in pipeline order (a later file's row replaces an earlier one of the same stage and M)."""
    found = {}
    for path in paths:
        for r in json.loads(path.read_text()):
            found[(r["stage"], r["m"])] = r
    return sorted(found.values(), key=lambda r: (r["m"], STAGES.index(r["stage"])))


def exponent_origin(time_exps: list[float]) -> str:
    """Where an extrapolation's time exponent comes from: measured between sizes, or assumed."""
    return "measured, clipped to [1, 2]" if time_exps else "assumed: one size measured"


def extrapolate(rows: list[dict], args: argparse.Namespace, n: dict[str, int],
                bandwidth: float | None) -> None:
    """Extrapolated time, RSS and disk at --extrapolate M N from the largest measured size:
    predictions and trajectories linear in N, distances by pair-sample terms, the stages that
    read D by their measured passes over it (compute ~ M^2, plus reading D at `bandwidth`,
    bytes per second of a cold disk read, when two matrices exceed this machine's memory)."""
    big_m, big_n = args.extrapolate
    big = {"train": big_n, "test": max(1, big_n // 5)}
    print(f"\nEXTRAPOLATED (not measured) to M = {big_m}, N = {big['train']} train / "
          f"{big['test']} test (N enters predictions, distances, trajectories and the joint "
          f"stage's Euclidean matrices; the others read D), from the largest size measured; "
          f"memory here "
          f"{memory_bytes() / 2**30:.0f} GiB, cold disk reads "
          + (f"{bandwidth / 1e6:.0f} MB/s:" if bandwidth else "not measured:"))
    itemsize = 8 if args.dtype == "float64" else 4
    for stage in args.stages:
        mine = [r for r in rows if r["stage"] == stage]
        if not mine:
            continue
        last = mine[-1]
        ratio = big_m / last["m"]
        if len(mine) >= 2:  # linear in M from the last two sizes: interpreter + per-point slope
            prev = mine[-2]
            slope = max(0.0, (last["rss"] - prev["rss"]) / (last["m"] - prev["m"]))
            rss = last["rss"] + slope * (big_m - last["m"])
            rss_how = f"{slope:.0f} bytes per point beyond the last size"
        else:
            rss, rss_how = None, "needs two sizes"
        if stage == "distances" and args.landmark_route:
            wall = last["wall"] * ratio**2 * sum(big.values()) / sum(n.values())
            how = ("landmark route: M x L pair-sample terms with L = "
                   f"{args.landmark_route:g} per run, so ~ M^2 N")
            disk = 2 * big_m * (args.landmark_route * big_m / args.checkpoints) * itemsize
        elif stage == "distances" and last.get("pair_samples"):
            rate = last["pair_samples"] / last["matrix_seconds"]
            terms = big_m * (big_m + 1) / 2 * sum(big.values())
            wall = terms / rate + (last["wall"] - last["matrix_seconds"]) * ratio**2
            how = (f"{terms / 1e12:.3g} T pair-sample terms at the measured "
                   f"{rate / 1e9:.3f} G/s")
            # two matrices; a cold cache holds the unit pairs u <= v: about half of each again
            disk = 2 * big_m**2 * itemsize * (1.5 if not args.no_cache else 1)
        elif stage == "predictions":
            wall = last["wall"] * ratio * sum(big.values()) / sum(n.values())
            how = "linear in M x N"
            disk = big_m * sum(big.values()) * args.c * 4
        elif stage == "trajectories":
            # progress is O(M N C), the tensor O(G R^2 N C) with R ~ M / T: exponent 1 to 2
            time_exps = [math.log(b["wall"] / a["wall"]) / math.log(b["m"] / a["m"])
                         for a, b in zip(mine, mine[1:], strict=False)]
            exp = min(max(time_exps[-1], 1.0), 2.0) if time_exps else 2.0
            wall = last["wall"] * ratio**exp * sum(big.values()) / sum(n.values())
            how = f"time exponent {exp:.2f} in M ({exponent_origin(time_exps)}), linear in N"
            r = big_m / args.checkpoints * (1 + 1 / SEEDS) + 1  # runs, averages, geodesic
            disk = 2 * TRAJECTORY_GRID * r * r * 8
        elif last.get("d_bytes_read", 0) >= 0.5 * itemsize * last["m"] ** 2 * 2:
            # passes over D, each O(M^2) compute at the rate measured (D in the page cache
            # there), plus reading D from disk where it outgrows the page cache
            passes = last["d_bytes_read"] / (itemsize * last["m"] ** 2 * 2)
            compute = last["wall"] * ratio**2
            if stage == "joint_embedding":  # its Euclidean matrices are O(M^2 N): an upper bound
                compute *= sum(big.values()) / sum(n.values())
            read = last["d_bytes_read"] * ratio**2
            spill = 2 * itemsize * big_m**2 > memory_bytes()
            io = read / bandwidth if spill and bandwidth else 0.0
            wall = compute + io
            how = (f"{passes:.1f} passes over the two spaces' D, compute x (M ratio)^2 "
                   + ("x (N ratio), an upper bound (the Euclidean matrices grow with N, the "
                      "embeddings do not) " if stage == "joint_embedding" else "")
                   + f"= {compute / 3600:.2f} h, + {read / 1e12:.2f} TB read "
                   + (f"from disk at {bandwidth / 1e6:.0f} MB/s = {io / 3600:.2f} h, D larger "
                      "than this machine's memory" if spill and bandwidth else
                      "from the page cache (D fits this machine's memory)" if not spill else
                      "from disk at an unmeasured bandwidth (not counted)"))
            disk = 0
        else:
            time_exps = [math.log(b["wall"] / a["wall"]) / math.log(b["m"] / a["m"])
                         for a, b in zip(mine, mine[1:], strict=False)]
            exp = min(max(time_exps[-1], 1.0), 2.0) if time_exps else 1.0
            wall = last["wall"] * ratio**exp
            how = (f"time exponent {exp:.2f} in M ({exponent_origin(time_exps)}; less than half "
                   "a pass over D)")
            disk = 0
        memory = f"~{gib(rss)}" if rss is not None else "not extrapolated"
        print(f"  {stage:<16} wall ~{wall / 3600:.2f} h ({how}); peak RSS {memory} "
              f"({rss_how}); disk ~{disk / 1e9:.0f} GB")


if __name__ == "__main__":
    main()
