# The README's commands. `make repro` and `make test` create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup repro test test-fast lint profile plan study clean-venv mutants

setup: $(BIN)/lowdim-ready

# PyPI's torch (the CUDA build, which also runs on CPUs) and torchvision, then the package.
$(BIN)/lowdim-ready: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# A Jupyter kernel for this environment, so JupyterLab runs the notebooks with it: in the
	# environment (for .venv/bin/jupyter lab) and in the user's kernels (for any other JupyterLab).
	$(BIN)/python -m ipykernel install --sys-prefix --name lowdim --display-name "lowdim (.venv)"
	$(BIN)/python -m ipykernel install --user --name lowdim --display-name "lowdim (.venv)"
	touch $@

# The whole parameter file first: each stage validates only the sections it reads.
repro: setup
	$(BIN)/python -m lowdim.tools.params params.yaml
	$(BIN)/dvc repro

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check .

# Mutation testing of the numerical core ([tool.mutmut] in pyproject.toml; docs/performance.md,
# "Mutation testing"): a fresh mutants/ each time, then the score per module. Not part of `test`.
# numba's default OpenMP layer is not fork-safe (mutmut forks a worker per mutant): workqueue is;
# one thread per worker, MUTMUT_JOBS workers.
MUTMUT_JOBS ?= 2
mutants: setup
	rm -rf mutants
	NUMBA_THREADING_LAYER=workqueue NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
	OPENBLAS_NUM_THREADS=1 $(BIN)/mutmut run --max-children $(MUTMUT_JOBS)
	$(BIN)/python benchmarks/mutation_score.py

# Switch the active profile: make profile NAME=tiny (see profiles/).
profile:
	@test -n "$(NAME)" || { echo "usage: make profile NAME=<$$(ls profiles | sed 's/.yaml//' | paste -sd'|')>"; exit 2; }
	@test -f profiles/$(NAME).yaml || { echo "no profile profiles/$(NAME).yaml"; exit 2; }
	cp profiles/$(NAME).yaml params.yaml

# The bill of a profile before launch (lowdim.tools.plan): runs, checkpoints, training hours,
# disk with DVC's cache, memory, warnings. make plan PROFILE=cifar10-paper (no PROFILE: params.yaml);
# PLAN_ARGS passes options, e.g. PLAN_ARGS="--device cuda".
plan: setup
	@test -z "$(PROFILE)" || test -f profiles/$(PROFILE).yaml || { echo "no profile profiles/$(PROFILE).yaml"; exit 2; }
	$(BIN)/python -m lowdim.tools.plan $(if $(PROFILE),profiles/$(PROFILE).yaml,params.yaml) $(PLAN_ARGS)

# Another profile's whole study in a private copy (scratch/studies/<profile>/), its metrics,
# figures and run record kept in results/<profile>/ for the results page (lowdim.tools.study):
# make study PROFILE=fashion-mnist. STUDY_ARGS passes options, e.g. STUDY_ARGS="--set data.train_size=600".
study: setup
	@test -n "$(PROFILE)" || { echo "usage: make study PROFILE=<$$(ls profiles | sed 's/.yaml//' | paste -sd'|')>"; exit 2; }
	@test -f profiles/$(PROFILE).yaml || { echo "no profile profiles/$(PROFILE).yaml"; exit 2; }
	$(BIN)/python -m lowdim.tools.study $(PROFILE) $(STUDY_ARGS)

clean-venv:
	rm -rf $(VENV)
