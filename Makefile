# Two entry points (see README): `make serve` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MODEL_DIR := models/multilingual-e5-small
# the public benchmark folders (see evals/README in the shared folder)
EVALS ?= ../shared/evals

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
	$(BIN)/python -m qa.tools.eval $(EVALS)/cmrc2018-dev
	$(BIN)/python -m qa.tools.eval $(EVALS)/drcd-dev
	$(BIN)/python -m qa.tools.eval $(EVALS)/xquad-en2zh-dev
	$(BIN)/python -m qa.tools.eval $(EVALS)/xquad-zh2en-dev

bench: model
	$(BIN)/python benchmarks/benchmark.py

clean:
	rm -rf $(VENV) $(MODEL_DIR) index/*.faiss index/*.json index/*.sqlite3* .cache
