# relgen: the two commands of the README are `make demo` and `make test`.
PY := .venv/bin/python
RELGEN := .venv/bin/relgen
TREE := .cache/linux-source-6.1

.PHONY: setup demo test test-quick lint fuzz bench clean

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup
	$(PY) -m ruff check src tests bench
	$(PY) -m pytest -q -n auto

# the suite without Kbuild and without the tests that install, read the public corpus or run
# a checker each: under a minute on two cores
test-quick: setup
	$(PY) -m pytest -q -n auto -m "not kbuild and not slow"

lint: setup
	$(PY) -m ruff check src tests bench

fuzz: setup
	RELGEN_FUZZ_EXAMPLES=10000 $(PY) -m pytest -q tests/test_fuzz.py

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf out build dist src/*.egg-info
