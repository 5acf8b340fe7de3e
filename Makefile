# Two commands: `make demo` (set up, then train and segment on the shipped example data) and
# `make test` (set up, then run the test suite). Both create .venv on first use, from the lock file
# (requirements/test.lock: exact versions and hashes; regenerate with scripts/lock.sh).
# `make container-test` builds the container and runs both levels inside it (needs a Docker engine).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO := demo_output
NPROCS ?= 2
# test workers (pytest-xdist): the tests that train run one after another on one of them, the rest
# beside them (tests/conftest.py)
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -ra -n $(TEST_WORKERS) --dist loadgroup
export NIPYPE_NO_ET := 1

.PHONY: setup demo test test-fast container-test clean

$(VENV)/.installed: pyproject.toml requirements/test.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements/test.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	rm -rf $(DEMO)
	$(PY) examples/build_demo_dataset.py $(DEMO)/bids
	$(PY) run.py $(DEMO)/bids $(DEMO)/derivatives group -w $(DEMO)/work --preset cpu --train-minutes 6 --nprocs $(NPROCS) --synthetic-per-map 3
	$(PY) run.py $(DEMO)/bids $(DEMO)/derivatives participant -w $(DEMO)/work --nprocs $(NPROCS)
	@echo ""
	@echo "model package:  $(DEMO)/derivatives/models/"
	@echo "segmentations:  $(DEMO)/derivatives/sub-06/anat/"
	@echo "Dice report:    $(DEMO)/derivatives/reports/group_desc-dice_report.html"
	@echo "all outputs:    $(DEMO)/derivatives/index.html"

test: setup
	$(PYTEST)

test-fast: setup  # everything but the tests that train models or run benchmarks (marked slow)
	$(PYTEST) -m "not slow"

container-test: setup
	scripts/container/test.sh

clean:
	rm -rf $(DEMO) .pytest_cache
