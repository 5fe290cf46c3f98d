# Two entry points (see README): `make serve` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MODEL_DIR := models/multilingual-e5-small

.PHONY: setup model serve test lint eval bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

model: setup
	$(BIN)/python -m qa prepare-model

serve: model
	$(BIN)/python server.py

test: model
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

eval: model
	$(BIN)/python -m qa.tools.eval evals/bundled-page
	$(BIN)/python -m qa.tools.eval ../shared/evals/cmrc2018-dev
	$(BIN)/python -m qa.tools.eval ../shared/evals/drcd-dev

bench: model
	$(BIN)/python benchmarks/benchmark.py

clean:
	rm -rf $(VENV) $(MODEL_DIR) index/*.faiss index/*.json index/*.sqlite3* .cache
