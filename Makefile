# kernelcomp: `make test` and `make demo` work from a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo lint bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/kernelcomp demo --out demo_out

lint: $(STAMP)
	$(VENV)/bin/ruff check kernelcomp tests scripts

bench: $(STAMP)
	$(PY) scripts/bench_gram.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
