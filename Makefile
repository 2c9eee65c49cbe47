# deblur_edu — two entry points (see README):
#   make bench   set up .venv and run the benchmark (the main job)
#   make test    set up .venv and run the whole test suite (what CI runs)
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# local/CI path: the CPU wheel of torch that lies on this machine's disk; the package
# itself only needs torch>=2.2 (Colab keeps its own)
TORCH_PIN ?= torch==2.13.0
# the project's benchmark data beside the checkout, when present (else the user cache)
ifneq ($(wildcard ../shared/data),)
export DEBLUR_EDU_DATA ?= $(abspath ../shared/data)
endif

.PHONY: setup bench test tune clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

bench: setup
	$(PY) -m deblur_edu.bench --json benchmarks/foundation.json --readme README.md

tune: setup
	$(PY) -m deblur_edu.tune

test: setup
	$(PY) -m pytest

clean:
	rm -rf $(VENV) results .pytest_cache
