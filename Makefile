# clusterlab — the two commands a new user needs: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PROFILE ?= workflow/profiles/local
CONFIG ?= config/config.yaml
RESULTS ?= results
MLFLOW_HOST ?= 127.0.0.1
MLFLOW_PORT ?= 5000
MLFLOW_SERVER_FLAGS ?=
MLFLOW_DATABASE ?=
# pip on these machines warns about every package its local index lacks; keep real messages only.
QUIET_PIP := { grep -v "is ignored: it is neither a file nor a directory" || true; }

# a sweep's ledger of the papers' findings (config/claims.yaml: the CPU sweep designed to decide them; ~40 min)
CLAIMS_CONFIG ?= config/claims.yaml
# make test's pytest-xdist workers (0: none, the tests in one process)
TEST_WORKERS ?= 2

.PHONY: docs lock run demo dry-run claims report reproduce test test-gpu test-slurm test-browser bench bench-scale reliability mlflow-ui mlflow-server reconcile clean install wordnet

# The locked environment in .venv (every other target runs this first)
install: $(INSTALLED)

# Installs from the lock (envs/requirements-$(ACCELERATOR).txt: every package pinned with its hashes), then this
# project without dependencies, then `pip check`, then numba's compilations for UMAP and t-SNE into its cache (once,
# not in every job). ACCELERATOR=gpu on GPU nodes: faiss-gpu instead of faiss-cpu.
ACCELERATOR ?= cpu
LOCK := envs/requirements-$(ACCELERATOR).txt
PIP_VERSION := 26.3

$(INSTALLED): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION) 2>&1 | $(QUIET_PIP)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK) 2>&1 | $(QUIET_PIP)
	$(BIN)/python -m pip install --quiet --no-deps -e . 2>&1 | $(QUIET_PIP)
	$(BIN)/python -m pip check
	$(BIN)/python envs/lock.py check --installed $(ACCELERATOR)
	$(BIN)/python -m lightning_modules.workflow.warm  # numba's compilations for UMAP and t-SNE, once (~25 s)
	touch $@

# Re-resolve the locks after an edit of pyproject.toml's requirements (uv keeps every pin still allowed; `uv pip
# compile --upgrade` by hand moves them all), and pin the conda files' pip lines to the same versions
lock: $(BIN)/uv
	$(BIN)/python envs/lock.py compile

# what `make lock` needs, at the lock's versions (the lock may be stale then, so not the whole environment)
$(BIN)/uv:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $$(grep -o -E '^(uv|packaging|pyyaml)==[^ ]+' $(LOCK)) 2>&1 | $(QUIET_PIP)

SNAKEMAKE = $(BIN)/snakemake --profile $(PROFILE) --configfile $(CONFIG) $(SNAKEMAKE_ARGS)

# A sweep from its config (`make run CONFIG=my-sweep.yaml`): the YAML checked first (a mistake named by its line),
# then Snakemake with a live progress display on a terminal (snakemake-logger-plugin-rich) and one line per finished
# job elsewhere (CI logs), then the reports, one headline per stage and where MLflow shows the runs.
run: $(INSTALLED)
	@$(BIN)/python -m lightning_modules.core.contracts config $(CONFIG)
	@if [ -t 1 ]; then $(SNAKEMAKE) --logger rich; else $(SNAKEMAKE) 2>&1 | $(BIN)/python -m lightning_modules.services.progress; fi
	@$(BIN)/python -m lightning_modules.analysis.reporting --config $(CONFIG) --mlflow http://$(MLFLOW_HOST):$(MLFLOW_PORT)

# The embedded default sweep (config/config.yaml): digits, end to end in ~5 minutes on 2 cores
demo: run

# What a sweep would run, job counts per rule, nothing run
dry-run: $(INSTALLED)
	@$(BIN)/python -m lightning_modules.core.contracts config $(CONFIG)
	$(SNAKEMAKE) --dry-run --quiet rules

# The sweep that tests the papers' findings (C1-C12) on 2 cores, then its ledger and its time with this machine's
# GEMM peak beside it (machines here differ 3x from day to day)
claims: $(INSTALLED)
	@started=$$(date +%s); $(MAKE) --no-print-directory run CONFIG=$(CLAIMS_CONFIG) && \
	  $(BIN)/python -m lightning_modules.analysis.claims.ledger --config $(CLAIMS_CONFIG) && \
	  echo "make claims: $$(( $$(date +%s) - started )) s on $$(nproc) cores; GEMM peak $$($(BIN)/python -c \
	    'from benchmarks.common import gemm_gflops; print(round(gemm_gflops()))') GFLOP/s (fp32 2048^2)"

# Snakemake's HTML report of the last sweep: every stage report and table with its caption
report: $(INSTALLED)
	$(BIN)/snakemake --configfile $(CONFIG) --report $(RESULTS)/report.html

# Every published headline (config/published.yaml) against a results folder: reproduced (|Δ| within the source's
# tolerance), not reproduced, or not run in this sweep
reproduce: $(INSTALLED)
	@$(BIN)/python -m lightning_modules.analysis.published $(RESULTS)

# Make the MLflow store mirror the results' metrics.json again (after a tracking outage, a killed job, ...)
reconcile: $(INSTALLED)
	$(BIN)/snakemake --profile $(PROFILE) --configfile $(CONFIG) --allowed-rules reconcile_tracking --forcerun reconcile_tracking -- $(RESULTS)/tracking/reconciled.json
	@cat $(RESULTS)/tracking/reconciled.json

# The test suite, its 25 slowest tests listed at the end; the SLURM, browser, GPU and load tests are their own targets.
# Two workers (pytest-xdist), each test file on one of them, so a file's sweep fixture runs once; files handed out in
# collection order, the slowest first (tests/conftest.py SLOWEST_FILES). TEST_WORKERS=0: one test after the other.
test: $(INSTALLED)
	$(BIN)/python -m pytest --durations=25 $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

# The documentation site from docs/ into site/ (MkDocs with Material), its reference pages generated from the schema,
# the registries, the layout and this Makefile (lightning_modules/workflow/reference.py); warnings are errors
docs: $(INSTALLED)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Every benchmark in turn (benchmarks/all.py), each announced with what it measures and timed (~23 min)
bench: $(INSTALLED)
	$(BIN)/python -m benchmarks.all

# Every clustering and OOD stage on 2,000,000 x 384 float16 embeddings, out of core, with its peak memory and
# the planned times at ImageNet-1K / -21K (~21 min on 2 cores, 22 on a fresh clone; `make bench` runs its 200k
# smoke variant)
bench-scale: $(INSTALLED)
	$(BIN)/python -m benchmarks.scale

# The reliability table: bad inputs tried and handled, kill points resumed exactly, tracking faults without a
# lost run, 200 concurrent tracking clients (~13 min; results/bench/reliability.json)
reliability: $(INSTALLED)
	$(BIN)/python -m benchmarks.reliability

# Where a GPU exists: sharded float16 search, GPU k-means, a head epoch and autocast extraction against their
# CPU references. Without one every test skips and says why.
test-gpu: $(INSTALLED)
	$(BIN)/python -m pytest -m gpu tests/test_gpu.py

# A one-node SLURM cluster on this machine (installed with apt-get when missing; needs root), an MLflow
# server, and a slice of the demo through the slurm profile. Skipped, with the reason, where SLURM cannot be
# installed.
test-slurm: $(INSTALLED)
	$(BIN)/python -m pytest -m slurm tests/test_slurm.py

# The demo from nothing, then its HTML reports and the MLflow UI in headless Chromium (Debian's chromium and
# chromium-driver, installed with apt-get when missing; needs root): figures rendered, no error text, the runs
# table listing the sweep's runs. Screenshots and the demo's time go to test-output/browser/.
test-browser: $(INSTALLED)
	$(BIN)/python -m pytest -m browser tests/test_browser.py

# The tracking server cluster jobs log to (the slurm profile's default tracking_uri), with MLflow's basic-auth app:
# requests without credentials are refused; jobs read theirs from the owner-only file the server prints
# (export CLUSTERLAB_TRACKING_CREDENTIALS=$(RESULTS)/tracking-auth/credentials). Binds 127.0.0.1 unless MLFLOW_HOST
# says otherwise; runs, artifacts and users are kept under $(RESULTS)/. MLFLOW_SERVER_FLAGS=--no-auth serves without
# authentication, on loopback only (add --insecure to force it elsewhere). MLFLOW_DATABASE=postgresql://user@host:port/db
# keeps the runs in PostgreSQL instead of $(RESULTS)/mlflow.db (the password from PGPASSWORD or ~/.pgpass, not the URL).
mlflow-server: $(INSTALLED)
	$(BIN)/python -m lightning_modules.services.tracking_server --results $(RESULTS) --host $(MLFLOW_HOST) --port $(MLFLOW_PORT) $(if $(MLFLOW_DATABASE),--database '$(MLFLOW_DATABASE)') $(MLFLOW_SERVER_FLAGS)

# The MLflow UI on the local store of a results folder (no authentication: loopback only)
mlflow-ui: $(INSTALLED)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(RESULTS)/mlflow.db --host $(MLFLOW_HOST) --port $(MLFLOW_PORT)

WORDNET_DIR = /usr/share/wordnet
# WordNet's database, the neglabel OOD scorer's corpus of negative labels (Debian's wordnet-base in /usr/share/wordnet;
# apt-get needs root): `make wordnet` once before a sweep that scores with neglabel
wordnet:
	@test -f $(WORDNET_DIR)/data.noun || { export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y --no-install-recommends wordnet-base || { apt-get update && apt-get install -y --no-install-recommends wordnet-base; }; }

# Delete the results and Snakemake's state (the environment stays)
clean:
	rm -rf $(RESULTS) .snakemake
