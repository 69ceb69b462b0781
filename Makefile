PY ?= python3

.PHONY: install example test

.install-stamp: pyproject.toml tools/install.sh
	PYTHON=$(PY) bash tools/install.sh
	touch .install-stamp

install: .install-stamp

## run the main example: fit sleepstudy and print the lme4-style summary
example: .install-stamp
	$(PY) examples/sleepstudy_summary.py

## run the test suite
test: .install-stamp
	$(PY) -m pytest -q
