# The two commands: `make test` and `make demo`. Everything else is what they need.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo install kafka lint unit integration clean

test: lint kafka ## set everything up, then run every test (unit, property, doctest, integration)
	$(PY) -m pytest

demo: install kafka ## local broker, one worker, a demo stream and a live view
	$(PY) -m stream_app demo

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

kafka: install ## fetch Kafka's jars from Maven Central into the cache (once)
	$(PY) -m stream_app broker --fetch-only

lint: install
	$(PY) -m ruff check stream_app tests bench scripts conftest.py
	$(PY) -m ruff format --check stream_app tests bench scripts conftest.py
	$(PY) -m mypy

unit: install
	$(PY) -m pytest tests/unit tests/property stream_app

integration: install kafka
	$(PY) -m pytest tests/integration

clean:
	rm -rf $(VENV) .stream_app .pytest_cache .mypy_cache .ruff_cache .hypothesis
