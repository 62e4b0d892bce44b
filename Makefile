# One-command entry points. Both create/reuse .venv (Python 3.10) and install npuc editable with dev extras.
PYTHON ?= python3.10
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.npuc-installed
JOBS   ?= 2

# tests/test_nir.py (and tests/test_nir_paper.py's nir-only tests: norse, snntorch and sinabs pin an
# older nir) runs a second time against the newest nir 1.0.x npuc supports: the dev
# install resolves nir 1.0.4 (sinabs pins nir<=1.0.4), `pip install npuc` alone the newest.
# That nir goes into a folder beside the venv (no deps: it needs only numpy and h5py).
NIR_NEWEST     ?= 1.0.8
NIR_NEWEST_DIR := $(VENV)/nir-$(NIR_NEWEST)

.PHONY: demo test test-fast test-nir-newest netx-env lint bench clean

# Opt-in: lava-dl's netx (pins torch<2.4, so never in .venv) in its own environment beside the
# repository; tests/test_netx_lava_dl.py finds it there (or at $$NPUC_NETX_PYTHON) and runs the
# loihi2:netx=1 network.net files with it. About 5 GB (torch with its CUDA wheels).
NETX_ENV ?= ../netx-env

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "npuc needs Python 3.10 ($(PYTHON) not found; with pyenv: pyenv install 3.10.13)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' || { echo "$(PYTHON) is not Python 3.10 (lava-nc requires 3.10)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/npuc demo

test: $(STAMP) $(NIR_NEWEST_DIR)/.installed
	$(BIN)/python -m pytest -n $(JOBS) --durations=15
	$(MAKE) --no-print-directory test-nir-newest

$(NIR_NEWEST_DIR)/.installed: | $(STAMP)
	rm -rf $(NIR_NEWEST_DIR)
	$(BIN)/python -m pip install --quiet --no-deps --target $(NIR_NEWEST_DIR) nir==$(NIR_NEWEST)
	@touch $@

test-nir-newest: $(NIR_NEWEST_DIR)/.installed
	PYTHONPATH=$(NIR_NEWEST_DIR) NPUC_EXPECT_NIR=$(NIR_NEWEST) $(BIN)/python -m pytest -n 0 -q -p no:cacheprovider tests/test_nir.py
	PYTHONPATH=$(NIR_NEWEST_DIR) $(BIN)/python -m pytest -n 0 -q -p no:cacheprovider tests/test_nir_paper.py \
		-m "not lava and not rtl" -k "not norse and not snntorch and not sinabs"

netx-env: $(NETX_ENV)/.installed

$(NETX_ENV)/.installed:
	@command -v $(PYTHON) >/dev/null || { echo "netx-env needs Python 3.10 ($(PYTHON) not found)"; exit 1; }
	@test -x $(NETX_ENV)/bin/python || $(PYTHON) -m venv $(NETX_ENV)
	$(NETX_ENV)/bin/python -m pip install --upgrade pip
	$(NETX_ENV)/bin/python -m pip install lava-dl==0.6.0 lava-nc==0.10.0 h5py
	@touch $@

# The edit loop: no Lava, Verilator or Yosys, no training (tests/engine_guard.py keeps the markers honest).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) -m "not lava and not rtl and not yosys and not slow" --durations=10

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf build npuc-demo .pytest_cache
