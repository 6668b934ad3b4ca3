# tinymnist: every target creates .venv/ and installs requirements.txt when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Offline machines here read MNIST from the shared prepared copy; elsewhere TFDS downloads it.
SHARED_TFDS := $(abspath ../shared/data/tensorflow_datasets)
ifeq ($(origin TFDS_DATA_DIR),undefined)
ifneq ($(wildcard $(SHARED_TFDS)/mnist),)
export TFDS_DATA_DIR := $(SHARED_TFDS)
endif
endif

SEED ?= 0
RUN ?= runs/seed$(SEED)
ARGS ?=
BUDGET ?= 8000
TRIALS ?= 30
TUNE_DIR ?= tuning/budget$(BUDGET)

.PHONY: install train test export predict results realworld bench tune clean

install: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

train: $(STAMP)
	$(PY) -m app train --seed $(SEED) --out $(RUN) $(ARGS)

export: $(STAMP)
	$(PY) -m app export --model $(RUN)/model.keras --out exported

predict: $(STAMP)
	$(PY) -m app predict $(ARGS) $(FILES)

results: $(STAMP)
	$(PY) -m app results $(sort $(wildcard runs/seed*))

realworld: $(STAMP)
	$(PY) -m app realworld $(ARGS)

bench: $(STAMP)
	$(PY) -m app bench --run $(RUN) --exported exported $(ARGS)

tune: $(STAMP)
	$(PY) -m tuner search --budget $(BUDGET) --trials $(TRIALS) --dir $(TUNE_DIR) --seed $(SEED) $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(ARGS)

clean:
	rm -rf runs tuning devset .pytest_cache
