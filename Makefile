# Everything a fresh machine needs: `make demo` runs the main job, `make test` the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel first: an unpinned torch (or one pulled in by another package) is a multi-GB CUDA build.
TORCH ?= torch==2.13.0
SST2 ?= ../shared/data/sst2
# pytest-xdist processes for `make test`: one per CPU, each with one thread (tests/conftest.py)
TEST_WORKERS ?= auto

.PHONY: setup demo test test-slow lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e '.[dev,openvino]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	SST2=$(SST2) VENV=$(VENV) bash scripts/demo.sh

test: setup
	$(VENV)/bin/pytest -n $(TEST_WORKERS)

test-slow: setup
	$(VENV)/bin/pytest -m slow

lint: setup
	$(VENV)/bin/ruff check bertc tests benchmarks

clean:
	rm -rf runs/demo .pytest_cache
