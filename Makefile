# The workbook's entry point. A newcomer needs two commands, each of which sets up the environment first:
#   make workbook   run every numbered notebook headlessly into outputs/ (smoke profile without a GPU)
#   make test       run the test suite (pytest on lib/, nbval over notebooks/ in smoke mode)
#   make doctor     check a new GPU machine in a few minutes (lib.doctor: every family's fast path)
# Setup makes .venv with $(PYTHON) once and pip-installs the workbook into it (again only when pyproject.toml
# changes). To use the Python of an environment you already have (conda, Colab, a cluster module, a GPU image with
# its own torch), empty VENV: no venv is made, lib/ is imported from this checkout (PYTHONPATH), and pip runs only
# when `python -m lib.common.requirements dev` finds something missing (so an offline image that has everything
# installs nothing; one without Jupyter cannot run notebooks, but `make doctor VENV=` needs only torch & co.):
#   make test VENV=                      runs with `python3` from PATH
#   make test VENV= PYTHON=/path/to/python

PYTHON ?= python3
VENV ?= .venv
SHARED_DATA ?= ../shared/data/cifar10-jpeg.tar.xz
ARGS ?=

ifeq ($(strip $(VENV)),)
PY := $(PYTHON)
# one stamp per interpreter, so switching environments checks again
STAMP := .make/installed-$(shell $(PY) -c 'import sys, hashlib; print(hashlib.md5(sys.prefix.encode()).hexdigest()[:10])')
# lib/ from this checkout, without an editable install (the notebooks' kernels inherit it)
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
else
PY := $(VENV)/bin/python
STAMP := $(VENV)/.workbook-installed
endif

# The one test command: README, `make test` and CI (.ci/run) all run exactly this.
TEST_CMD = $(PY) -m ruff check . && $(PY) -m ruff format --check . && \
	WORKBOOK_SMOKE=1 WANDB_MODE=disabled MPLBACKEND=Agg $(PY) -m pytest tests notebooks --nbval-lax -q

.PHONY: setup data workbook test lab doctor

setup: $(STAMP)

$(STAMP): pyproject.toml
ifneq ($(strip $(VENV)),)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev]"
else
	$(PY) -m lib.common.requirements dev || $(PY) -m pip install -e ".[dev]"
endif
	mkdir -p $(dir $@) && touch $@

# CIFAR-10 into data/cifar10 from the offline copy when there is one; otherwise lib.data downloads it online.
data:
	@if [ -n "$${CIFAR10_DIR:-}" ] || [ -d data/cifar10/train ] || [ -d data/cifar10/cifar-10-batches-py ]; then \
		echo "data: using $${CIFAR10_DIR:-data/cifar10}"; \
	elif [ -f "$(SHARED_DATA)" ]; then \
		rm -rf data/.unpacking && mkdir -p data/.unpacking data/cifar10 && \
		xz -dc "$(SHARED_DATA)" | tar x -C data/.unpacking && \
		for d in data/.unpacking/*; do rm -rf "data/cifar10/$${d##*/}" && mv "$$d" data/cifar10/; done && \
		rmdir data/.unpacking && echo "data: unpacked $(SHARED_DATA) into data/cifar10"; \
	else \
		echo "data: none found locally; the notebooks download CIFAR-10 through torchvision (needs internet)"; \
	fi

workbook: setup data
	$(PY) -m lib.workbook $(ARGS)

test: setup data
	$(TEST_CMD)

# No data and no Jupyter needed: a few training steps, a checkpoint, a resume, sampling and evaluation per family
doctor: $(if $(strip $(VENV)),setup)
	$(PY) -m lib.doctor $(ARGS)

# Jupyter refuses to start as root unless told to (containers, Colab-like machines run as root).
lab: setup data
	$(PY) -m jupyter lab notebooks/ $$([ "$$(id -u)" = 0 ] && echo --allow-root)
