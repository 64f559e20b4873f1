# hscsim: two commands do all the set-up on a fresh Debian machine with Python 3.11.
#   make demo   build the demo tile and run every stage on it (the main job)
#   make test   run the whole test suite (pytest + nbval), as CI does
#   make test-fast   package tests without notebooks and simulations (daily work)
# All create .venv, install the pinned dependencies and SExtractor, fill the data
# cache and build PyCosmo's C extension first; a second run finds everything in
# place and costs seconds.

VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEMO    := runs/demo

.PHONY: demo test test-fast setup data sextractor lint clean-runs

setup: $(STAMP) sextractor

$(STAMP): pyproject.toml constraints.txt tools/setup_env.sh
	bash tools/setup_env.sh
	touch $@

sextractor:
	@bash tools/install_sextractor.sh

data: setup
	$(BIN)/hscsim data

# the last band's calexp stands for the five-band tile (an older i-band demo
# folder lacks it and is rebuilt)
DEMO_TILE := $(DEMO)/input/calexp-HSC-Y-8523-402.fits

demo: data $(DEMO_TILE)
	$(BIN)/hscsim run --tile params/demo_tile.yaml --out $(DEMO)/run

$(DEMO_TILE): | data
	$(BIN)/hscsim demo-tile --bands grizy --out $(DEMO)/input

test: data
	$(BIN)/ruff check .
	$(BIN)/pytest

test-fast: data
	$(BIN)/ruff check .
	$(BIN)/pytest tests -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean-runs:
	rm -rf runs
