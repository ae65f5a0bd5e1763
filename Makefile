# The two commands: `make test` and `make demo`. Everything else is what they need.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# The other Kafka line (the default is broker.kafka_version): `make test` runs OTHER_LINE_TESTS on
# it as well, with a broker of its own. README.md, "Kafka versions", says which and why.
KAFKA_OTHER_LINE ?= 3.9.1
OTHER_LINE_TESTS := $(addprefix tests/integration/,test_kafka_version.py test_serve.py \
	test_versions.py test_reliability.py test_broker_restart.py)

# Test files run on this many processes (pytest-xdist, whole files per process): each process
# that needs Kafka starts a broker of its own. Integration tests mostly wait on workers and the
# broker: on 2 processes the 73 integration tests took 8 min 55 s on a quiet 2-core machine.
TEST_PROCESSES ?= 2
PYTEST := $(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile

.PHONY: test demo install kafka prometheus lint unit integration other-line clean

test: lint kafka prometheus ## set everything up, then run every test (unit, property, doctest, integration)
	$(PYTEST)
	$(MAKE) --no-print-directory other-line

demo: install kafka ## local broker, one worker, a demo stream and a live view
	$(PY) -m stream_app demo

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,tools]'
	touch $@

kafka: install ## fetch Kafka's jars (both lines) from Maven Central into the cache (once)
	$(PY) -m stream_app broker --fetch-only
	STREAM_APP_BROKER__KAFKA_VERSION=$(KAFKA_OTHER_LINE) $(PY) -m stream_app broker --fetch-only

# Debian's prometheus package (prometheus and promtool) for tests/unit/test_alerts.py and
# tests/integration/test_prometheus.py. Installed when missing and the user is root, as in CI;
# otherwise those tests are skipped and say how to install it.
prometheus:
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q --no-install-recommends prometheus \
		|| { apt-get update -q && apt-get install -y -q --no-install-recommends prometheus; }; \
	else \
		echo "prometheus is not installed: its tests will be skipped (sudo apt-get install prometheus)"; \
	fi

lint: install
	$(PY) -m ruff check stream_app tests bench scripts conftest.py
	$(PY) -m ruff format --check stream_app tests bench scripts conftest.py
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache  # the import contracts in pyproject.toml
	$(PY) scripts/check_shape.py  # no module over 400 lines, no function over 80

unit: install
	$(PY) -m pytest tests/unit tests/property stream_app

integration: install kafka
	$(PYTEST) tests/integration

other-line: install kafka ## OTHER_LINE_TESTS on Kafka $(KAFKA_OTHER_LINE), on a broker of their own
	env -u STREAM_APP_BROKER STREAM_APP_BROKER__KAFKA_VERSION=$(KAFKA_OTHER_LINE) \
		$(PYTEST) $(OTHER_LINE_TESTS)

clean:
	rm -rf $(VENV) .stream_app .pytest_cache .mypy_cache .ruff_cache .hypothesis
