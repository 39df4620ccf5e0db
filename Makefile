# The README's commands. `make demo`, `make test` and `make lint` each set everything up first (idempotent).
#   VENV=path         where the virtual environment lives (default .venv at the repository root)
#   TORCH=spec        the PyTorch requirement installed first (pinned so a CPU machine gets no CUDA build)
#   TORCH_INDEX=url   an extra index for that PyTorch wheel (for example your site's CPU-wheel mirror)
#   MPI=wheel|system  `wheel` installs the mpich wheel (no system MPI needed); `system` builds mpi4py
#                     against the cluster's own MPI (its mpicc must be on PATH)
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
MPI ?= wheel
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.hpcsynth-installed
NRANKS ?= 3
PYTEST_ARGS ?=

ifeq ($(MPI),wheel)
EXTRAS := test,mpich
MPI4PY_FLAGS :=
else
EXTRAS := test
MPI4PY_FLAGS := --no-binary=mpi4py
endif

.PHONY: setup demo demo-longitudinal test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PIP) install -q $(MPI4PY_FLAGS) -e ".[$(EXTRAS)]"
	$(PIP) install -q --no-deps "anonymeter==1.1.0"
	@$(PY) -c "import lightgbm" 2>/dev/null || { echo "setup: LightGBM cannot load libgomp.so.1, the GCC OpenMP runtime (Debian/Ubuntu: apt-get install libgomp1)" >&2; exit 1; }
	@touch $(STAMP)

demo: $(STAMP)
	@mkdir -p runs
	PATH="$(abspath $(VENV))/bin:$$PATH" mpiexec -n $(NRANKS) hpcsynth run jobs/demo.yaml
	PATH="$(abspath $(VENV))/bin:$$PATH" mpiexec -n $(NRANKS) hpcsynth evaluate runs/demo.h5 --out runs/demo.html

demo-longitudinal: $(STAMP)
	@mkdir -p runs
	PATH="$(abspath $(VENV))/bin:$$PATH" mpiexec -n $(NRANKS) hpcsynth run jobs/longitudinal.yaml
	PATH="$(abspath $(VENV))/bin:$$PATH" mpiexec -n $(NRANKS) hpcsynth evaluate runs/longitudinal.h5 --out runs/longitudinal.html

test: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PIP) install -q -e ".[$(EXTRAS),bench]"
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) benchmarks/run_all.py

clean:
	rm -rf runs .pytest_cache .ruff_cache build dist *.egg-info
