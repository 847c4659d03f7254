# Two commands a newcomer needs: `make demo` and `make test`. Each sets itself up from
# a bare python3 (a .venv in the repository); nothing else (no CRDS) is needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_SIZE ?= 512
DEMO_DIR ?= demo_out
PYTEST_ARGS ?=

.PHONY: demo test lint bench clean venv downstream bytecode

venv: $(STAMP)

# An editable install leaves our modules uncompiled, and where PYTHONDONTWRITEBYTECODE
# is set (some clusters, sandboxes) Python compiles them again in every process:
# 0.12 s of every exposure's start-up (bench/RESULTS.md, "Issue 23, round 8"). The
# bytecode is written here (files already up to date are skipped).
bytecode: $(STAMP)
	$(PY) -m compileall -q romanimpreprocess > /dev/null

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,batch,dev,quicklook]"
	touch $(STAMP)

test: bytecode
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS)

demo: bytecode
	$(PY) -m romanimpreprocess.demo --size $(DEMO_SIZE) --out $(DEMO_DIR)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: bytecode
	$(PY) bench/run_all.py

# `make downstream`: the survey team's tools (PyIMCOM, roman-hlis-l2-driver) read a
# full-frame L2, noise file and mask file made by the survey driver's four calls. They
# need Python >= 3.12, so they get their own venv (never ours): DOWNSTREAM_PYTHON (a
# python3.12/3.13 on PATH or under ~/.pyenv/versions), or DOWNSTREAM_VENV_PY to reuse
# a venv that already has both packages. No such Python: skipped with a message.
DOWNSTREAM_DIR ?= bench/out/downstream
DOWNSTREAM_VENV ?= bench/.venv-downstream
DOWNSTREAM_SIZE ?= 4096
DOWNSTREAM_PACKAGES := pyimcom==1.2.1 roman-hlis-l2-driver==0.2.0
DOWNSTREAM_PYTHON ?=
DOWNSTREAM_VENV_PY ?=

downstream: $(STAMP)
	@py="$(DOWNSTREAM_VENV_PY)"; \
	if [ -z "$$py" ]; then \
	  base="$(DOWNSTREAM_PYTHON)"; \
	  if [ -z "$$base" ]; then \
	    for p in python3.12 python3.13 $$(ls -d $$HOME/.pyenv/versions/3.1[23]*/bin/python3 2>/dev/null | sort -V); do \
	      if $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then base=$$p; break; fi; \
	    done; \
	  fi; \
	  if [ -z "$$base" ]; then \
	    echo "make downstream: SKIPPED - no Python >= 3.12 found (python3.12/python3.13 on PATH or under ~/.pyenv/versions); pyimcom 1.2.1 and roman-hlis-l2-driver 0.2.0 need one. Set DOWNSTREAM_PYTHON=/path/to/python3.12."; \
	    exit 0; \
	  fi; \
	  echo "make downstream: $$base -> $(DOWNSTREAM_VENV) with $(DOWNSTREAM_PACKAGES)"; \
	  test -x $(DOWNSTREAM_VENV)/bin/python || $$base -m venv $(DOWNSTREAM_VENV) || exit 1; \
	  $(DOWNSTREAM_VENV)/bin/python -m pip install --quiet $(DOWNSTREAM_PACKAGES) || exit 1; \
	  py=$(DOWNSTREAM_VENV)/bin/python; \
	fi; \
	$(PY) bench/downstream_make.py --out $(DOWNSTREAM_DIR) --size $(DOWNSTREAM_SIZE) && \
	$$py bench/downstream_check.py --dir $(DOWNSTREAM_DIR)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
