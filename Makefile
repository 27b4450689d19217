# libra_d2: `make demo` and `make test` work on a fresh machine: both build the virtual environment
# on first use (dev/install_env.py; a no-op once complete) and then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DETECTRON2_DATASETS ?= datasets
# Official Detectron2 main for `make test-main`: a source archive or checkout (CI: the snapshot in shared/).
DETECTRON2_MAIN ?= ../shared/vendor/detectron2-main.tar.gz
VENV_MAIN ?= .venv-main
export DETECTRON2_DATASETS
LT_SHAPES_ROOT := $(DETECTRON2_DATASETS)/lt_shapes

.PHONY: env data data-dense data-large pretrained demo test test-main lint bench clean help

help:
	@echo "make demo   - generate LT-Shapes, train + evaluate a tiny Faster R-CNN on CPU, reload it"
	@echo "make test   - run the test suite (on \$$VENV, default .venv: Detectron2 main if reachable, else 0.6)"
	@echo "make test-main - run the test suite on official Detectron2 main built from \$$DETECTRON2_MAIN ($(VENV_MAIN))"
	@echo "make data   - generate LT-Shapes under \$$DETECTRON2_DATASETS/lt_shapes"
	@echo "make data-dense - generate the dense LT-Shapes variant under \$$DETECTRON2_DATASETS/lt_shapes_dense"
	@echo "make data-large - generate the large LT-Shapes variant (20k images, LVIS's relative rarity) under \$$DETECTRON2_DATASETS/lt_shapes_large"
	@echo "make pretrained - pre-train the tiny family's ResNet-18 once (\$$DETECTRON2_DATASETS/pretrained)"
	@echo "make lint   - check the code style (isort, black -l 100, flake8; dev/linter.sh formats)"
	@echo "make bench  - run the benchmarks under dev/"
	@echo "make env    - build the virtual environment only ($(VENV))"

env:
	@$(PYTHON) dev/install_env.py --venv $(VENV)

data: env
	@$(PY) datasets/prepare_lt_shapes.py --root $(LT_SHAPES_ROOT)

data-dense: env
	@$(PY) -m libra_d2.data.datasets.lt_shapes_generate --preset dense --root $(DETECTRON2_DATASETS)/lt_shapes_dense

data-large: env
	@$(PY) -m libra_d2.data.datasets.lt_shapes_generate --preset large --root $(DETECTRON2_DATASETS)/lt_shapes_large

pretrained: env
	@$(PY) -m libra_d2.engine.backbone_pretraining

demo: data
	@$(PY) dev/demo.py

test: env
	@$(PY) -m pytest

# The same suite on official Detectron2 main with its compiled ops, in its own environment; never
# falls back to 0.6 (a failed build fails). Skipped with a message when the source is absent.
test-main:
	@if [ -e "$(DETECTRON2_MAIN)" ]; then \
		DETECTRON2_SPEC="$$(realpath "$(DETECTRON2_MAIN)")" DETECTRON2_FALLBACK=0 \
			$(MAKE) --no-print-directory test VENV=$(VENV_MAIN); \
	else \
		echo "make test-main: skipped: no Detectron2 main source at $(DETECTRON2_MAIN)" \
			"(set DETECTRON2_MAIN to an archive or checkout of official Detectron2)"; \
	fi

lint: env
	@PYTHON=$(PY) dev/linter.sh --check

bench: data
	@for b in dev/benchmark_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf output .pytest_cache
