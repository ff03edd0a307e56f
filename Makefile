# Everything a fresh clone needs: `make test` and `make demo` set up .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test demo lint proto clean

setup: $(STAMP)

# Dependencies are declared in pyproject.toml (the `dev` extra: everything tests and the demo
# need) and pinned for this machine in constraints.txt; a change to either reinstalls.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# Bytecode first: no source is parsed while tests run engine threads (see tests/conftest.py).
test: $(STAMP)
	$(PY) -m compileall -q lib services stack cli benchmarks operator
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/fastswitch bench --quick --out bench-report

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/buf lint
	$(VENV)/bin/lint-imports

proto: $(STAMP)
	$(PY) scripts/gen_proto.py

clean:
	rm -rf $(VENV) bench-report .pytest_cache
