# `make test` and `make demo` each create .venv and install the project on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-all demo install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Two pytest-xdist workers (a test waiting on Ray or a subprocess leaves its core to the other); the 15
# slowest tests are printed. `make test` leaves out what `slow` marks; `make test-all` (CI) runs everything.
# XLA's compiled programs are kept in .cache/xla between runs (tests/conftest.py), so a run after the first
# compiles only what changed; `pytest --fresh-compilation-cache` compiles everything, as a fresh clone does.
PYTEST := $(PY) -m pytest -q -n 2 --dist worksteal --durations=15

test: $(STAMP)
	$(PYTEST) -m "not slow"

test-all: $(STAMP)
	$(PYTEST)

demo: $(STAMP)
	$(PY) experiments/quickstart.py --fresh

clean:
	rm -rf $(VENV) build *.egg-info .cache
