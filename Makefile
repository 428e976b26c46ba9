# The workbook's entry point. A newcomer needs two commands, each of which sets up the environment first:
#   make workbook   run every numbered notebook headlessly into outputs/ (smoke profile without a GPU)
#   make test       run the test suite (pytest on lib/, nbval over notebooks/ in smoke mode)
# Use an existing environment instead of .venv with VENV=<prefix>, e.g. `make test VENV=$CONDA_PREFIX`.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED_DATA ?= ../shared/data/cifar10-jpeg.tar.xz
ARGS ?=
TEST_CMD = WORKBOOK_SMOKE=1 WANDB_MODE=disabled MPLBACKEND=Agg $(PY) -m pytest tests notebooks --nbval-lax -q

.PHONY: setup data workbook test lab

setup: $(VENV)/.workbook-installed

$(VENV)/.workbook-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $@

# CIFAR-10 into data/cifar10 from the offline copy when there is one; otherwise lib.data downloads it online.
data:
	@if [ -n "$${CIFAR10_DIR:-}" ] || [ -d data/cifar10/train ] || [ -d data/cifar10/cifar-10-batches-py ]; then \
		echo "data: using $${CIFAR10_DIR:-data/cifar10}"; \
	elif [ -f "$(SHARED_DATA)" ]; then \
		rm -rf data/.unpacking && mkdir -p data/.unpacking data/cifar10 && \
		xz -dc "$(SHARED_DATA)" | tar x -C data/.unpacking && mv data/.unpacking/* data/cifar10/ && \
		rmdir data/.unpacking && echo "data: unpacked $(SHARED_DATA) into data/cifar10"; \
	else \
		echo "data: none found locally; the notebooks download CIFAR-10 through torchvision (needs internet)"; \
	fi

workbook: setup data
	$(PY) -m lib.workbook $(ARGS)

test: setup data
	$(TEST_CMD)

lab: setup data
	$(VENV)/bin/jupyter lab notebooks/
