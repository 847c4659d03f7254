# Two commands a newcomer needs: `make demo` and `make test`. Each sets itself up from
# a bare python3 (a .venv in the repository); nothing else (no CRDS) is needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_SIZE ?= 512
DEMO_DIR ?= demo_out
PYTEST_ARGS ?=

.PHONY: demo test lint bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,batch,dev,quicklook]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m romanimpreprocess.demo --size $(DEMO_SIZE) --out $(DEMO_DIR)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
