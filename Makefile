# hscsim: two commands do all the set-up on a fresh Debian machine with Python 3.11.
#   make demo   build the demo tile and run every stage on it (the main job)
#   make test   run the test suite (pytest + nbval)
# Both create .venv, install the pinned dependencies and SExtractor, and fill the
# data cache first; a second run finds everything in place and costs seconds.

VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEMO    := runs/demo

.PHONY: demo test setup data sextractor lint clean-runs

setup: $(STAMP) sextractor

$(STAMP): pyproject.toml constraints.txt tools/setup_env.sh
	bash tools/setup_env.sh
	touch $@

sextractor:
	@bash tools/install_sextractor.sh

data: setup
	$(BIN)/hscsim data

demo: data $(DEMO)/input/tile.yaml
	$(BIN)/hscsim run --tile params/demo_tile.yaml --out $(DEMO)/run

$(DEMO)/input/tile.yaml: | data
	$(BIN)/hscsim demo-tile --out $(DEMO)/input

test: data
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean-runs:
	rm -rf runs
