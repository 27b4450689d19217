# libra_d2: `make demo` and `make test` work on a fresh machine: both build the virtual environment
# on first use (dev/install_env.py; a no-op once complete) and then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DETECTRON2_DATASETS ?= datasets
export DETECTRON2_DATASETS
LT_SHAPES_ROOT := $(DETECTRON2_DATASETS)/lt_shapes

.PHONY: env data demo test bench clean help

help:
	@echo "make demo   - generate LT-Shapes, train + evaluate a tiny Faster R-CNN on CPU, reload it"
	@echo "make test   - run the test suite"
	@echo "make data   - generate LT-Shapes under \$$DETECTRON2_DATASETS/lt_shapes"
	@echo "make bench  - run the benchmarks under dev/"
	@echo "make env    - build the virtual environment only ($(VENV))"

env:
	@$(PYTHON) dev/install_env.py --venv $(VENV)

data: env
	@$(PY) dev/generate_lt_shapes.py --root $(LT_SHAPES_ROOT)

demo: data
	@$(PY) dev/demo.py

test: env
	@$(PY) -m pytest

bench: data
	@for b in dev/benchmark_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf output .pytest_cache
