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
# RECIPE=fast trains the fast preset (a wider model in 6 epochs) into runs/fast-seedN.
RECIPE ?=
RUN ?= runs/$(if $(RECIPE),$(basename $(notdir $(RECIPE)))-)seed$(SEED)
ARGS ?=
BUDGET ?= 5000
CANDIDATES ?= 100
TUNE_DIR ?= tuning/budget$(BUDGET)
READER_RUN ?= runs/reader

.PHONY: install train test export reader pictures predict results realworld cases bench tune frontier demo screenshot clean

install: $(STAMP)

# The web page's packages (LiteRT.js, and Playwright for the browser test), as locked.
WEB_STAMP := web/node_modules/.package-lock.json
PORT ?= 8000

$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $(WEB_STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

train: $(STAMP)
	$(PY) -m app train --seed $(SEED) --out $(RUN) $(if $(RECIPE),--recipe $(RECIPE)) $(ARGS)

# The classifier's formats, then the reader (its classifier fine-tuned from the new export;
# the ink net of runs/reader/ is kept), verified on MNIST and the development set.
export: $(STAMP)
	$(PY) -m app export --model $(RUN)/model.keras --out exported
	$(PY) -m app reader --out $(READER_RUN)
	$(PY) -m app export-reader --run $(READER_RUN) --out exported

# The shipped model's parameter chart and accuracy curve, from exported/metadata.json.
pictures: $(STAMP)
	$(PY) -m app pictures --exported exported --out results

# The reader's ink net and classifier, trained on rendered pictures (resumable).
reader: $(STAMP)
	$(PY) -m app reader --out $(READER_RUN) $(ARGS)

predict: $(STAMP)
	$(PY) -m app predict $(ARGS) $(FILES)

# The default recipe on seeds 0-9 into runs/results/ and the fast one into runs/results-fast/
# (finished seeds are kept), and their tables, results/seeds.md and results/seeds-fast.md; the
# fast table gives its mean training time as a share of the default's, measured on one CPU.
results: $(STAMP)
	$(PY) -m app results $(ARGS)
	$(PY) -m app results --recipe fast --against runs/results $(ARGS)

realworld: $(STAMP)
	$(PY) -m app realworld $(ARGS)

# The preprocessing contract's conformance cases (pictures and the 28x28 each gives) for ports.
cases: $(STAMP)
	$(PY) -m app cases

bench: $(STAMP)
	$(PY) -m app bench --run $(RUN) --exported exported $(ARGS)

tune: $(STAMP)
	$(PY) -m tuner search --strategy halving --budget $(BUDGET) --candidates $(CANDIDATES) --rungs 1 4 20 \
		--factor 6 --floor 0.8 \
		--dir $(TUNE_DIR) --seed $(SEED) $(ARGS)

# Halving searches at 3K-8K parameters, each best retrained on 5 seeds, into tuning/frontier/;
# the front goes to results/frontier.{md,csv,png}. Resumable: finished parts are kept.
frontier: $(STAMP)
	$(PY) -m tuner frontier $(ARGS)

TEST_WORKERS ?= 2

test: $(STAMP) $(WEB_STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n $(TEST_WORKERS) $(ARGS)

# Serves web/ (the page, LiteRT.js's wasm and the int8 model) on this machine only; Ctrl-C stops.
demo: $(WEB_STAMP)
	@$(PYTHON) web/serve.py --port $(PORT)

# The README's picture of the page: the browser test run with its screenshot kept.
screenshot: $(STAMP) $(WEB_STAMP)
	TINYMNIST_SCREENSHOT=results/browser.png $(PY) -m pytest tests/test_web.py -q

clean:
	rm -rf runs tuning devset .pytest_cache
