# One-command entry points. Both create/reuse .venv (Python 3.10) and install npuc editable with dev extras.
PYTHON ?= python3.10
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.npuc-installed
JOBS   ?= 2

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "npuc needs Python 3.10 ($(PYTHON) not found; with pyenv: pyenv install 3.10.13)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' || { echo "$(PYTHON) is not Python 3.10 (lava-nc requires 3.10)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/npuc demo

test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) --durations=15

# The edit loop: no Lava, Verilator or Yosys, no training (tests/engine_guard.py keeps the markers honest).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) -m "not lava and not rtl and not yosys and not slow" --durations=10

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf build npuc-demo .pytest_cache
